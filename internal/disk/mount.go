package disk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// mountFlags are used for every mount: voltar only reads, and a snapshot's
// device nodes and setuid binaries must never become usable on the host.
const mountFlags = unix.MS_RDONLY | unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC

// ErrUnsupportedFS is matched (errors.Is) by a mount error when the running
// kernel has no driver for the filesystem type; the caller may fall back to
// a raw image of the partition.
var ErrUnsupportedFS = errors.New("filesystem type not supported by the kernel")

// ErrLazyUnmount is matched by an Unmount error when the filesystem stayed
// busy and was detached lazily: it is gone from the tree, but its device is
// held until the last user lets go, so releasing a snapshot may still fail.
var ErrLazyUnmount = errors.New("unmounted lazily")

// MountSpec returns the kernel filesystem type and mount data for a detected
// filesystem type (DetectFS's names).
//
// Recovery is never turned off (no noload, norecovery or
// rescue=nologreplay): on a writable, disposable snapshot the kernel
// replays the journal into it, so the mounted tree is complete even when
// the origin was in use; on a read-only device the kernel refuses a
// filesystem that needs recovery instead of showing a tree without its
// newest changes (see NeedsRecovery and ErrNeedsRecovery). xfs always gets
// nouuid: the snapshot has the UUID of its mounted origin.
func MountSpec(fsType string) (kernelType, data string) {
	switch fsType {
	case "ext2", "ext3", "ext4":
		return "ext4", ""
	case "xfs":
		return "xfs", "nouuid"
	case "btrfs":
		// subvolid=5: the top level, so every subvolume is below the
		// mount point, not only the default one.
		return "btrfs", "subvolid=5"
	default:
		return fsType, ""
	}
}

// MountError is a failed mount, with everything needed to reproduce it.
type MountError struct {
	Dev, Dir, Type, Data string
	Err                  error
}

func (e *MountError) Error() string {
	what := fmt.Sprintf("mount %s on %s (type %s", e.Dev, e.Dir, e.Type)
	if e.Data != "" {
		what += ", options " + e.Data
	}
	what += ")"
	switch {
	case errors.Is(e.Err, unix.ENODEV):
		return fmt.Sprintf("%s: the kernel lacks filesystem type %s (not in /proc/filesystems): %v", what, e.Type, e.Err)
	case errors.Is(e.Err, unix.EINVAL):
		return fmt.Sprintf("%s: %v (wrong type, bad superblock or unsupported options; see dmesg)", what, e.Err)
	}
	return fmt.Sprintf("%s: %v", what, e.Err)
}

func (e *MountError) Unwrap() []error {
	if errors.Is(e.Err, unix.ENODEV) {
		return []error{e.Err, ErrUnsupportedFS}
	}
	return []error{e.Err}
}

// Mount mounts dev on dir read-only, with the type and options MountSpec
// gives for fsType.
func Mount(ctx context.Context, dev, dir, fsType string) error {
	kt, data := MountSpec(fsType)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, dir, err)
	}
	if kt == "" {
		return &MountError{Dev: dev, Dir: dir, Type: "(none)", Err: errors.New("no filesystem type detected")}
	}
	if err := unix.Mount(dev, dir, kt, mountFlags, data); err != nil {
		return &MountError{Dev: dev, Dir: dir, Type: kt, Data: data, Err: err}
	}
	return nil
}

// Unmount unmounts dir. A dir that is not mounted (or does not exist) is not
// an error, so cleanup can call it unconditionally. EBUSY is retried for a
// few seconds (a prober or indexer may be walking the tree), then the mount
// is detached lazily and ErrLazyUnmount returned.
func Unmount(dir string) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := unix.Unmount(dir, 0)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(100 * time.Millisecond)
		case errors.Is(err, unix.EBUSY):
			if lerr := unix.Unmount(dir, unix.MNT_DETACH); lerr != nil {
				return fmt.Errorf("unmount %s: busy for %s, and lazy unmount failed: %w", dir, busyTimeout, lerr)
			}
			return fmt.Errorf("unmount %s: busy for %s: %w", dir, busyTimeout, ErrLazyUnmount)
		default:
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
}

// MountsUnder lists the mount points at or below prefix, deepest first, in
// the order they can be unmounted. It reads /proc/self/mountinfo, which
// (unlike /proc/mounts) is per mount namespace and never truncated.
func MountsUnder(prefix string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	defer f.Close()
	mps, err := parseMountInfo(f, prefix)
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	return mps, nil
}

func parseMountInfo(f io.Reader, prefix string) ([]string, error) {
	prefix = filepath.Clean(prefix)
	type mp struct {
		path  string
		depth int
		order int
	}
	var found []mp
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for i := 0; sc.Scan(); i++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := UnescapeMountPath(fields[4])
		if !(p == prefix || prefix == "/" || strings.HasPrefix(p, prefix+"/")) {
			continue
		}
		found = append(found, mp{p, strings.Count(p, "/"), i})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	// Deepest first; for the same depth, the later mount (which may
	// cover an earlier one on the same path) first.
	sort.Slice(found, func(i, j int) bool {
		if found[i].depth != found[j].depth {
			return found[i].depth > found[j].depth
		}
		return found[i].order > found[j].order
	})
	out := make([]string, len(found))
	for i, m := range found {
		out[i] = m.path
	}
	return out, nil
}

// UnescapeMountPath decodes the \ooo octal escapes the kernel uses in
// mountinfo and /proc/swaps for space, tab, newline and backslash.
func UnescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
