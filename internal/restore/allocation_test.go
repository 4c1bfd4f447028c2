package restore_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
)

// Restore writes data as data: a file that was fully allocated in the
// source (written zeros, zero runs inside data, a swap file) comes back
// with every block allocated, as GNU tar restores it; only a file that was
// sparse in the source comes back sparse.
func TestRestoreKeepsAllocation(t *testing.T) {
	testutil.RequireTools(t, "mkswap", "swapon", "swapoff", "dd")
	src := mountFS(t, "ext4", 128)
	write := func(name string, data []byte, at int64) {
		f, err := os.OpenFile(filepath.Join(src, name), os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(data, at); err != nil {
			t.Fatal(err)
		}
	}
	write("zeros.bin", make([]byte, 1<<20), 0)
	runs := make([]byte, 3<<20)
	for i := range 1 << 20 {
		runs[i], runs[2<<20+i] = 'a', 'b'
	}
	write("runs.bin", runs, 0)
	testutil.Run(t, "dd", "if=/dev/zero", "of="+filepath.Join(src, "swapfile"), "bs=1M", "count=16", "status=none")
	testutil.Run(t, "mkswap", "-q", filepath.Join(src, "swapfile"))
	write("sparse.bin", []byte("middle"), 32<<20)
	if err := os.Truncate(filepath.Join(src, "sparse.bin"), 64<<20); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "sync", "-f", src)

	st := local.New(t.TempDir())
	f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC), Compression: codec.Zstd},
		map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: "ext4"}})
	b := catalogtest.Resolve(t, st, f)
	dst := mountFS(t, "ext4", 128)
	if _, err := restore.ToDir(context.Background(), st, b, dst, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "sync", "-f", dst)
	blocks := func(p string) int64 {
		var s unix.Stat_t
		if err := unix.Stat(p, &s); err != nil {
			t.Fatal(err)
		}
		return s.Blocks
	}
	for _, name := range []string{"zeros.bin", "runs.bin", "swapfile"} {
		want, got := blocks(filepath.Join(src, name)), blocks(filepath.Join(dst, name))
		if got != want {
			t.Errorf("%s: %d blocks of 512 bytes after restore, %d in the source", name, got, want)
		}
	}
	// Sparse stays sparse; restore writes data in 4 KiB blocks, the
	// source's filesystem may have 1 KiB ones.
	if want, got := blocks(filepath.Join(src, "sparse.bin")), blocks(filepath.Join(dst, "sparse.bin")); got > want+8 {
		t.Errorf("sparse.bin: %d blocks after restore, %d in the source; want it sparse", got, want)
	}
	swap := filepath.Join(dst, "swapfile")
	if out, err := exec.Command("swapon", swap).CombinedOutput(); err != nil {
		t.Errorf("swapon of the restored swap file: %v %s", err, out)
	} else if out, err := exec.Command("swapoff", swap).CombinedOutput(); err != nil {
		t.Errorf("swapoff: %v %s", err, out)
	}
}
