package restore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/archive"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/disk"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store"
	"voltar/internal/testutil"
)

// mountFS makes a fresh filesystem in a sparse image and mounts it
// read-write with `mount -o loop`; the loop device is released with the
// mount (autoclear) when the test ends.
func mountFS(t *testing.T, fsType string, sizeMiB int64) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs."+fsType, "mount", "umount")
	dir := t.TempDir()
	img := filepath.Join(dir, fsType+".img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, sizeMiB<<20); err != nil {
		t.Fatal(err)
	}
	switch fsType {
	case "xfs", "btrfs":
		testutil.Run(t, "mkfs."+fsType, "-q", "-f", img)
	default:
		testutil.Run(t, "mkfs."+fsType, "-q", "-F", img)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "mount", "-o", "loop", img, mnt)
	t.Cleanup(func() { umount(t, mnt) })
	return mnt
}

// mountRO mounts the area [off, off+size) of img (a file or device)
// read-only; xfs gets nouuid, as a restored copy shares its source's UUID.
func mountRO(t *testing.T, img string, off, size int64, fsType string) string {
	t.Helper()
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--read-only",
		"--offset", fmt.Sprint(off), "--sizelimit", fmt.Sprint(size), img))
	mnt := t.TempDir()
	opts := "ro"
	if fsType == "xfs" {
		opts += ",nouuid,norecovery"
	}
	if fsType == "btrfs" {
		opts += ",subvolid=5" // every subvolume, not only the default
	}
	if out, err := exec.Command("mount", "-o", opts, dev, mnt).CombinedOutput(); err != nil {
		exec.Command("losetup", "-d", dev).Run()
		t.Fatalf("mount %s: %v %s", dev, err, out)
	}
	t.Cleanup(func() {
		umount(t, mnt)
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return mnt
}

func umount(t *testing.T, mnt string) {
	t.Helper()
	for i := 0; ; i++ {
		out, err := exec.Command("umount", mnt).CombinedOutput()
		if err == nil || strings.Contains(string(out), "not mounted") {
			return
		}
		if i == 20 {
			t.Errorf("umount %s: %v %s", mnt, err, out)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkNoLeftovers fails t if a loop device or mount refers to path.
func checkNoLeftovers(t *testing.T, paths ...string) {
	t.Helper()
	// Loops restore attached carry its default tag, whatever they map (a
	// device restore's loop maps a /dev/loopN that names no test path).
	if ls, err := disk.ListLoops(); err == nil {
		for _, l := range ls {
			if l.Tag == fmt.Sprintf("voltar:restore-%d", os.Getpid()) {
				t.Errorf("restore's loop device left attached: %+v", l)
			}
		}
	}
	loops, _ := exec.Command("losetup", "-a").CombinedOutput()
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	// Restores mount under their MountDir, which the tests put in their
	// own temp root: other tests' mounts (packages run in parallel) are
	// not this test's leftovers.
	root := filepath.Dir(t.TempDir())
	for _, p := range paths {
		if strings.Contains(string(loops), p) {
			t.Errorf("loop device left behind for %s:\n%s", p, loops)
		}
		for _, line := range strings.Split(string(mounts), "\n") {
			if strings.Contains(line, p) && (p != "voltar-restore-" || strings.Contains(line, root)) {
				t.Errorf("mount left behind under %s: %s", p, line)
			}
		}
	}
}

// backupOf archives each named tree with archive.Write into a backup folder
// of st, the manifest filled from archive.Result as the backup pipeline
// does.
func backupOf(t testing.TB, st store.Store, f catalogtest.Folder, trees map[string]string, fss []manifest.Filesystem) catalogtest.Folder {
	t.Helper()
	for _, fs := range fss {
		var buf bytes.Buffer
		enc, err := objio.NewEncoder(&buf, objio.Encoding{Compression: f.Compression})
		if err != nil {
			t.Fatal(err)
		}
		res, err := archive.Write(context.Background(), trees[fs.Name], enc, archive.Options{})
		if err != nil {
			t.Fatalf("archive %s: %v", trees[fs.Name], err)
		}
		sum, err := enc.Close()
		if err != nil {
			t.Fatalf("archive %s: %v", trees[fs.Name], err)
		}
		fs.StoredBytes, fs.SHA256 = sum.Bytes, sum.SHA256
		fs.Entries, fs.Files, fs.SourceBytes = res.Entries, res.Files, res.SourceBytes
		f.Archives = append(f.Archives, catalogtest.Archive{FS: fs, Data: buf.Bytes()})
	}
	catalogtest.Write(t, st, f)
	return f
}

// capV2 is a security.capability value (VFS_CAP_REVISION_2) granting
// cap_net_bind_service, effective.
func capV2() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b, 0x02000000|1)
	binary.LittleEndian.PutUint32(b[4:], 1<<10)
	return b
}

// node is everything compared about one path.
type node struct {
	mode     uint32
	uid, gid uint32
	mtime    unix.Timespec
	size     int64
	rdev     uint64
	target   string
	sum      string
	xattrs   string
	blocks   int64
	dev, ino uint64
	nlink    uint64
}

func scan(t *testing.T, root string) map[string]node {
	t.Helper()
	out := map[string]node{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "lost+found" {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := node{mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: st.Mtim, size: st.Size, blocks: st.Blocks, dev: st.Dev, ino: st.Ino, nlink: uint64(st.Nlink)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			n.target, _ = os.Readlink(p)
		case unix.S_IFCHR, unix.S_IFBLK:
			n.rdev = st.Rdev
		case unix.S_IFREG:
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
			n.sum = hex.EncodeToString(h.Sum(nil))
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			n.size = st.Size
		} else {
			n.size = 0 // directory sizes depend on history
		}
		n.xattrs = xattrList(t, p)
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func xattrList(t *testing.T, p string) string {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return ""
	}
	buf := make([]byte, sz)
	sz, _ = unix.Llistxattr(p, buf)
	names := strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00")
	sort.Strings(names)
	var s []string
	for _, n := range names {
		v := make([]byte, 64<<10)
		k, err := unix.Lgetxattr(p, n, v)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		s = append(s, fmt.Sprintf("%s=%x", n, v[:max(k, 0)]))
	}
	return strings.Join(s, ",")
}

// linkGroups maps each path to the sorted names of its inode.
func linkGroups(nodes map[string]node) map[string]string {
	// btrfs subvolumes each number their inodes from 256, on a device
	// of their own.
	type id struct{ dev, ino uint64 }
	byIno := map[id][]string{}
	for p, n := range nodes {
		if n.mode&unix.S_IFMT != unix.S_IFDIR {
			byIno[id{n.dev, n.ino}] = append(byIno[id{n.dev, n.ino}], p)
		}
	}
	out := map[string]string{}
	for _, ps := range byIno {
		sort.Strings(ps)
		for _, p := range ps {
			out[p] = strings.Join(ps, "|")
		}
	}
	return out
}

// compareTrees compares src and dst attribute by attribute.
func compareTrees(t *testing.T, src, dst string) {
	t.Helper()
	a, b := scan(t, src), scan(t, dst)
	ga, gb := linkGroups(a), linkGroups(b)
	for p, x := range a {
		y, ok := b[p]
		if !ok {
			t.Errorf("%q: missing from the restore", p)
			continue
		}
		check := func(what string, got, want any) {
			if got != want {
				t.Errorf("%q: %s = %v, want %v", p, what, got, want)
			}
		}
		check("mode", fmt.Sprintf("%o", y.mode), fmt.Sprintf("%o", x.mode))
		check("uid", y.uid, x.uid)
		check("gid", y.gid, x.gid)
		check("mtime", y.mtime, x.mtime)
		check("size", y.size, x.size)
		check("rdev", y.rdev, x.rdev)
		check("symlink target", y.target, x.target)
		check("content sha256", y.sum, x.sum)
		check("xattrs", y.xattrs, x.xattrs)
		check("nlink", y.nlink, x.nlink)
		check("hard link group", gb[p], ga[p])
		// Sparse stays sparse; the allocation may differ by a few
		// blocks of extent tree and by blocks the source had allocated
		// full of zeros.
		if x.mode&unix.S_IFMT == unix.S_IFREG && x.blocks*512 < x.size && y.blocks*512 > x.blocks*512+64<<10 {
			t.Errorf("%q: %d bytes allocated, source has %d (not restored sparse)", p, y.blocks*512, x.blocks*512)
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			t.Errorf("%q: in the restore, not in the source", p)
		}
	}
	// getfacl's view, as an admin would check it.
	facl := func(dir string) string {
		cmd := exec.Command("getfacl", "-R", "-n", "-p", "-P", ".")
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("getfacl in %s: %v", dir, err)
		}
		var keep []string
		for _, block := range strings.Split(string(out), "\n\n") {
			if !strings.Contains(block, "# file: ./lost+found") {
				keep = append(keep, block)
			}
		}
		sort.Strings(keep) // getfacl walks in directory order
		return strings.Join(keep, "\n\n")
	}
	if fa, fb := facl(src), facl(dst); fa != fb {
		la, lb := strings.Split(fa, "\n"), strings.Split(fb, "\n")
		for i := range min(len(la), len(lb)) {
			if la[i] != lb[i] {
				t.Errorf("getfacl differs at line %d: source %q, restore %q\n%s", i+1, la[i], lb[i], strings.Join(la[max(0, i-8):i+1], "\n"))
				break
			}
		}
		if len(la) != len(lb) {
			t.Errorf("getfacl: %d lines, restore %d", len(la), len(lb))
		}
	}
}
