//go:build uml

package lvm_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"voltar/internal/testutil"
)

// partition writes an MBR table with Linux partitions of the given sizes
// (MiB), the first at 1 MiB, and returns their offsets and sizes in bytes.
func partition(t *testing.T, dev string, sizesMiB ...int64) [][2]int64 {
	t.Helper()
	var script strings.Builder
	script.WriteString("label: dos\n")
	var parts [][2]int64
	start := mib
	for _, s := range sizesMiB {
		fmt.Fprintf(&script, "start=%d, size=%d, type=83\n", start/512, s*mib/512)
		parts = append(parts, [2]int64{start, s * mib})
		start += s * mib
	}
	cmd := exec.Command("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", dev)
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk %s: %v\n%s", dev, err, out)
	}
	return parts
}

// loop maps size bytes at off of dev to a loop device until the test ends:
// the guest has no partition nodes for LVs (no kpartx, no udev).
func loop(t *testing.T, dev string, off, size int64) string {
	t.Helper()
	args := []string{"--find", "--show", "--offset", strconv.FormatInt(off, 10)}
	if size > 0 {
		args = append(args, "--sizelimit", strconv.FormatInt(size, 10))
	}
	l := strings.TrimSpace(testutil.Run(t, "losetup", append(args, dev)...))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", l).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", l, err, out)
		}
	})
	return l
}

// mkfs makes an ext4 or xfs filesystem. ext4 gets 256-byte inodes (for
// nanosecond times) and initialises its tables now, so no background
// thread writes to the origin during a scenario.
func mkfs(t *testing.T, fsType, dev, label string) {
	t.Helper()
	switch fsType {
	case "ext4":
		testutil.Run(t, "mkfs.ext4", "-q", "-F", "-I", "256", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", "-L", label, dev)
	case "xfs":
		testutil.Run(t, "mkfs.xfs", "-q", "-f", "-K", "-L", label, dev)
	default:
		t.Fatalf("mkfs %s", fsType)
	}
}

// mount mounts dev on a new directory until the test ends.
func mount(t *testing.T, dev string) string {
	t.Helper()
	dir := t.TempDir()
	testutil.Run(t, "mount", dev, dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// content is the deterministic, incompressible content of a file named name.
func content(name string, size int) []byte {
	seed := sha256.Sum256([]byte(name))
	r := rand.NewChaCha8(seed)
	b := make([]byte, size)
	r.Read(b)
	return b
}

// writeFile writes name's content of size bytes to dir/name and syncs it.
func writeFile(t *testing.T, dir, name string, size int) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	data := content(name, size)
	for len(data) > 0 {
		n := min(len(data), 4<<20)
		if _, err := f.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// tree builds a small tree of every common kind in dir/top: files, nested
// directories, a symlink, a hardlink, an empty file, odd modes and owners,
// fixed nanosecond mtimes. It is built on tmpfs and copied with `cp -a`, so
// the copy and the archive can be compared with the original.
func tree(t *testing.T, dir, top, seed string) {
	t.Helper()
	root := filepath.Join(dir, top)
	for i, size := range []int{0, 1, 4095, 4096, 65537, 300 << 10, 1 << 20} {
		writeFile(t, root, fmt.Sprintf("%s/f%d.bin", seed, i), size)
	}
	writeFile(t, root, "etc/app/config.ini", 123)
	if err := os.Symlink("etc/app/config.ini", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "etc/app/config.ini"), filepath.Join(root, "hard.ini")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "etc/app/config.ini"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(root, "etc/app"), 1000, 1001); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "empty"), 0o1777); err != nil {
		t.Fatal(err)
	}
	// Fixed mtimes, children before parents. (Chtimes follows the
	// symlink; its own mtime is not compared.)
	var paths []string
	filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			paths = append(paths, p)
		}
		return err
	})
	for i := len(paths) - 1; i >= 0; i-- {
		ts := time.Unix(1764000000+int64(i)*3600, int64(i)*123456789+7)
		if err := os.Chtimes(paths[i], ts, ts); err != nil {
			t.Fatal(err)
		}
	}
}

// copyTree copies src/. into dst with cp -a and syncs.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	testutil.Run(t, "cp", "-a", src+"/.", dst)
	testutil.Run(t, "sync")
}

// writer writes a new file into each directory every 20 ms until stopped,
// each fsynced: a volume in use while voltar backs it up.
type writer struct {
	stop    chan struct{}
	done    chan struct{}
	written map[string]int // name below a dir -> size
	err     error
}

func startWriter(dirs ...string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{}), written: map[string]int{}}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			name := fmt.Sprintf("during/w%05d.bin", i)
			size := 16<<10 + i%7*9000
			for _, d := range dirs {
				if err := os.MkdirAll(filepath.Join(d, "during"), 0o755); err != nil {
					w.err = err
					return
				}
				f, err := os.Create(filepath.Join(d, name))
				if err == nil {
					_, err = f.Write(content(name, size))
					if err == nil {
						err = f.Sync()
					}
					f.Close()
				}
				if err != nil {
					w.err = err
					return
				}
			}
			w.written[name] = size
		}
	}()
	return w
}

// halt stops the writer and returns how many files it wrote to each dir.
func (w *writer) halt(t *testing.T) int {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
	return len(w.written)
}

// checkDuring checks what of the writer's files made it into an archive:
// the snapshot is crash-consistent, so each file there must be one the
// writer wrote, holding a prefix of its content (after journal replay, never
// garbage or zeros).
func (w *writer) checkDuring(t *testing.T, extracted string) int {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(extracted, "during"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		name := "during/" + e.Name()
		size, ok := w.written[name]
		if !ok {
			t.Errorf("%s: in the archive, but the writer never wrote it", name)
			continue
		}
		got, err := os.ReadFile(filepath.Join(extracted, name))
		if err != nil {
			t.Fatal(err)
		}
		if want := content(name, size); len(got) > len(want) || !bytes.Equal(got, want[:len(got)]) {
			t.Errorf("%s: %d bytes in the archive that are not what was written", name, len(got))
		}
	}
	return len(es)
}

// stepper logs how long each step of a scenario took: UML is slow, and the
// suite has a time budget.
func stepper(t *testing.T) func(what string) {
	last := time.Now()
	return func(what string) {
		now := time.Now()
		t.Logf("%6.2fs  %s", now.Sub(last).Seconds(), what)
		last = now
	}
}
