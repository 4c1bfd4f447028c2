// Package uring is the small part of Linux io_uring that the sandbox's
// guest uses to batch the archive walk's system calls: statx, openat, read
// and close, submitted many at a time and waited for together.
//
// In the sandbox's User-Mode Linux guest every system call a process makes
// is a round trip through the host (ptrace); a batch of requests in one
// io_uring_enter is one round trip, and the guest kernel carries them out
// in its own process (docs/performance.md, "isolation: sandbox"). On a
// host kernel a system call is cheaper than the batching, so nothing else
// uses this.
//
// No Go io_uring library is available here; this is the ring setup and the
// submission and completion queues of io_uring_setup(2) and
// io_uring_enter(2), nothing more. A Ring is used by one goroutine at a
// time.
package uring

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Opcodes (linux/io_uring.h), as of Linux 5.6.
const (
	opOpenat = 18
	opClose  = 19
	opStatx  = 21
	opRead   = 22
)

// mmap offsets of the rings and of the submission entries.
const (
	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

const (
	featSingleMmap = 1 << 0
	enterGetEvents = 1 << 0
)

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	resv2                                                           uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	resv2                                                           uint64
}

// params is struct io_uring_params.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64 // or addr2
	addr     uint64
	len      uint32
	opFlags  uint32 // open_flags, statx_flags, rw_flags
	userData uint64
	bufIndex uint16
	pers     uint16
	fileIdx  int32
	addr3    uint64
	_        uint64
}

// cqe is struct io_uring_cqe.
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Ring is an io_uring instance.
type Ring struct {
	fd      int
	entries uint32
	rings   []byte // the submission and completion rings (one mapping)
	sqeMem  []byte
	sqHead  *uint32
	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []sqe
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []cqe
}

// New sets up a ring of entries submission slots (a power of two). It
// fails where the kernel has no io_uring, or lacks the single mapping of
// both rings (Linux 5.4).
func New(entries uint32) (*Ring, error) {
	var p params
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	r := &Ring{fd: int(fd), entries: p.sqEntries}
	if p.features&featSingleMmap == 0 {
		r.Close()
		return nil, errors.New("io_uring: kernel too old (no single ring mapping)")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	var err error
	r.rings, err = unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring: map rings: %w", err)
	}
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring: map entries: %w", err)
	}
	base := unsafe.Pointer(&r.rings[0])
	at := func(off uint32) unsafe.Pointer { return unsafe.Add(base, off) }
	r.sqHead, r.sqTail = (*uint32)(at(p.sqOff.head)), (*uint32)(at(p.sqOff.tail))
	r.sqMask = *(*uint32)(at(p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(at(p.sqOff.array)), p.sqEntries)
	r.cqHead, r.cqTail = (*uint32)(at(p.cqOff.head)), (*uint32)(at(p.cqOff.tail))
	r.cqMask = *(*uint32)(at(p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*cqe)(at(p.cqOff.cqes)), p.cqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	return r, nil
}

// Close releases the ring.
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
		r.sqeMem = nil
	}
	if r.rings != nil {
		unix.Munmap(r.rings)
		r.rings = nil
	}
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Op is one request. Its result is in Res after Run: what the system call
// returns, or minus its errno.
type Op struct {
	sqe  sqe
	keep any // what the kernel reads or writes, alive until Run returns
	Res  int32
}

// Err is the request's error, nil if it succeeded.
func (o *Op) Err() error {
	if o.Res < 0 {
		return syscall.Errno(-o.Res)
	}
	return nil
}

// Statx is statx(dirfd, path, flags, mask, st); path ends with a NUL byte.
func Statx(dirfd int, path []byte, flags, mask int, st *unix.Statx_t) Op {
	mustNUL(path)
	return Op{sqe: sqe{opcode: opStatx, fd: int32(dirfd), addr: addr(unsafe.Pointer(&path[0])),
		len: uint32(mask), opFlags: uint32(flags), off: addr(unsafe.Pointer(st))},
		keep: [2]any{path, st}}
}

// Openat is openat(dirfd, path, flags, 0); path ends with a NUL byte. Res
// is the new descriptor.
func Openat(dirfd int, path []byte, flags int) Op {
	mustNUL(path)
	return Op{sqe: sqe{opcode: opOpenat, fd: int32(dirfd), addr: addr(unsafe.Pointer(&path[0])), opFlags: uint32(flags)},
		keep: path}
}

// Pread is pread(fd, buf, off); buf is not empty.
func Pread(fd int, buf []byte, off int64) Op {
	return Op{sqe: sqe{opcode: opRead, fd: int32(fd), addr: addr(unsafe.Pointer(&buf[0])), len: uint32(len(buf)), off: uint64(off)},
		keep: buf}
}

// Close is close(fd).
func Close(fd int) Op {
	return Op{sqe: sqe{opcode: opClose, fd: int32(fd)}}
}

func addr(p unsafe.Pointer) uint64 { return uint64(uintptr(p)) }

func mustNUL(path []byte) {
	if len(path) == 0 || path[len(path)-1] != 0 {
		panic("uring: path without its NUL byte")
	}
}

// Run submits ops and waits until every one has completed, in batches of
// the ring's size; the order they complete in is the kernel's. Their
// buffers must be on the heap (not a goroutine's stack, which may move).
// An error is the ring failing, not a request (see Op.Res); the ring is
// then unusable.
func (r *Ring) Run(ops []Op) error {
	for len(ops) > 0 {
		n := min(len(ops), int(r.entries))
		if err := r.run(ops[:n]); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

func (r *Ring) run(ops []Op) error {
	if r.fd < 0 {
		return errors.New("io_uring: closed")
	}
	tail := *r.sqTail // written by this side only
	for i := range ops {
		slot := (tail + uint32(i)) & r.sqMask
		r.sqes[slot] = ops[i].sqe
		r.sqes[slot].userData = uint64(i)
		r.sqArray[slot] = slot
	}
	atomic.StoreUint32(r.sqTail, tail+uint32(len(ops)))
	done := 0
	for done < len(ops) {
		// Submit what the kernel has not consumed yet (all of it, unless an
		// earlier call was interrupted) and wait for the rest.
		pending := atomic.LoadUint32(r.sqTail) - atomic.LoadUint32(r.sqHead)
		_, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(pending), uintptr(len(ops)-done), enterGetEvents, 0, 0)
		switch e {
		case 0, unix.EINTR, unix.EAGAIN, unix.EBUSY:
		default:
			r.Close()
			return fmt.Errorf("io_uring_enter: %w", e)
		}
		head := *r.cqHead // written by this side only
		for end := atomic.LoadUint32(r.cqTail); head != end; head++ {
			c := &r.cqes[head&r.cqMask]
			if c.userData < uint64(len(ops)) {
				ops[c.userData].Res = c.res
				done++
			}
		}
		atomic.StoreUint32(r.cqHead, head)
	}
	runtime.KeepAlive(ops)
	return nil
}
