package sandbox

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The guest's stream goes to the host through memory both share: a file
// in the sandbox's tmpfs (sbRing) that UML maps as the guest's mmapper
// device (iomem=mmapper,FILE; CONFIG_MMAPPER) and that voltar maps too.
// The guest copies its records into a ring there; the host copies them
// out. No system call per write and no copy through the guest's kernel:
// the serial line, which UML cuts into 2 KiB host writes, cost about 3 s
// of the guest's CPU per GiB into a pipe (0.16 s through the ring;
// docs/performance.md). The guest says on the serial line that it uses
// the ring (ringHello); a kernel without the mmapper device leaves the
// guest on the line, and the host reads whichever it is told.
//
// Layout: a 4 KiB header, then ringData bytes of data. In the header, on
// their own cache lines: magic (the launcher writes it), head (bytes the
// guest has written, ever; the guest stores it after the bytes), tail
// (bytes the host has taken; the host stores it) and closed (the guest
// sets it after its last byte). Everything in the file is the guest's to
// change: the host checks head against its own tail and the data size,
// copies the bytes out before the frame checks look at them, and turns a
// fault on the mapping (the file truncated under it) into an error.
const (
	ringHeader = 4096
	ringData   = 8 << 20
	ringSize   = ringHeader + ringData
	ringMagic  = "VOLTRING"
	offHead    = 64
	offTail    = 128
	offClosed  = 192
	// ringHello is what the guest writes on the serial line instead of
	// the stream when it uses the ring. Its first byte is not magic's.
	ringHello = "~ring\n"
)

// sbRing is the ring's file in the sandbox's root.
const sbRing = sbDir + "/ring"

// ring is a mapping of the ring's file.
type ring struct {
	mem    []byte
	head   *uint64
	tail   *uint64
	closed *uint32
	data   []byte
}

func mapRing(fd int) (*ring, error) {
	mem, err := unix.Mmap(fd, 0, ringSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the ring: %w", err)
	}
	at := func(off int) unsafe.Pointer { return unsafe.Pointer(&mem[off]) }
	return &ring{mem: mem, head: (*uint64)(at(offHead)), tail: (*uint64)(at(offTail)),
		closed: (*uint32)(at(offClosed)), data: mem[ringHeader:]}, nil
}

func (r *ring) unmap() {
	if r != nil && r.mem != nil {
		unix.Munmap(r.mem)
		r.mem = nil
	}
}

// makeRing creates the ring's file at path for the sandbox user (the
// launcher, as root, before UML starts).
func makeRing(path string, uid, gid int) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(ringSize); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(ringMagic), 0); err != nil {
		return err
	}
	return f.Chown(uid, gid)
}

// ringArg is UML's argument that makes the ring its mmapper device.
func ringArg() string { return "iomem=mmapper," + sbRing }

// guestRing is the guest's side: an io.Writer.
type guestRing struct {
	r *ring
	h uint64 // head, as this side wrote it
}

// openGuestRing maps the mmapper device (through a devtmpfs mounted for
// the moment on /mnt). An error: the guest uses the serial line.
func openGuestRing() (*guestRing, error) {
	if err := unix.Mount("devtmpfs", "/mnt", "devtmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("mount devtmpfs: %w", err)
	}
	fd, err := unix.Open("/mnt/mmapper", unix.O_RDWR|unix.O_CLOEXEC, 0)
	unix.Unmount("/mnt", unix.MNT_DETACH)
	if err != nil {
		return nil, fmt.Errorf("open the mmapper device: %w", err)
	}
	defer unix.Close(fd)
	r, err := mapRing(fd)
	if err != nil {
		return nil, err
	}
	if string(r.mem[:len(ringMagic)]) != ringMagic {
		r.unmap()
		return nil, errors.New("the mmapper device is not the ring")
	}
	return &guestRing{r: r}, nil
}

// Write copies p into the ring, waiting while it is full.
func (g *guestRing) Write(p []byte) (int, error) {
	n := len(p)
	wait := 20 * time.Microsecond
	for len(p) > 0 {
		free := ringData - (g.h - atomic.LoadUint64(g.r.tail))
		if free == 0 || free > ringData {
			time.Sleep(wait)
			wait = min(wait*2, time.Millisecond)
			continue
		}
		wait = 20 * time.Microsecond
		off := g.h % ringData
		c := copy(g.r.data[off:min(off+free, ringData)], p)
		g.h += uint64(c)
		atomic.StoreUint64(g.r.head, g.h)
		p = p[c:]
	}
	return n, nil
}

// Close marks the stream's end.
func (g *guestRing) Close() error {
	atomic.StoreUint32(g.r.closed, 1)
	return nil
}

// hostStream is what the host reads the guest's records from: the serial
// line's pipe, or the ring once the guest has said so on the line.
type hostStream struct {
	pipe  *os.File
	root  string // UML's root (/proc/PID/root), where the ring's file is
	log   *slog.Logger
	mode  byte
	first []byte // line: read before the mode was known
	ring  *ring
	tail  uint64
	gone  atomic.Bool // ring: the line ended (UML exited or was killed)
	stray atomic.Bool // ring: bytes on the line after the hello
}

const (
	modeUnknown = iota
	modeLine
	modeRing
)

func newHostStream(pipe *os.File, root string, log *slog.Logger) *hostStream {
	return &hostStream{pipe: pipe, root: root, log: log}
}

func (s *hostStream) close() { s.ring.unmap() }

func (s *hostStream) Read(p []byte) (int, error) {
	switch s.mode {
	case modeLine:
		if len(s.first) > 0 {
			n := copy(p, s.first)
			s.first = s.first[n:]
			return n, nil
		}
		return s.pipe.Read(p)
	case modeRing:
		return s.readRing(p)
	}
	var b [len(ringHello)]byte
	if _, err := io.ReadFull(s.pipe, b[:1]); err != nil {
		return 0, err
	}
	if b[0] != ringHello[0] {
		s.mode, s.first = modeLine, b[:1]
		s.log.Debug("sandbox: the stream comes on the serial line")
		return s.Read(p)
	}
	if _, err := io.ReadFull(s.pipe, b[1:]); err != nil || string(b[:]) != ringHello {
		return 0, malformed("a partial ring announcement %q (%v)", b, err)
	}
	r, err := openHostRing(s.root + sbRing)
	if err != nil {
		return 0, err
	}
	s.ring, s.mode = r, modeRing
	s.log.Debug("sandbox: the stream comes through the ring")
	go s.watch()
	return s.readRing(p)
}

// openHostRing maps the ring's file at path, which must be a regular file
// of the ring's size (not a symlink, not a FIFO: the sandbox user owns its
// directory).
func openHostRing(path string) (*ring, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the guest's ring: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("the guest's ring: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != ringSize {
		return nil, malformed("the ring is not a file of %d bytes (mode %o, %d bytes)", ringSize, st.Mode, st.Size)
	}
	return mapRing(fd)
}

// watch reads the line until it ends: the guest is gone.
func (s *hostStream) watch() {
	var b [512]byte
	for {
		n, err := s.pipe.Read(b[:])
		if n > 0 {
			s.stray.Store(true)
		}
		if err != nil {
			s.gone.Store(true)
			return
		}
	}
}

// readRing copies what the guest wrote into p, waiting until there is
// something, the guest closed the ring, or the guest is gone (io.EOF).
func (s *hostStream) readRing(p []byte) (n int, err error) {
	// A fault on the mapping is the file truncated under it: an error
	// of this stream, not a crash of voltar.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			n, err = 0, malformed("the ring's memory faulted (%v)", v)
		}
	}()
	wait := 20 * time.Microsecond
	for {
		head := atomic.LoadUint64(s.ring.head)
		if head < s.tail || head-s.tail > ringData {
			return 0, malformed("ring head %d with %d bytes taken", head, s.tail)
		}
		if head > s.tail {
			off := s.tail % ringData
			n = copy(p, s.ring.data[off:min(off+(head-s.tail), ringData)])
			s.tail += uint64(n)
			atomic.StoreUint64(s.ring.tail, s.tail)
			return n, nil
		}
		switch {
		case s.stray.Load():
			return 0, malformed("bytes on the serial line after the guest announced the ring")
		case atomic.LoadUint32(s.ring.closed) != 0, s.gone.Load():
			if atomic.LoadUint64(s.ring.head) == head {
				return 0, io.EOF
			}
			continue
		}
		time.Sleep(wait)
		wait = min(wait*2, 2*time.Millisecond)
	}
}
