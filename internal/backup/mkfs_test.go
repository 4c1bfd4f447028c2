package backup_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/testutil"
)

// A restored filesystem is made with the source's mkfs parameters, so it
// can hold what the source held: an ext4 made with -N for many small files
// (20000 files on 64 MiB, where mkfs's default gives 16384 inodes), 4 KiB
// blocks on a small partition (a 4095-byte symlink; the default there is
// 1 KiB blocks), 512-byte inodes and inline_data; an xfs without reflink
// and finobt. dumpe2fs and xfs_db see the same parameters.
func TestRestoredFilesystemsKeepMkfsParams(t *testing.T) {
	testutil.RequireTools(t, "dumpe2fs", "xfs_db", "losetup")
	e := newEnv(t)
	many := func(t testing.TB, root string) {
		os.Mkdir(filepath.Join(root, "many"), 0o755)
		for i := range 20000 {
			f, err := os.Create(filepath.Join(root, "many", fmt.Sprint(i)))
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		if err := os.Symlink(strings.Repeat("x", 4095), filepath.Join(root, "long-link")); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(root, "inline.txt"), []byte("small enough to live in the inode\n"), 0o644)
	}
	dir := t.TempDir()
	img := testutil.MakeImage(t, dir, testutil.Image{Table: "mbr", Parts: []testutil.Part{{FS: "", SizeMiB: 64}, {FS: "", SizeMiB: 300}}})
	const p1, p2 = 1 << 20, 65 << 20
	onLoop := func(path string, off, size int64, cmd string) string {
		return testutil.Run(t, "sh", "-c", fmt.Sprintf("l=$(losetup -f --show -o %d --sizelimit %d %s) && { %s; rc=$?; losetup -d $l; exit $rc; }", off, size, path, cmd))
	}
	onLoop(img, p1, 64<<20, "mkfs.ext4 -q -F -b 4096 -I 512 -N 40000 -O inline_data $l")
	onLoop(img, p2, 300<<20, "mkfs.xfs -q -f -m reflink=0,finobt=0 $l")
	mnt := t.TempDir()
	onLoop(img, p1, 64<<20, "mount $l "+mnt)
	many(t, mnt)
	testutil.Run(t, "umount", mnt)

	m := e.mustBackup(img, true)
	out := e.restoreImage(m)
	ext := func(path string) string {
		var keep []string
		for _, l := range strings.Split(onLoop(path, p1, 64<<20, "dumpe2fs -h $l 2>/dev/null"), "\n") {
			for _, k := range []string{"Filesystem features:", "Inode count:", "Block size:", "Inode size:"} {
				if strings.HasPrefix(l, k) {
					keep = append(keep, strings.Join(strings.Fields(l), " "))
				}
			}
		}
		return strings.Join(keep, "\n")
	}
	xfs := func(path string) string {
		return onLoop(path, p2, 300<<20, "xfs_db -r -c version -c 'sb 0' -c 'p blocksize inodesize sectsize' $l")
	}
	if a, b := ext(img), ext(out); a != b || a == "" {
		t.Errorf("ext4 made differently:\n--- source\n%s\n--- restored\n%s", a, b)
	}
	if a, b := xfs(img), xfs(out); a != b {
		t.Errorf("xfs made differently:\n--- source\n%s\n--- restored\n%s", a, b)
	}
	restored := testutil.MountRO(t, out, p1, 64<<20)
	if ents, err := os.ReadDir(filepath.Join(restored, "many")); err != nil || len(ents) != 20000 {
		t.Errorf("restored many/ holds %d entries (%v), want 20000", len(ents), err)
	}
	if l, err := os.Readlink(filepath.Join(restored, "long-link")); err != nil || len(l) != 4095 {
		t.Errorf("restored long-link: %d bytes, %v", len(l), err)
	}
}
