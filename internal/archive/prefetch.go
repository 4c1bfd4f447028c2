package archive

import (
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The archiver reads files one at a time, in tar order. On a cold snapshot
// each small file costs a few synchronous disk reads (inode, extent, data),
// so a tree of many small files is read at queue depth one. The prefetcher
// runs ahead of the archiver: its workers open the next regular files (the
// directory's listing has their sizes already) and ask the kernel to start
// reading their data (POSIX_FADV_WILLNEED), so that many reads are in
// flight and the archiver finds the data cached.
//
// On a tree already in the page cache all that is wasted: three system
// calls per file and the wake-ups, ~4% of the CPU of a backup of the
// benchmark corpus (docs/performance.md). So the archiver pauses the
// workers after prefetchEvery files and reads the first bytes of the
// files after that with RWF_NOWAIT (which fails instead of waiting for
// the disk): while every file is found in the page cache the workers stay
// paused; the first that is not resumes them, for twice as many files as
// before the next pause. On a cold tree a pause costs a few synchronous
// reads once the warmed window is used up, and pauses get rare. (A backup
// mounts its snapshot afresh, so there the files are not cached and the
// workers stay on; a tree whose files are cached is what pauses them.)
//
// It holds no file data itself; what it warms lives in the page cache, and
// it stays at most prefetchEntries entries of a directory and prefetchBytes
// of data ahead of the archiver (of each file, only the first
// prefetchFileBytes: larger files are read sequentially and the kernel's
// readahead keeps up with them).
const (
	prefetchWorkers   = 16
	prefetchEntries   = 512
	prefetchBytes     = 64 << 20
	prefetchFileBytes = 1 << 20
	// The workers are woken when the archiver has passed prefetchWake
	// entries or prefetchWakeBytes of warmed data since the last wake-up,
	// not at every entry: on a page-cached tree the workers keep the
	// window full, and a wake-up of all of them per file cost more than
	// the rest of the prefetcher.
	prefetchWake      = 32
	prefetchWakeBytes = 4 << 20
	prefetchEveryMax  = 1 << 22
)

// prefetchEvery is how many files are archived before the workers' first
// pause; it doubles with every pause a file not in the page cache ends, up
// to prefetchEveryMax. (A variable for the tests.)
var prefetchEvery = 2048

// cachedReads counts first reads served from the page cache while the
// workers were paused (tests).
var cachedReads atomic.Int64

// prefetcher follows the archiver's walk: a stack of the directories being
// archived, innermost last, which is also the order their remaining entries
// will be archived in.
type prefetcher struct {
	mu     sync.Mutex
	cond   *sync.Cond
	stack  []*pfDir
	ahead  int64 // bytes warmed and not yet passed by the archiver
	closed bool
	// Passed by the archiver since the workers were last woken.
	passed, passedBytes int64
	paused              bool // the workers wait (see read)

	// The archiver's own (only its goroutine uses them): files read
	// since the workers last resumed, the count that pauses them, and
	// whether pausing is over for good (no workers, or no RWF_NOWAIT).
	files, every int
	never        bool
	wg           sync.WaitGroup
}

type pfDir struct {
	dir    string
	names  []string
	sizes  []int64
	warmed []int64 // bytes asked for, per entry, until the archiver passes it
	next   int     // next entry to prefetch
	at     int     // entry the archiver is at
}

// newPrefetcher starts the workers; with on false there are none, and
// the prefetcher only keeps its books.
func newPrefetcher(on bool) *prefetcher {
	p := &prefetcher{every: prefetchEvery, never: !on}
	p.cond = sync.NewCond(&p.mu)
	workers := prefetchWorkers
	if !on {
		workers = 0
	}
	for range workers {
		p.wg.Go(p.work)
	}
	return p
}

// close stops the workers and waits for them.
func (p *prefetcher) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

// push announces the entries of directory dir about to be archived, in
// order: names[i] is a regular file of sizes[i] bytes to read, "" for an
// entry with nothing to read. It keeps both, not a copy of them.
func (p *prefetcher) push(dir string, names []string, sizes []int64) *pfDir {
	d := &pfDir{dir: dir, names: names, sizes: sizes, warmed: make([]int64, len(names))}
	p.mu.Lock()
	p.stack = append(p.stack, d)
	p.cond.Broadcast()
	p.mu.Unlock()
	return d
}

// advance tells that the archiver is at entry i of d.
func (p *prefetcher) advance(d *pfDir, i int) {
	p.mu.Lock()
	for ; d.at < i; d.at++ {
		p.ahead -= d.warmed[d.at]
		p.passed++
		p.passedBytes += d.warmed[d.at]
		d.warmed[d.at] = 0
	}
	if p.passed >= prefetchWake || p.passedBytes >= prefetchWakeBytes {
		p.wake()
	}
	p.mu.Unlock()
}

// wake wakes the workers; p.mu is held.
func (p *prefetcher) wake() {
	p.passed, p.passedBytes = 0, 0
	p.cond.Broadcast()
}

// pop tells that the archiver is done with d, which must be innermost.
func (p *prefetcher) pop(d *pfDir) {
	p.advance(d, len(d.names))
	p.mu.Lock()
	if n := len(p.stack); n > 0 && p.stack[n-1] == d {
		p.stack = p.stack[:n-1]
	}
	// The directory outside sets the pace again.
	p.wake()
	p.mu.Unlock()
}

// take returns the next entry to prefetch, waiting while the window is
// full; ok is false once the prefetcher is closed.
func (p *prefetcher) take() (d *pfDir, i int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.closed {
			return nil, 0, false
		}
		if p.ahead < prefetchBytes && !p.paused {
			for k := len(p.stack) - 1; k >= 0; k-- {
				d := p.stack[k]
				d.next = max(d.next, d.at) // what the archiver passed is read
				if d.next < len(d.names) {
					if d.next >= d.at+prefetchEntries {
						break // the innermost directory with work sets the pace
					}
					d.next++
					return d, d.next - 1, true
				}
			}
		}
		p.cond.Wait()
	}
}

func (p *prefetcher) work() {
	for {
		d, i, ok := p.take()
		if !ok {
			return
		}
		var n int64
		if d.names[i] != "" { // "": nothing to read (left out, or unchanged)
			n = warm(d.dir+"/"+d.names[i], d.sizes[i])
		}
		p.mu.Lock()
		if d.at <= i { // not passed yet: count it until it is
			d.warmed[i] = n
			p.ahead += n
		}
		p.mu.Unlock()
	}
}

// warm starts reading the first data of a regular file of size bytes and
// returns how many bytes it asked for. Errors do not matter here: the
// archiver meets them again and reports them.
func warm(path string, size int64) int64 {
	if size <= 0 {
		return 0
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	n := min(size, prefetchFileBytes)
	_ = unix.Fadvise(fd, 0, n, unix.FADV_WILLNEED)
	unix.Close(fd)
	return n
}

// read reads the first bytes of a regular file for the archiver into buf
// (at most len(buf), from offset 0) and counts the file: after p.every
// files it pauses the workers, and while they are paused it reads with
// RWF_NOWAIT and resumes them at the first file not in the page cache.
// It returns what it read; a short read (or none) leaves the rest to the
// caller's plain reads.
func (p *prefetcher) read(fd int, buf []byte) []byte {
	if p.never {
		return nil
	}
	// Only this goroutine sets p.paused: reading it needs no lock.
	if !p.paused {
		if p.files++; p.files >= p.every {
			p.setPaused(true)
		}
		return nil
	}
	n, err := unix.Preadv2(fd, [][]byte{buf}, 0, unix.RWF_NOWAIT)
	switch {
	case err == nil && n == len(buf):
		cachedReads.Add(1)
		return buf // in the page cache: stay paused
	case err == nil, errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		// Not (all) in the page cache: n bytes, or none, came back.
	default:
		// No RWF_NOWAIT here (EOPNOTSUPP, EINVAL) or another error that
		// the plain reads meet again: prefetch as before, for good.
		p.never = true
		n = 0
	}
	p.files, p.every = 0, min(p.every*2, prefetchEveryMax)
	p.setPaused(false)
	return buf[:max(n, 0)]
}

func (p *prefetcher) setPaused(paused bool) {
	p.mu.Lock()
	p.paused = paused
	if !paused {
		p.wake()
	}
	p.mu.Unlock()
}
