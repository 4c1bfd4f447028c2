package archive

import (
	"sync"

	"golang.org/x/sys/unix"
)

// The archiver reads files one at a time, in tar order. On a cold snapshot
// each small file costs a few synchronous disk reads (inode, extent, data),
// so a tree of many small files is read at queue depth one. The prefetcher
// runs ahead of the archiver: its workers lstat and open the next entries
// and ask the kernel to start reading their data (POSIX_FADV_WILLNEED), so
// that many reads are in flight and the archiver finds the data cached.
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
)

// prefetcher follows the archiver's walk: a stack of the directories being
// archived, innermost last, which is also the order their remaining entries
// will be archived in.
type prefetcher struct {
	mu     sync.Mutex
	cond   *sync.Cond
	stack  []*pfDir
	ahead  int64 // bytes warmed and not yet passed by the archiver
	closed bool
	wg     sync.WaitGroup
}

type pfDir struct {
	dir    string
	names  []string
	warmed []int64 // bytes asked for, per entry, until the archiver passes it
	next   int     // next entry to prefetch
	at     int     // entry the archiver is at
}

// newPrefetcher starts the workers; with on false there are none, and
// the prefetcher only keeps its books.
func newPrefetcher(on bool) *prefetcher {
	p := &prefetcher{}
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
// order. It keeps names, not a copy of them.
func (p *prefetcher) push(dir string, names []string) *pfDir {
	d := &pfDir{dir: dir, names: names, warmed: make([]int64, len(names))}
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
		d.warmed[d.at] = 0
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// pop tells that the archiver is done with d, which must be innermost.
func (p *prefetcher) pop(d *pfDir) {
	p.advance(d, len(d.names))
	p.mu.Lock()
	if n := len(p.stack); n > 0 && p.stack[n-1] == d {
		p.stack = p.stack[:n-1]
	}
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
		if p.ahead < prefetchBytes {
			for k := len(p.stack) - 1; k >= 0; k-- {
				d := p.stack[k]
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
			n = warm(d.dir + "/" + d.names[i])
		}
		p.mu.Lock()
		if d.at <= i { // not passed yet: count it until it is
			d.warmed[i] = n
			p.ahead += n
		}
		p.mu.Unlock()
	}
}

// warm starts reading the inode and the first data of a regular file and
// returns how many bytes it asked for. Errors do not matter here: the
// archiver meets them again and reports them.
func warm(path string) int64 {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 {
		return 0
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	n := min(st.Size, prefetchFileBytes)
	_ = unix.Fadvise(fd, 0, n, unix.FADV_WILLNEED)
	unix.Close(fd)
	return n
}
