package archive

import (
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"voltar/internal/uring"
)

// With Options.Batch the walk submits its per-entry system calls in
// batches through io_uring (internal/uring): the lstat of every entry of a
// directory in one batch, and the open and the first read of the regular
// files a directory archives next, a window of them at a time, with the
// close of the files done before. Everything else (inode flags, xattrs,
// further reads) stays a plain system call, and the stream is byte for
// byte what the plain walk writes.
//
// It is for the sandbox's guest (internal/sandbox), where each system call
// is a round trip through the host: a batch of them is one. On a host a
// system call costs less than batching it. Batch implies NoPrefetch: the
// ring serves the walk's goroutine only.
const (
	batchRing     = 64        // ring slots
	batchFiles    = 32        // files opened ahead, at most
	batchReadFile = 128 << 10 // first bytes of each read ahead, at most
	batchReadAll  = 2 << 20   // bytes read ahead in all, at most
)

// batchedCalls counts the system calls submitted through a ring (tests).
var batchedCalls atomic.Int64

// batcher holds the ring and what was submitted through it.
type batcher struct {
	ring   *uring.Ring
	ops    []uring.Op
	stx    []unix.Statx_t
	paths  []byte // the NUL-terminated paths of the ops
	closes []int  // descriptors to close with the next batch
	broken bool   // the ring failed

	// The window: regular files of directory dir, opened ahead.
	dir   string
	files []ahead
	data  []byte // their first bytes
}

// ahead is a regular file opened ahead.
type ahead struct {
	kid   int    // its index in the directory's children
	fd    int    // -1: the open failed
	want  int    // bytes read ahead: min(size, batchReadFile), 0 for none
	data  []byte // what the read ahead gave: want bytes, else nil
	taken bool   // given to the walk, which closes it
}

// newBatcher sets up the ring; nil (plain system calls) where the kernel
// has no io_uring.
func newBatcher(log *slog.Logger) *batcher {
	r, err := uring.New(batchRing)
	if err != nil {
		log.Debug("archive: system calls not batched", "err", err)
		return nil
	}
	return &batcher{ring: r, data: make([]byte, batchReadAll)}
}

// close closes what is still open and the ring.
func (b *batcher) close() {
	if b == nil {
		return
	}
	b.release(-1)
	b.ops = b.ops[:0]
	b.run()
	b.ring.Close()
}

// run submits b.ops and the pending closes and waits for them.
// If the ring fails (never seen once it is set up) every op's result is
// an error, and the walk does the same calls itself; the closes it may
// or may not have done are left (closing again could close a descriptor
// reused since), and later ones are plain close calls.
func (b *batcher) run() {
	if b.broken {
		for _, fd := range b.closes {
			unix.Close(fd)
		}
		b.closes = b.closes[:0]
		b.failed()
		return
	}
	m := len(b.ops)
	for _, fd := range b.closes {
		b.ops = append(b.ops, uring.Close(fd))
	}
	b.closes = b.closes[:0]
	var err error
	if len(b.ops) > 0 {
		err = b.ring.Run(b.ops)
		batchedCalls.Add(int64(len(b.ops)))
	}
	b.ops = b.ops[:m]
	if err != nil {
		b.broken = true
		b.failed()
	}
}

func (b *batcher) failed() {
	for i := range b.ops {
		b.ops[i].Res = -int32(unix.EIO)
	}
}

// stat lstats the names in the directory open as dirfd into sts (one
// batch per ring's worth), as fstatat would.
func (b *batcher) stat(dirfd int, abs string, names []string, sts []unix.Stat_t) error {
	if cap(b.stx) < len(names) {
		b.stx = make([]unix.Statx_t, len(names))
	}
	stx := b.stx[:len(names)]
	b.ops = b.ops[:0]
	size := 0
	for _, n := range names {
		size += len(n) + 1
	}
	b.paths = b.paths[:0]
	if cap(b.paths) < size {
		b.paths = make([]byte, 0, size)
	}
	for i, n := range names {
		b.ops = append(b.ops, uring.Statx(dirfd, b.path("", n), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx[i]))
	}
	b.run()
	for i := range names {
		// An error is asked again without the ring: the same call gives
		// the same error, and the ring's own failure none.
		err := b.ops[i].Err()
		if err == nil {
			statFromStatx(&stx[i], &sts[i])
		} else {
			err = fstatat(dirfd, names[i], &sts[i])
		}
		if err != nil {
			return fmt.Errorf("archive: %w", &os.PathError{Op: "lstat", Path: abs + "/" + names[i], Err: err})
		}
	}
	return nil
}

// path adds dir/name (name alone for dir "") with the NUL byte the kernel
// wants to b.paths, which has room for it: a slice of b.paths is not
// moved by a later append while a batch runs.
func (b *batcher) path(dir, name string) []byte {
	at := len(b.paths)
	if dir != "" {
		b.paths = append(append(b.paths, dir...), '/')
	}
	b.paths = append(append(b.paths, name...), 0)
	return b.paths[at:len(b.paths):len(b.paths)]
}

// statFromStatx fills st as lstat(2) would from what statx(2) gave.
func statFromStatx(x *unix.Statx_t, st *unix.Stat_t) {
	*st = unix.Stat_t{
		Dev:     unix.Mkdev(x.Dev_major, x.Dev_minor),
		Ino:     x.Ino,
		Nlink:   uint64(x.Nlink),
		Mode:    uint32(x.Mode),
		Uid:     x.Uid,
		Gid:     x.Gid,
		Rdev:    unix.Mkdev(x.Rdev_major, x.Rdev_minor),
		Size:    int64(x.Size),
		Blksize: int64(x.Blksize),
		Blocks:  int64(x.Blocks),
		Atim:    unix.Timespec{Sec: x.Atime.Sec, Nsec: int64(x.Atime.Nsec)},
		Mtim:    unix.Timespec{Sec: x.Mtime.Sec, Nsec: int64(x.Mtime.Nsec)},
		Ctim:    unix.Timespec{Sec: x.Ctime.Sec, Nsec: int64(x.Ctime.Nsec)},
	}
}

// file returns child i of directory abs opened ahead, opening the next
// window of files first when it is not: kids[j] is read when names[j] is
// not "", and a window stops before a directory (the walk enters it before
// the files after it). false: not a file to read. The walk owns what it is
// given (its descriptor; its data until the next call); files of the
// window it passed without being given are closed.
func (b *batcher) file(abs string, kids []child, names []string, i int) (ahead, bool) {
	if b.dir != abs {
		b.release(-1)
		b.dir = abs
	}
	b.release(i)
	if names[i] == "" {
		return ahead{}, false
	}
	if len(b.files) > 0 && b.files[0].kid == i {
		b.files[0].taken = true
		return b.files[0], true
	}
	b.files = b.files[:0]
	b.ops = b.ops[:0]
	size := 0
	for j := i; j < len(kids) && len(b.files) < batchFiles; j++ {
		if kids[j].st.Mode&unix.S_IFMT == unix.S_IFDIR {
			break
		}
		if names[j] != "" {
			b.files = append(b.files, ahead{kid: j})
			size += len(abs) + 1 + len(names[j]) + 1
		}
	}
	b.paths = b.paths[:0]
	if cap(b.paths) < size {
		b.paths = make([]byte, 0, size)
	}
	for _, f := range b.files {
		b.ops = append(b.ops, uring.Openat(unix.AT_FDCWD, b.path(abs, names[f.kid]), fileFlags))
	}
	b.run()
	for k := range b.files {
		f := &b.files[k]
		f.fd = int(b.ops[k].Res)
		if b.ops[k].Err() != nil {
			f.fd = -1 // the walk opens it itself, and meets the error
		}
	}
	// The first bytes of each, as much as the buffer holds; not of a file
	// that may have holes (it is read by its data segments).
	b.ops = b.ops[:0]
	used := 0
	var reads [][2]int // window index, offset in b.data
	for k := range b.files {
		f := &b.files[k]
		st := kids[f.kid].st
		if f.fd < 0 || st.Size == 0 || st.Blocks*512 < st.Size {
			continue
		}
		want := int(min(st.Size, batchReadFile))
		if used+want > len(b.data) {
			break
		}
		f.want = want
		b.ops = append(b.ops, uring.Pread(f.fd, b.data[used:used+want], 0))
		reads = append(reads, [2]int{k, used})
		used += want
	}
	b.run()
	for n, r := range reads {
		f := &b.files[r[0]]
		if int(b.ops[n].Res) == f.want { // else the walk reads it again and meets what went wrong
			f.data = b.data[r[1] : r[1]+f.want]
		}
	}
	b.files[0].taken = true
	return b.files[0], true
}

// release drops the window's files before child i (all: i < 0), closing
// those the walk did not take.
func (b *batcher) release(i int) {
	k := 0
	for ; k < len(b.files) && (i < 0 || b.files[k].kid < i); k++ {
		if f := &b.files[k]; !f.taken && f.fd >= 0 {
			b.closes = append(b.closes, f.fd)
		}
	}
	b.files = append(b.files[:0], b.files[k:]...)
}

// closeLater closes fd with the next batch.
func (b *batcher) closeLater(fd int) { b.closes = append(b.closes, fd) }
