package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	loopControl = "/dev/loop-control"
	loopMajor   = 7
	// attachAttempts bounds the retries when another process takes the
	// free device between LOOP_CTL_GET_FREE and our LOOP_CONFIGURE.
	attachAttempts = 20
)

// busyTimeout is how long Detach, DetachLoop and Unmount retry EBUSY: udev,
// blkid or an indexer may hold a device or tree for a moment. A variable so
// tests need not wait for it.
var busyTimeout = 5 * time.Second

// useLoopConfigure is false only in tests of the pre-5.8 fallback.
var useLoopConfigure = true

// MaxTagLen is the longest tag AttachLoop accepts: lo_file_name is 64 bytes
// including its terminating NUL.
const MaxTagLen = unix.LO_NAME_SIZE - 1

// Loop is a loop device attached by AttachLoop. It holds the device open
// until Detach: the device is attached with LO_FLAGS_AUTOCLEAR, so if voltar
// dies the kernel frees it as soon as it is unmounted, and nothing needs to
// remember it.
type Loop struct {
	Path     string // /dev/loopN
	Number   int
	Backing  string
	Offset   int64
	Size     int64
	ReadOnly bool
	Tag      string

	mu sync.Mutex
	f  *os.File // nil once detached
}

// LoopInfo describes an attached loop device, whoever attached it.
type LoopInfo struct {
	Path      string
	Backing   string // from sysfs; may end in " (deleted)"
	Tag       string // lo_file_name: voltar's tag, or the backing path for losetup's loops
	Offset    int64
	SizeLimit int64 // 0 means up to the end of the backing
	// Err is why the device's tag could not be read (its backing file
	// is on a filesystem that went away, e.g. a dead FUSE mount): whose
	// it is cannot be told, so it is nobody's to detach.
	Err error
}

// AttachLoop maps size bytes at offset of backing (a regular file or block
// device) to a new loop device; size 0 means up to the end. The tag (at
// most MaxTagLen bytes, e.g. "voltar:20261125T1830-ab12") is stored as the
// device's lo_file_name so that a later run can find loops a crashed run
// left behind with ListLoops.
//
// The caller must call Detach.
func AttachLoop(ctx context.Context, backing string, offset, size int64, readOnly bool, tag string) (*Loop, error) {
	return AttachLoopSectors(ctx, backing, offset, size, readOnly, tag, 0)
}

// AttachLoopSectors is AttachLoop with the loop device's logical sector
// size set to sector bytes (0: the kernel's default, 512), so tools that
// read or write a partition table on it (sfdisk) use that sector size: an
// image file of a 4Kn disk gets a 4096-byte-sector GPT.
func AttachLoopSectors(ctx context.Context, backing string, offset, size int64, readOnly bool, tag string, sector int) (*Loop, error) {
	l, err := attachLoop(ctx, backing, offset, size, readOnly, tag, sector)
	if err != nil {
		return nil, fmt.Errorf("attach loop for %s at offset %d size %d: %w", backing, offset, size, err)
	}
	return l, nil
}

func attachLoop(ctx context.Context, backing string, offset, size int64, readOnly bool, tag string, sector int) (*Loop, error) {
	if len(tag) > MaxTagLen || strings.IndexByte(tag, 0) >= 0 {
		return nil, fmt.Errorf("tag %q longer than %d bytes or contains NUL", tag, MaxTagLen)
	}
	if offset < 0 || size < 0 {
		return nil, errors.New("negative offset or size")
	}
	mode := os.O_RDWR
	if readOnly {
		mode = os.O_RDONLY
	}
	bf, err := os.OpenFile(backing, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// The kernel takes its own reference to the backing file.
	defer bf.Close()
	total, err := deviceSize(bf)
	if err != nil {
		return nil, err
	}
	if offset >= total {
		return nil, fmt.Errorf("offset is past the end of the backing (%d bytes)", total)
	}
	if size == 0 {
		size = total - offset
	}
	if size > total-offset {
		return nil, fmt.Errorf("range ends at byte %d, past the end of the backing (%d bytes)", offset+size, total)
	}

	ctl, err := os.OpenFile(loopControl, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()

	var lastErr error
	for attempt := 0; attempt < attachAttempts; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		path, err := loopNode(n)
		if err != nil {
			return nil, err
		}
		// Opened read-write even for a read-only loop: the kernel
		// makes a loop read-only when the device fd lacks write mode.
		lf, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		err = configureLoop(lf, bf, offset, size, readOnly, tag, sector)
		if errors.Is(err, unix.EBUSY) {
			// Another process bound this device since GET_FREE.
			lf.Close()
			lastErr = fmt.Errorf("%s: %w", path, err)
			time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
			continue
		}
		if err != nil {
			lf.Close()
			return nil, fmt.Errorf("configure %s: %w", path, err)
		}
		l := &Loop{Path: path, Number: n, Backing: backing, Offset: offset, Size: size, ReadOnly: readOnly, Tag: tag, f: lf}
		if err := l.holdReadOnly(); err != nil {
			l.Detach()
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("no free loop device after %d attempts: %w", attachAttempts, lastErr)
}

// configureLoop binds bf to the loop device lf. LOOP_CONFIGURE does it in one
// step; kernels before 5.8 answer EINVAL or ENOTTY and get the older two-step
// LOOP_SET_FD + LOOP_SET_STATUS64.
func configureLoop(lf, bf *os.File, offset, size int64, readOnly bool, tag string, sector int) error {
	var cfg unix.LoopConfig
	cfg.Fd = uint32(bf.Fd())
	cfg.Size = uint32(sector) // struct loop_config.block_size
	cfg.Info.Offset = uint64(offset)
	cfg.Info.Sizelimit = uint64(size)
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	if readOnly {
		cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	copy(cfg.Info.File_name[:], tag)
	fd := int(lf.Fd())
	var err error = unix.ENOTTY
	if useLoopConfigure {
		err = unix.IoctlLoopConfigure(fd, &cfg)
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return err
	}
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_FD, int(bf.Fd())); err != nil {
		return fmt.Errorf("LOOP_SET_FD: %w", err)
	}
	// LOOP_SET_STATUS64 cannot set READ_ONLY; the read-only backing fd
	// already made the device read-only.
	cfg.Info.Flags &^= unix.LO_FLAGS_READ_ONLY
	if err := unix.IoctlLoopSetStatus64(fd, &cfg.Info); err != nil {
		unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("LOOP_SET_STATUS64: %w", err)
	}
	if sector != 0 {
		if err := unix.IoctlSetInt(fd, unix.LOOP_SET_BLOCK_SIZE, sector); err != nil {
			unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
			return fmt.Errorf("LOOP_SET_BLOCK_SIZE %d: %w", sector, err)
		}
	}
	return nil
}

// holdReadOnly swaps the read-write fd used for configuring for a read-only
// one, so that voltar holding the device does not count as a writer when the
// filesystem on it is mounted. The new fd is opened before the old one is
// closed: with AUTOCLEAR, the last close would free the device.
func (l *Loop) holdReadOnly() error {
	ro, err := os.OpenFile(l.Path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reopen %s: %w", l.Path, err)
	}
	l.f.Close()
	l.f = ro
	return nil
}

// Detach unbinds the loop device. It is safe to call more than once. If the
// device is still mounted the kernel frees it at unmount (AUTOCLEAR).
func (l *Loop) Detach() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := clearLoop(l.f, l.Path)
	// Closed even on error: with AUTOCLEAR set, the kernel frees the
	// device once its last user lets go.
	if cerr := l.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", l.Path, cerr)
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("detach loop %s (%s): %w", l.Path, l.Tag, err)
	}
	return nil
}

// DetachLoop unbinds the loop device at path, for sweeping what a dead run
// left behind. A device that is already free is not an error.
func DetachLoop(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("detach loop %s: %w", path, err)
	}
	err = clearLoop(f, path)
	f.Close()
	if err != nil {
		return fmt.Errorf("detach loop %s: %w", path, err)
	}
	return nil
}

// clearLoop issues LOOP_CLR_FD, retrying EBUSY: older kernels refuse it while
// anyone else (udev, a prober) has the device open. ENXIO means unbound.
func clearLoop(f *os.File, path string) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
		switch {
		case err == nil, errors.Is(err, unix.ENXIO):
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(100 * time.Millisecond)
		case errors.Is(err, unix.EBUSY):
			return fmt.Errorf("LOOP_CLR_FD: still busy after %s: %w", busyTimeout, err)
		default:
			return fmt.Errorf("LOOP_CLR_FD: %w", err)
		}
	}
}

// ListLoops returns every attached loop device, sorted by number. Voltar's
// own are those whose Tag starts with its tag prefix. A device whose tag
// cannot be read is listed with Err set and no Tag.
func ListLoops() ([]LoopInfo, error) {
	dirs, err := filepath.Glob("/sys/block/loop*")
	if err != nil {
		return nil, err
	}
	type numbered struct {
		n    int
		info LoopInfo
	}
	var found []numbered
	for _, dir := range dirs {
		name := filepath.Base(dir)
		n, err := strconv.Atoi(strings.TrimPrefix(name, "loop"))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "loop", "backing_file"))
		backing := strings.TrimSuffix(string(b), "\n")
		if err != nil || backing == "" {
			continue // not bound
		}
		info := LoopInfo{
			Path:      "/dev/" + name,
			Backing:   backing,
			Offset:    readSysInt(filepath.Join(dir, "loop", "offset")),
			SizeLimit: readSysInt(filepath.Join(dir, "loop", "sizelimit")),
		}
		tag, bound, err := loopTag(n)
		if err != nil {
			if b, rerr := os.ReadFile(filepath.Join(dir, "loop", "backing_file")); rerr != nil || strings.TrimSpace(string(b)) != backing {
				// Detached (or bound anew) while we looked: opening a
				// device on its way out fails, and it is nobody's now.
				continue
			}
			info.Err = err
			found = append(found, numbered{n, info})
			continue
		}
		if !bound {
			continue // detached while we looked
		}
		info.Tag = tag
		found = append(found, numbered{n, info})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].n < found[j].n })
	out := make([]LoopInfo, len(found))
	for i, f := range found {
		out[i] = f.info
	}
	return out, nil
}

// loopTag reads lo_file_name of loop device n. Opening and closing the
// device read-only does not trigger AUTOCLEAR while a mount still holds it,
// and a bound AUTOCLEAR device nobody holds cannot exist.
func loopTag(n int) (tag string, bound bool, err error) {
	path, err := loopNode(n)
	if err != nil {
		return "", false, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	st, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if errors.Is(err, unix.ENXIO) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("LOOP_GET_STATUS64 %s: %w", path, err)
	}
	return cString(st.File_name[:]), true, nil
}

func readSysInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// loopNode returns /dev/loopN, creating the node when /dev is not a devtmpfs
// (containers) and nothing created it for a device the kernel just added.
func loopNode(n int) (string, error) {
	path := fmt.Sprintf("/dev/loop%d", n)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFBLK {
			return "", fmt.Errorf("%s exists but is not a block device", path)
		}
		return path, nil
	}
	major, minor := uint32(loopMajor), uint32(n)
	if b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/dev", n)); err == nil {
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
			return "", fmt.Errorf("parse /sys/block/loop%d/dev %q: %w", n, b, err)
		}
	}
	err := unix.Mknod(path, unix.S_IFBLK|0o660, int(unix.Mkdev(major, minor)))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	return path, nil
}

// deviceSize is the size of a regular file or block device.
func deviceSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode().IsRegular() {
		return fi.Size(), nil
	}
	if fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
		// Seeking to the end of a block device yields its size.
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return 0, fmt.Errorf("size of %s: %w", f.Name(), err)
		}
		return size, nil
	}
	return 0, fmt.Errorf("%s is neither a regular file nor a block device", f.Name())
}
