package backup_test

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"voltar/internal/backup"
	"voltar/internal/cleanup"
	"voltar/internal/disk"
	"voltar/internal/manifest"
	"voltar/internal/testutil"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
)

const tornFiles = 300

// tornImage makes an MBR image with one fsType partition and returns a copy
// of it taken while the filesystem was mounted, after tornFiles files were
// written and fsynced and gone.txt was deleted: the state a guest leaves
// when it loses power. The changes live only in the journal (ext4, xfs) or
// the log tree (btrfs) of the copy.
func tornImage(t *testing.T, dir, fsType string) string {
	t.Helper()
	crash := filepath.Join(dir, "crash.img")
	var img string
	fill := func(t testing.TB, root string) {
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.WriteFile(filepath.Join(root, "gone.txt"), []byte("deleted before the crash\n"), 0o644))
		must(os.Mkdir(filepath.Join(root, "d"), 0o755))
		syncfs(t, root) // gone.txt and d/ reach their home locations
		must(os.Remove(filepath.Join(root, "gone.txt")))
		fsync(t, root)
		for i := range tornFiles {
			f, err := os.Create(filepath.Join(root, "d", fmt.Sprintf("f%03d", i)))
			must(err)
			_, err = fmt.Fprintf(f, "file %d\n", i)
			must(err)
			must(f.Sync())
			must(f.Close())
		}
		fsync(t, filepath.Join(root, "d"))
		testutil.Run(t, "cp", "--sparse=always", img, crash)
	}
	img = filepath.Join(dir, "disk.img")
	testutil.MakeImage(t, dir, testutil.Image{Table: "mbr", Parts: []testutil.Part{{FS: fsType, SizeMiB: 300, Fill: fill}}})
	os.Remove(img)
	return crash
}

func syncfs(t testing.TB, dir string) {
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
}

func fsync(t testing.TB, p string) {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func sha256File(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// archivedNames lists the entry names of a stored .tar.zst archive.
func archivedNames(t *testing.T, p string) map[string]string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	names := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		names[strings.TrimPrefix(h.Name, "./")] = string(b)
	}
}

// An offline image whose filesystem was not cleanly unmounted is read with
// its journal replayed into a throwaway copy, never into the image, and
// never without the replay: every fsynced file is in the backup, the file
// deleted before the crash is not, and the image is unchanged.
func TestOfflineImageJournalReplayed(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "cp")
	for _, tc := range []struct {
		fs      string
		reflink bool // the image sits on a filesystem that shares extents
	}{
		{"ext4", false},
		{"xfs", false},
		{"btrfs", false},
		{"xfs", true},
	} {
		name := tc.fs
		if tc.reflink {
			name += "-on-reflink-fs"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			dir := t.TempDir()
			if tc.reflink {
				dir = reflinkDir(t)
			}
			img := tornImage(t, dir, tc.fs)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			state, err := disk.NeedsRecovery(f, 1<<20, 300<<20, tc.fs)
			f.Close()
			want := disk.RecoveryNeeded
			if tc.fs == "xfs" {
				want = disk.RecoveryUnknown // only the kernel's refusal tells
			}
			if err != nil || state != want {
				t.Fatalf("NeedsRecovery = %v, %v; want %v", state, err, want)
			}
			before := sha256File(t, img)

			v, err := image.Resolve(img, true)
			if err != nil {
				t.Fatal(err)
			}
			j, err := cleanup.Start(e.state, "run1")
			if err != nil {
				t.Fatal(err)
			}
			m, err := backup.Volume(context.Background(), v, e.options("run1", j))
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Finish(); err != nil {
				t.Fatal(err)
			}
			fs := m.Filesystems[0]
			if fs.Mode != manifest.ModeFiles || fs.Recovery == "" {
				t.Errorf("manifest filesystem %+v: want files, with how the journal was replayed", fs)
			}
			if tc.reflink != strings.Contains(fs.Recovery, "reflink") {
				t.Errorf("recovery %q, reflink-capable image directory %v", fs.Recovery, tc.reflink)
			}
			names := archivedNames(t, filepath.Join(e.store.Root(), "testhost", m.ID, fs.Archive))
			missing := 0
			for i := range tornFiles {
				n := fmt.Sprintf("d/f%03d", i)
				if got, want := names[n], fmt.Sprintf("file %d\n", i); got != want {
					missing++
					if missing < 5 {
						t.Errorf("%s = %q in the backup, want %q", n, got, want)
					}
				}
			}
			if missing > 0 {
				t.Errorf("%d of %d fsynced files missing or wrong in the backup", missing, tornFiles)
			}
			if _, ok := names["gone.txt"]; ok {
				t.Error("gone.txt, deleted before the crash, came back")
			}
			if fs.Entries < tornFiles+2 {
				t.Errorf("manifest counts %d entries, want at least %d", fs.Entries, tornFiles+2)
			}
			if after := sha256File(t, img); after != before {
				t.Errorf("the image changed: sha256 %s, was %s", after, before)
			}
		})
	}
}

// reflinkDir is a directory on a fresh xfs (reflinks on by default),
// unmounted when the test ends.
func reflinkDir(t *testing.T) string {
	t.Helper()
	back := filepath.Join(t.TempDir(), "xfs.img")
	if err := os.WriteFile(back, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(back, 1<<30); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "mkfs.xfs", "-q", "-f", "-m", "reflink=1", back)
	mnt := t.TempDir()
	testutil.Run(t, "mount", "-o", "loop", back, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	return mnt
}

// plainSnapshotter hides image.Snapshotter's Writable: a read-only snapshot
// that cannot be copied.
type plainSnapshotter struct{ volume.Snapshotter }

// Without a way to replay the journal, the backup fails, naming why, and
// leaves nothing behind.
func TestOfflineImageNeedingRecoveryWithoutCopyFails(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4", "cp")
	e := newEnv(t)
	img := tornImage(t, t.TempDir(), "ext4")
	v, err := image.Resolve(img, true)
	if err != nil {
		t.Fatal(err)
	}
	o := e.options("run1", nil)
	o.Snapshotter = plainSnapshotter{o.Snapshotter}
	_, err = backup.Volume(context.Background(), v, o)
	if !errors.Is(err, disk.ErrNeedsRecovery) {
		t.Fatalf("backup = %v, want ErrNeedsRecovery", err)
	}
	if objs, _ := e.store.List(context.Background(), "testhost/"); len(objs) != 0 {
		t.Errorf("the failed backup left %d objects in the store", len(objs))
	}
}

// A cleanly unmounted offline image is read in place: no copy is made.
func TestOfflineCleanImageReadInPlace(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "xfs", SizeMiB: 300, Fill: fillData}}})
	m := e.mustBackup(img, true)
	if fs := m.Filesystems[0]; fs.Recovery != "" || fs.Files == 0 {
		t.Errorf("clean offline image: %+v", fs)
	}
}
