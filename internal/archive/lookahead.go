package archive

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The walk lstats every entry of a directory before it writes the
// directory's header (an increment's dumpdir lists them, unchanged
// entries are told apart by their stat). On a freshly mounted snapshot
// each lstat is the kernel reading and setting up an inode, one at a time:
// for an increment, where little else is read, that was most of the
// backup. The lister lists the directories the walk will enter next, in
// the order it will enter them, on several threads, so that the walk
// finds their listings made. It starts before the walk, while the
// parent's index is still being read (Parent.Index).
//
// It stays at most lookaheadDirs directories and lookaheadEntries entries
// ahead of the walk (listings made and not yet taken).
const (
	lookaheadWorkers = 4
	lookaheadDirs    = 1024
	lookaheadEntries = 64 << 10
)

// listing is one directory's entries, sorted, with their lstat.
type listing struct {
	names []string
	sts   []unix.Stat_t
	err   error
}

// lookJob is a directory known to the lister: waiting, being listed
// (done not closed) or listed.
type lookJob struct {
	abs, rel string
	dev      uint64 // the directory's device: its subdirectories on it are entered
	started  bool
	done     chan struct{}
	l        listing
}

type lister struct {
	ctx  context.Context
	excl *excluder
	bat  *batcher // lstats a directory's entries in one batch; only without workers

	mu      sync.Mutex
	cond    *sync.Cond
	jobs    map[string]*lookJob // by abs: waiting, started or listed, not taken yet
	waiting []*lookJob          // a stack: the next directory the walk enters is last
	held    int                 // entries of listed jobs not taken yet
	open    int                 // started jobs, listed or not, not taken yet
	idle    int                 // workers waiting in next
	stopped atomic.Bool         // closed: a listing under way stops early too
	wg      sync.WaitGroup
}

// newLister starts the workers; with on false there are none, and the walk
// lists every directory itself, through bat when not nil.
func newLister(ctx context.Context, excl *excluder, on bool, bat *batcher) *lister {
	l := &lister{ctx: ctx, excl: excl, jobs: map[string]*lookJob{}}
	if !on {
		l.bat = bat
	}
	l.cond = sync.NewCond(&l.mu)
	if on {
		for range lookaheadWorkers {
			l.wg.Go(l.work)
		}
	}
	return l
}

// close stops the workers and waits for them; the listings not taken are
// dropped.
func (l *lister) close() {
	l.mu.Lock()
	l.stopped.Store(true)
	l.cond.Broadcast()
	l.mu.Unlock()
	l.wg.Wait()
}

// start lists root (on device dev) and what it holds ahead of the walk,
// before the walk starts.
func (l *lister) start(root string, dev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j := &lookJob{abs: root, dev: dev, done: make(chan struct{})}
	l.jobs[root] = j
	l.waiting = append(l.waiting, j)
	l.wake()
}

// list returns the listing of directory abs (rel relative to the root, on
// device dev): made ahead, or made now. Its subdirectories the walk will
// enter are queued to be listed next.
func (l *lister) list(abs, rel string, dev uint64) listing {
	l.mu.Lock()
	j := l.jobs[abs]
	if j != nil {
		delete(l.jobs, abs)
		if !j.started {
			j = nil // still waiting: listed here, and dropped from the stack when met
		}
	}
	l.mu.Unlock()
	if j == nil {
		ls := l.read(abs)
		l.queue(rel, abs, dev, ls)
		return ls
	}
	<-j.done
	l.mu.Lock()
	l.held -= len(j.l.names)
	l.open--
	l.wake()
	l.mu.Unlock()
	return j.l
}

// wake wakes one idle worker if there may be work it can start; the
// worker that takes a job wakes the next (one at a time: waking them all
// at every change cost more system time than the listings saved). Called
// with mu held.
func (l *lister) wake() {
	if l.idle > 0 && len(l.waiting) > 0 && l.open < lookaheadDirs && l.held < lookaheadEntries {
		l.cond.Signal()
	}
}

// queue puts the subdirectories of a listed directory the walk will enter
// (on its device, not excluded) on the stack, the first on top.
func (l *lister) queue(rel, abs string, dev uint64, ls listing) {
	if ls.err != nil {
		return
	}
	var add []*lookJob
	for i := len(ls.names) - 1; i >= 0; i-- {
		st := &ls.sts[i]
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Dev != dev {
			continue
		}
		crel := ls.names[i]
		if rel != "" {
			crel = rel + "/" + crel
		}
		if l.excl.match(crel, true) {
			continue
		}
		add = append(add, &lookJob{abs: abs + "/" + ls.names[i], rel: crel, dev: dev, done: make(chan struct{})})
	}
	if len(add) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped.Load() {
		return
	}
	for _, j := range add {
		if _, ok := l.jobs[j.abs]; !ok {
			l.jobs[j.abs] = j
			l.waiting = append(l.waiting, j)
		}
	}
	l.wake()
}

// next returns the next directory to list, waiting while the lister is as
// far ahead as it may be; nil once it is closed.
func (l *lister) next() *lookJob {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.stopped.Load() {
			return nil
		}
		if l.open < lookaheadDirs && l.held < lookaheadEntries {
			for len(l.waiting) > 0 {
				j := l.waiting[len(l.waiting)-1]
				l.waiting = l.waiting[:len(l.waiting)-1]
				if l.jobs[j.abs] != j {
					continue // the walk got there first and listed it itself
				}
				j.started = true
				l.open++
				l.wake()
				return j
			}
		}
		l.idle++
		l.cond.Wait()
		l.idle--
	}
}

func (l *lister) work() {
	for {
		j := l.next()
		if j == nil {
			return
		}
		j.l = l.read(j.abs)
		l.mu.Lock()
		l.held += len(j.l.names)
		l.mu.Unlock()
		close(j.done)
		l.queue(j.rel, j.abs, j.dev, j.l)
	}
}

// read lists directory abs: its entries sorted by name, each with its
// lstat, looked up relative to the open directory (no walk of the whole
// path per entry).
func (l *lister) read(abs string) listing {
	f, err := openRead(abs, 0)
	if err != nil {
		return listing{err: fmt.Errorf("archive: %w", err)}
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return listing{err: fmt.Errorf("archive: %w", err)}
	}
	sort.Strings(names)
	dirfd := int(f.Fd())
	sts := getStats(len(names))
	if l.bat != nil {
		if err := l.bat.stat(dirfd, abs, names, sts); err != nil {
			return listing{err: err}
		}
		return listing{names: names, sts: sts}
	}
	for i, n := range names {
		if err := l.ctx.Err(); err != nil {
			return listing{err: fmt.Errorf("archive: %w", err)}
		}
		if l.stopped.Load() {
			return listing{err: errors.New("archive: lister closed")}
		}
		if err := fstatat(dirfd, n, &sts[i]); err != nil {
			return listing{err: fmt.Errorf("archive: %w", &os.PathError{Op: "lstat", Path: abs + "/" + n, Err: err})}
		}
	}
	return listing{names: names, sts: sts}
}

// statPools hold the stat arrays of listings the walk is done with (see
// putStats), by size class (a power of two): an increment lists every
// directory, and fresh memory for each listing was a third of its page
// faults.
var statPools [40]sync.Pool

// getStats returns room for the stat of n entries.
func getStats(n int) []unix.Stat_t {
	c := bits.Len(uint(n))
	if p, ok := statPools[c].Get().(*[]unix.Stat_t); ok {
		return (*p)[:n]
	}
	return make([]unix.Stat_t, n, 1<<c)
}

// putStats gives back the stat array of a listing nothing points into
// any more.
func putStats(sts []unix.Stat_t) {
	if c := cap(sts); c > 0 && c&(c-1) == 0 {
		statPools[bits.Len(uint(c))-1].Put(&sts)
	}
}
