package fsattr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PAXPrealloc records a file's preallocated (fallocate'd, never written)
// ranges as "offset:length,..." in bytes; they may lie past the file's
// size (fallocate --keep-size). No other tool defines such a record.
const PAXPrealloc = "VOLTAR.prealloc"

// Range is a byte range of a file.
type Range struct{ Off, Len int64 }

// FS_IOC_FIEMAP and its flags (linux/fiemap.h).
const (
	iocFiemap          = 0xc020660b
	fiemapFlagSync     = 0x1
	fiemapExtLast      = 0x1
	fiemapExtUnwritten = 0x800
	fiemapBatch        = 128
)

type fiemapHeader struct {
	Start, Length                  uint64
	Flags, Mapped, Count, Reserved uint32
}

type fiemapExtent struct {
	Logical, Physical, Length uint64
	_                         [2]uint64
	Flags                     uint32
	_                         [3]uint32
}

// Prealloc lists the preallocated ranges of the regular file open as fd:
// extents the filesystem marks unwritten (they read as zeros). A
// filesystem without FIEMAP gives none.
func Prealloc(fd int) ([]Range, error) {
	buf := make([]byte, int(unsafe.Sizeof(fiemapHeader{}))+fiemapBatch*int(unsafe.Sizeof(fiemapExtent{})))
	h := (*fiemapHeader)(unsafe.Pointer(&buf[0]))
	exts := unsafe.Slice((*fiemapExtent)(unsafe.Pointer(&buf[unsafe.Sizeof(fiemapHeader{})])), fiemapBatch)
	var out []Range
	start := uint64(0)
	for {
		*h = fiemapHeader{Start: start, Length: ^uint64(0) - start, Flags: fiemapFlagSync, Count: fiemapBatch}
		if err := ioctlPtr(fd, iocFiemap, unsafe.Pointer(&buf[0])); err != nil {
			if unsupported(err) || errors.Is(err, unix.EBADR) {
				return nil, nil
			}
			return nil, fmt.Errorf("map extents: %w", err)
		}
		if h.Mapped == 0 {
			return out, nil
		}
		for _, e := range exts[:h.Mapped] {
			if e.Flags&fiemapExtUnwritten != 0 {
				if n := len(out); n > 0 && out[n-1].Off+out[n-1].Len == int64(e.Logical) {
					out[n-1].Len += int64(e.Length)
				} else {
					out = append(out, Range{int64(e.Logical), int64(e.Length)})
				}
			}
			if e.Flags&fiemapExtLast != 0 {
				return out, nil
			}
			start = e.Logical + e.Length
		}
	}
}

// PreallocPAX encodes ranges for PAXPrealloc.
func PreallocPAX(rs []Range) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d:%d", r.Off, r.Len)
	}
	return b.String()
}

// PreallocFromPAX decodes a PAXPrealloc record; malformed or negative
// ranges (a store is not trusted) are an error.
func PreallocFromPAX(s string) ([]Range, error) {
	if s == "" {
		return nil, nil
	}
	var out []Range
	for _, f := range strings.Split(s, ",") {
		o, l, ok := strings.Cut(f, ":")
		off, err1 := strconv.ParseInt(o, 10, 64)
		n, err2 := strconv.ParseInt(l, 10, 64)
		if !ok || err1 != nil || err2 != nil || off < 0 || n <= 0 || off > 1<<62 || n > 1<<62 {
			return nil, fmt.Errorf("bad %s range %q", PAXPrealloc, f)
		}
		out = append(out, Range{off, n})
	}
	return out, nil
}

// Preallocate allocates rs in the file open as fd without changing its
// size or data: what fallocate --keep-size does.
func Preallocate(fd int, rs []Range) error {
	for _, r := range rs {
		if err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, r.Off, r.Len); err != nil {
			return fmt.Errorf("preallocate %d bytes at %d: %w", r.Len, r.Off, err)
		}
	}
	return nil
}

// fiemapExtShared marks an extent other files (reflinks, snapshots,
// deduplicated copies) share.
const fiemapExtShared = 0x2000

// Shared returns how many bytes of the regular file open as fd lie in
// extents the filesystem marks shared, and how many of those it had not
// met yet: once records each shared extent's physical start, so a
// filesystem's files counted in turn give each shared extent once. A
// filesystem without FIEMAP shares nothing.
func Shared(fd int, once map[uint64]bool) (shared, first int64, err error) {
	buf := make([]byte, int(unsafe.Sizeof(fiemapHeader{}))+fiemapBatch*int(unsafe.Sizeof(fiemapExtent{})))
	h := (*fiemapHeader)(unsafe.Pointer(&buf[0]))
	exts := unsafe.Slice((*fiemapExtent)(unsafe.Pointer(&buf[unsafe.Sizeof(fiemapHeader{})])), fiemapBatch)
	start := uint64(0)
	for {
		*h = fiemapHeader{Start: start, Length: ^uint64(0) - start, Count: fiemapBatch}
		if err := ioctlPtr(fd, iocFiemap, unsafe.Pointer(&buf[0])); err != nil {
			if unsupported(err) || errors.Is(err, unix.EBADR) {
				return 0, 0, nil
			}
			return shared, first, fmt.Errorf("map extents: %w", err)
		}
		if h.Mapped == 0 {
			return shared, first, nil
		}
		for _, e := range exts[:h.Mapped] {
			if e.Flags&fiemapExtShared != 0 {
				shared += int64(e.Length)
				if !once[e.Physical] {
					once[e.Physical] = true
					first += int64(e.Length)
				}
			}
			if e.Flags&fiemapExtLast != 0 {
				return shared, first, nil
			}
			start = e.Logical + e.Length
		}
	}
}
