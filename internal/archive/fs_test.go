package archive_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"voltar/internal/testutil"
)

// mountExt4 makes a fresh ext4 filesystem of size bytes on a loop device,
// mounts it on a new directory and returns that directory. The mount and
// the loop device are removed in t.Cleanup.
func mountExt4(t testing.TB, size int64) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "losetup", "mount", "umount")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", img)
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	})
	testutil.Run(t, "mount", "-t", "ext4", dev, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// remountRO makes a mounted test filesystem read-only, like a snapshot.
func remountRO(t testing.TB, mnt string) {
	t.Helper()
	testutil.Run(t, "mount", "-o", "remount,ro", mnt)
}

// fileInfo is what the tests compare between a source tree and its copy.
type fileInfo struct {
	mode     uint32 // including type bits
	uid, gid uint32
	mtime    unix.Timespec
	size     int64
	blocks   int64
	rdev     uint64
	ino      uint64
	sum      string // sha256 of regular file content
	target   string // symlink target
	xattrs   map[string]string
}

// scan records every entry under root by path relative to root ("" is root).
// skip names root-relative paths not to record or enter.
func scan(t testing.TB, root string, skip func(rel string) bool) map[string]*fileInfo {
	t.Helper()
	out := make(map[string]*fileInfo)
	var walk func(rel string)
	walk = func(rel string) {
		abs := filepath.Join(root, rel)
		var st unix.Stat_t
		if err := unix.Lstat(abs, &st); err != nil {
			t.Fatalf("lstat %s: %v", abs, err)
		}
		fi := &fileInfo{
			mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: st.Mtim, size: st.Size,
			blocks: st.Blocks, rdev: st.Rdev, ino: st.Ino, xattrs: xattrs(t, abs),
		}
		out[rel] = fi
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			fi.sum = fileSum(t, abs)
		case unix.S_IFLNK:
			target, err := os.Readlink(abs)
			if err != nil {
				t.Fatal(err)
			}
			fi.target = target
		case unix.S_IFDIR:
			ents, err := os.ReadDir(abs)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				child := filepath.Join(rel, e.Name())
				if skip == nil || !skip(child) {
					walk(child)
				}
			}
		}
	}
	walk("")
	return out
}

func fileSum(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
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

func xattrs(t testing.TB, path string) map[string]string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatalf("llistxattr %s: %v", path, err)
	}
	m := make(map[string]string)
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		val := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(path, string(name), val)
		if err != nil {
			t.Fatalf("lgetxattr %s %s: %v", path, name, err)
		}
		m[string(name)] = string(val[:vn])
	}
	return m
}

// linkGroups returns the sets of paths sharing an inode (more than one name).
func linkGroups(tree map[string]*fileInfo) [][]string {
	byIno := make(map[uint64][]string)
	for p, fi := range tree {
		if fi.mode&unix.S_IFMT != unix.S_IFDIR {
			byIno[fi.ino] = append(byIno[fi.ino], p)
		}
	}
	var groups [][]string
	for _, g := range byIno {
		if len(g) > 1 {
			sort.Strings(g)
			groups = append(groups, g)
		}
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i][0] < groups[j][0] })
	return groups
}

func mustDo(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatalf("%s: %v", what, err)
	}
}
