package testutil

import (
	"bytes"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// CompareTrees checks that got holds exactly what want holds, entry by entry:
// type, mode, owner, mtime (ns), size, content, symlink target, device
// numbers and xattrs. Paths for which skip returns true are left out of want.
func CompareTrees(t testing.TB, want, got string, skip func(rel string) bool) {
	t.Helper()
	wantPaths := map[string]bool{}
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		if rel != "." && skip != nil && skip(rel) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		wantPaths[rel] = true
		compareEntry(t, rel, p, filepath.Join(got, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(got, p)
		if !wantPaths[rel] {
			t.Errorf("%s: present in the copy but not in the source", rel)
		}
		return nil
	})
}

func compareEntry(t testing.TB, rel, a, b string) {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Lstat(a, &sa); err != nil {
		t.Errorf("%s: %v", rel, err)
		return
	}
	if err := unix.Lstat(b, &sb); err != nil {
		t.Errorf("%s: missing in the copy: %v", rel, err)
		return
	}
	if sa.Mode != sb.Mode {
		t.Errorf("%s: mode %o, want %o", rel, sb.Mode, sa.Mode)
	}
	if sa.Uid != sb.Uid || sa.Gid != sb.Gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", rel, sb.Uid, sb.Gid, sa.Uid, sa.Gid)
	}
	if sa.Mode&unix.S_IFMT != unix.S_IFLNK && (sa.Mtim.Sec != sb.Mtim.Sec || sa.Mtim.Nsec != sb.Mtim.Nsec) {
		t.Errorf("%s: mtime %d.%09d, want %d.%09d", rel, sb.Mtim.Sec, sb.Mtim.Nsec, sa.Mtim.Sec, sa.Mtim.Nsec)
	}
	switch sa.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if sa.Size != sb.Size {
			t.Errorf("%s: size %d, want %d", rel, sb.Size, sa.Size)
		} else if ha, hb := hashFile(t, a), hashFile(t, b); !bytes.Equal(ha, hb) {
			t.Errorf("%s: content differs", rel)
		}
	case unix.S_IFLNK:
		la, _ := os.Readlink(a)
		lb, _ := os.Readlink(b)
		if la != lb {
			t.Errorf("%s: symlink to %q, want %q", rel, lb, la)
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if sa.Rdev != sb.Rdev {
			t.Errorf("%s: device %x, want %x", rel, sb.Rdev, sa.Rdev)
		}
	}
	if xa, xb := Xattrs(a), Xattrs(b); xa != xb {
		t.Errorf("%s: xattrs %q, want %q", rel, xb, xa)
	}
}

func hashFile(t testing.TB, p string) []byte {
	f, err := os.Open(p)
	if err != nil {
		t.Errorf("%v", err)
		return nil
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return h.Sum(nil)
}

// Xattrs renders a path's extended attributes (not following symlinks) as
// sorted name=value lines.
func Xattrs(p string) string {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return ""
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return ""
	}
	var out []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		vs, _ := unix.Lgetxattr(p, name, nil)
		v := make([]byte, max(vs, 0))
		vs, _ = unix.Lgetxattr(p, name, v)
		out = append(out, name+"="+string(v[:max(vs, 0)]))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
