package disk_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/disk"
	"voltar/internal/testutil"
)

func TestMountSpec(t *testing.T) {
	for _, tc := range []struct {
		fs           string
		kernel, data string
	}{
		{"ext2", "ext4", ""},
		{"ext3", "ext4", ""},
		{"ext4", "ext4", ""},
		{"xfs", "xfs", "nouuid"},
		{"btrfs", "btrfs", "subvolid=5"},
		{"vfat", "vfat", ""},
	} {
		kernel, data := disk.MountSpec(tc.fs)
		if kernel != tc.kernel || data != tc.data {
			t.Errorf("MountSpec(%q) = %q, %q; want %q, %q", tc.fs, kernel, data, tc.kernel, tc.data)
		}
		// Recovery is never turned off: a filesystem that needs it must
		// be refused on a read-only device, not shown incomplete.
		for _, bad := range []string{"noload", "norecovery", "nologreplay"} {
			if strings.Contains(data, bad) {
				t.Errorf("MountSpec(%q) turns recovery off: %q", tc.fs, data)
			}
		}
	}
}

func TestParseMountInfo(t *testing.T) {
	const info = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
90 27 7:3 / /run/voltar/a rw - ext4 /dev/loop3 ro
91 90 7:4 / /run/voltar/a/boot rw - vfat /dev/loop4 ro
92 27 0:50 / /run/voltar/with\040space\011tab\134back rw - tmpfs tmpfs rw
93 90 0:51 / /run/voltar/a/boot rw - tmpfs tmpfs rw
94 27 0:52 / /run/voltar-other rw - tmpfs tmpfs rw
`
	got, err := disk.ParseMountInfo(strings.NewReader(info), "/run/voltar/")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/run/voltar/a/boot", "/run/voltar/a/boot", "/run/voltar/with space\ttab\\back", "/run/voltar/a"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestMountsUnderAndUnmount(t *testing.T) {
	testutil.RequireRoot(t)
	base := filepath.Join(t.TempDir(), "with space")
	inner := filepath.Join(base, "inner")
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(inner, unix.MNT_DETACH); unix.Unmount(base, unix.MNT_DETACH) })
	mustMountTmpfs(t, base)
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	mustMountTmpfs(t, inner)

	got, err := disk.MountsUnder(base)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{inner, base}; !slices.Equal(got, want) {
		t.Fatalf("MountsUnder = %q, want %q", got, want)
	}

	// Busy: a file is open inside. Unmount gives up and detaches lazily.
	defer disk.SetBusyTimeout(200 * time.Millisecond)()
	f, err := os.Create(filepath.Join(inner, "busy"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := disk.Unmount(inner); !errors.Is(err, disk.ErrLazyUnmount) {
		t.Errorf("Unmount of a busy mount = %v, want ErrLazyUnmount", err)
	}
	if err := disk.Unmount(base); err != nil {
		t.Errorf("Unmount: %v", err)
	}
	if left, err := disk.MountsUnder(base); err != nil || len(left) > 0 {
		t.Errorf("left mounted: %q, %v", left, err)
	}
	// Not mounted, or gone: fine, so cleanup can always call it.
	if err := disk.Unmount(base); err != nil {
		t.Errorf("Unmount of a plain directory: %v", err)
	}
	if err := disk.Unmount(filepath.Join(base, "missing")); err != nil {
		t.Errorf("Unmount of a missing directory: %v", err)
	}
}

func mustMountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
}

func TestMountUnsupportedType(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	err := disk.Mount(context.Background(), "/dev/null", dir, "voltarfs")
	if !errors.Is(err, disk.ErrUnsupportedFS) || !errors.Is(err, unix.ENODEV) {
		t.Fatalf("Mount = %v, want ErrUnsupportedFS", err)
	}
	for _, want := range []string{"/dev/null", dir, "voltarfs", "kernel lacks"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestMountPartitions goes through what a backup does for each partition of
// a real MBR image: read the table, map the partition, detect, mount, read.
func TestMountPartitions(t *testing.T) {
	testutil.RequireRoot(t)
	files := map[string]string{"ext4": "hello from ext4\n", "xfs": "hello from xfs\n", "btrfs": "hello from btrfs\n"}
	var parts []testutil.Part
	for _, fs := range []string{"ext4", "xfs", "btrfs"} {
		size := map[string]int{"ext4": 32, "xfs": 300, "btrfs": 128}[fs]
		parts = append(parts, testutil.Part{FS: fs, SizeMiB: size, Label: "L" + fs, Fill: func(t testing.TB, root string) {
			if err := os.WriteFile(filepath.Join(root, "hello.txt"), []byte(files[fs]), 0o644); err != nil {
				t.Fatal(err)
			}
		}})
	}
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "mbr", Parts: parts})
	f, size := openImage(t, img)
	table, err := disk.ReadTable(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.Partitions) != 3 {
		t.Fatalf("partitions = %+v", table.Partitions)
	}
	for _, p := range table.Partitions {
		for _, replay := range []bool{true, false} {
			t.Run(fmt.Sprintf("p%d replay=%v", p.Number, replay), func(t *testing.T) {
				l := attach(t, img, p.Start, p.Size, !replay)
				dev, dsize := openImage(t, l.Path)
				fs, err := disk.DetectFS(dev, 0, dsize)
				if err != nil {
					t.Fatal(err)
				}
				dev.Close()
				if files[fs.Type] == "" {
					t.Fatalf("DetectFS = %+v", fs)
				}
				got := mountAndRead(t, l.Path, fs.Type, "hello.txt")
				if got != files[fs.Type] {
					t.Errorf("hello.txt = %q, want %q", got, files[fs.Type])
				}
			})
		}
	}
}

// mountAndRead mounts dev, reads name, unmounts and checks nothing is left
// mounted. It returns "" when name does not exist.
func mountAndRead(t *testing.T, dev, fsType string, name string) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		if err := disk.Unmount(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := disk.Mount(context.Background(), dev, dir, fsType); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Error(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); err == nil {
		t.Error("writing into a voltar mount succeeded; want read-only")
	}
	if err := disk.Unmount(dir); err != nil {
		t.Fatal(err)
	}
	if left, err := disk.MountsUnder(dir); err != nil || len(left) > 0 {
		t.Errorf("still mounted: %q, %v", left, err)
	}
	return string(b)
}

// TestMountReplaysJournal copies an ext4 image while it is mounted, as a
// snapshot of a running guest would, and mounts the copy: with replay the
// journal goes into the copy and the new file is there.
func TestMountReplaysJournal(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4")
	origin := newImage(t, 32<<20)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", origin)
	snap := filepath.Join(t.TempDir(), "snap.img")
	func() {
		l := attach(t, origin, 0, 0, false)
		dir := t.TempDir()
		if err := unix.Mount(l.Path, dir, "ext4", 0, ""); err != nil {
			t.Fatal(err)
		}
		defer disk.Unmount(dir)
		jf, err := os.Create(filepath.Join(dir, "journaled.txt"))
		if err != nil {
			t.Fatal(err)
		}
		jf.WriteString("in the journal\n")
		// fsync commits the transaction to the journal; unlike sync(2)
		// it does not also write the metadata to its home location.
		if err := jf.Sync(); err != nil {
			t.Fatal(err)
		}
		jf.Close()
		copyFile(t, origin, snap)
		if err := disk.Unmount(dir); err != nil {
			t.Fatal(err)
		}
		if err := l.Detach(); err != nil {
			t.Fatal(err)
		}
	}()
	f, size := openImage(t, snap)
	state, err := disk.NeedsRecovery(f, 0, size, "ext4")
	if err != nil || state != disk.RecoveryNeeded {
		t.Fatalf("NeedsRecovery of the torn copy = %v, %v; want %v", state, err, disk.RecoveryNeeded)
	}
	if state, err := disk.NeedsRecovery(f, 0, size, "xfs"); state != disk.RecoveryUnknown || err != nil {
		t.Errorf("NeedsRecovery as xfs = %v, %v; want unknown", state, err)
	}

	// Read-only, the kernel must refuse it rather than show a tree
	// without the journaled file.
	ro := attach(t, snap, 0, 0, true)
	dir := t.TempDir()
	err = disk.Mount(context.Background(), ro.Path, dir, "ext4")
	if err == nil {
		disk.Unmount(dir)
		t.Fatal("a filesystem that needs recovery mounted from a read-only device")
	}
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("read-only mount error = %v, want EROFS", err)
	}
	ro.Detach()

	l := attach(t, snap, 0, 0, false)
	if got := mountAndRead(t, l.Path, "ext4", "journaled.txt"); got != "in the journal\n" {
		t.Errorf("after replay journaled.txt = %q", got)
	}
	l.Detach()
	f2, _ := openImage(t, snap)
	if state, err := disk.NeedsRecovery(f2, 0, size, "ext4"); state != disk.RecoveryClean || err != nil {
		t.Errorf("NeedsRecovery after replay = %v, %v; want clean", state, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
}

// A run killed after mounting leaves a mount holding a tagged loop device.
// The next run finds both and removes them: unmounting frees the device
// (AUTOCLEAR), and DetachLoop is harmless afterwards.
func TestSweepAfterCrash(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4")
	img := newImage(t, 16<<20)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", img)
	dir := t.TempDir()
	tag := testTag(t)
	t.Cleanup(func() {
		disk.Unmount(dir)
		assertNoLoops(t, tag, img)
	})

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+strings.Join([]string{img, dir, tag}, "\n"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("crashing run: %v\n%s", err, out)
	}

	loops, err := disk.ListLoops()
	if err != nil {
		t.Fatal(err)
	}
	var ours []disk.LoopInfo
	for _, l := range loops {
		if l.Tag == tag {
			ours = append(ours, l)
		}
	}
	mounts, err := disk.MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ours) != 1 || len(mounts) != 1 {
		t.Fatalf("after the crash: loops %+v, mounts %q; want one of each", ours, mounts)
	}
	for _, m := range mounts {
		if err := disk.Unmount(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range ours {
		if err := disk.DetachLoop(l.Path); err != nil {
			t.Fatal(err)
		}
	}
	assertNoLoops(t, tag, img)
}

const crashHelperEnv = "VOLTAR_DISK_TEST_CRASH"

// crashHelper attaches and mounts, then exits without cleaning up, like a
// run killed with SIGKILL.
func crashHelper(arg string) {
	a := strings.Split(arg, "\n")
	img, dir, tag := a[0], a[1], a[2]
	l, err := disk.AttachLoop(context.Background(), img, 0, 0, false, tag)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := disk.Mount(context.Background(), l.Path, dir, "ext4"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		l.Detach()
		os.Exit(1)
	}
	os.Exit(0)
}

func TestMain(m *testing.M) {
	if arg := os.Getenv(crashHelperEnv); arg != "" {
		crashHelper(arg)
	}
	os.Exit(m.Run())
}
