package archive_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/testutil"
)

// Paths in the torture tree the tests look at by name.
var (
	longName   = strings.Repeat("n", 200)
	longDir    = filepath.Join(strings.Repeat("d", 120), strings.Repeat("e", 120))
	longPath   = filepath.Join(longDir, strings.Repeat("f", 58)) // 300 bytes
	latin1     = "caf\xe9"
	longTarget = strings.Repeat("../t", 75) // 300 bytes

	sparseAllHole = "sparse/allhole-" + latin1
)

const (
	sparseSize = 1 << 30
	gib        = int64(1) << 30
)

// excludes used with the torture tree, and what they remove.
var (
	tortureExcludes = []string{"*.tmp", "var/cache/**", "home/*/tmp", "skipdir/"}
	excludedPaths   = []string{
		"a.tmp", "deep/x/y.tmp", "var/cache/apt", "var/cache/apt/pkg.deb",
		"home/alice/tmp", "home/bob/tmp", "skipdir", "deep/skipdir",
	}
	keptPaths = []string{"var/cache", "home/alice/tmp2", "home/alice/keep", "deep/x/skipdir", "deep/lost+found"}
)

// buildTorture fills root with every kind of entry the archive must keep.
func buildTorture(t *testing.T, root string) {
	t.Helper()
	testutil.RequireTools(t, "setfacl")
	p := func(rel string) string { return filepath.Join(root, rel) }
	mkdir := func(rel string, mode os.FileMode) {
		mustDo(t, "mkdir "+rel, os.MkdirAll(p(rel), 0o755))
		mustDo(t, "chmod "+rel, os.Chmod(p(rel), mode))
	}
	write := func(rel, data string) {
		mustDo(t, "mkdir", os.MkdirAll(filepath.Dir(p(rel)), 0o755))
		mustDo(t, "write "+rel, os.WriteFile(p(rel), []byte(data), 0o644))
	}

	write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n# comment\nalice:x:1001:1001::/home/alice:/bin/sh\nalias:x:1001:1001::/:/bin/sh\n")
	write("etc/group", "root:x:0:\nstaff2:x:1001:alice\n")
	write("owned/alice", "alice's")
	mustDo(t, "chown", os.Lchown(p("owned/alice"), 1001, 1001))
	write("owned/nobody", "ids without names")
	mustDo(t, "chown", os.Lchown(p("owned/nobody"), 4242, 4343))
	mustDo(t, "chown", os.Lchown(p("owned"), 1001, 4343))

	write(longName, "long name")
	write(longPath, "long path")
	write(latin1, "latin-1 name")
	write("with space/and\nnewline", "odd")
	write("empty", "")
	write("utf8 café ☃", "utf-8 name")

	for _, d := range []string{"other", "sparse", "dev"} {
		mkdir(d, 0o755)
	}
	write("links/a", "three names")
	mustDo(t, "link", os.Link(p("links/a"), p("links/b")))
	mustDo(t, "link", os.Link(p("links/a"), p("other/c")))
	mustDo(t, "symlink", os.Symlink("a", p("links/sym")))
	mustDo(t, "symlink", os.Symlink("/does/not/exist", p("links/dangling")))
	mustDo(t, "symlink", os.Symlink(longTarget, p("links/long")))
	mustDo(t, "symlink", os.Symlink(latin1, p("links/"+latin1+"-sym")))

	mustDo(t, "mknod", unix.Mknod(p("dev/null2"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	mustDo(t, "mknod", unix.Mknod(p("dev/blk"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	mustDo(t, "mkfifo", unix.Mkfifo(p("dev/fifo"), 0o640))
	l, err := net.Listen("unix", p("dev/sock"))
	mustDo(t, "socket", err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	write("modes/setuid", "x")
	mustDo(t, "chmod", unix.Chmod(p("modes/setuid"), 0o4755))
	write("modes/setgid", "x")
	mustDo(t, "chmod", unix.Chmod(p("modes/setgid"), 0o2711))
	mkdir("modes/sticky", 0o755)
	mustDo(t, "chmod", unix.Chmod(p("modes/sticky"), 0o1777))
	mkdir("modes/sgid-dir", 0o755)
	mustDo(t, "chmod", unix.Chmod(p("modes/sgid-dir"), 0o2775))
	write("modes/none", "x")
	mustDo(t, "chmod", unix.Chmod(p("modes/none"), 0))

	write("xattr/file", "xattrs")
	mustDo(t, "xattr", unix.Lsetxattr(p("xattr/file"), "user.comment", []byte("hello"), 0))
	mustDo(t, "xattr", unix.Lsetxattr(p("xattr/file"), "user.binary", []byte{0, 1, 2, 0xff, '\n', '='}, 0))
	mustDo(t, "xattr", unix.Lsetxattr(p("xattr/file"), "user.a=b%c", []byte("odd name"), 0))
	mustDo(t, "xattr", unix.Lsetxattr(p("xattr/file"), "trusted.t", []byte("trusted"), 0))
	mustDo(t, "xattr", unix.Lsetxattr(p("xattr/file"), "security.test", []byte("sec"), 0))
	write("xattr/cap", "capable")
	mustDo(t, "xattr", unix.Lsetxattr(p("xattr/cap"), "security.capability", vfsCapV2(1<<unix.CAP_NET_BIND_SERVICE), 0))
	mustDo(t, "symlink", os.Symlink("file", p("xattr/sym")))
	mustDo(t, "xattr", unix.Lsetxattr(p("xattr/sym"), "trusted.onlink", []byte("on the link"), 0))

	write("acl/file", "acl")
	mkdir("acl/dir", 0o755)
	testutil.Run(t, "setfacl", "-m", "u:1001:rw,u:4242:r,g:55:r,g:1001:rwx", p("acl/file"))
	testutil.Run(t, "setfacl", "-m", "u:7:rx", "-d", "-m", "u:1001:rwx,g:4343:rx", p("acl/dir"))

	f, err := os.Create(p("sparse/big"))
	mustDo(t, "create", err)
	rnd := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	for _, off := range []int64{0, 100 << 20, 101 << 20, 700 << 20, sparseSize - 1<<20} {
		for i := range chunk {
			chunk[i] = byte(rnd.Uint32())
		}
		_, err := f.WriteAt(chunk, off)
		mustDo(t, "write sparse", err)
	}
	f.Close()
	mustDo(t, "sparse", os.WriteFile(p("sparse/tailhole"), []byte("head"), 0o644))
	mustDo(t, "sparse", os.Truncate(p("sparse/tailhole"), sparseSize+123)) // unaligned end
	mustDo(t, "sparse", os.WriteFile(p(sparseAllHole), nil, 0o644))
	mustDo(t, "sparse", os.Truncate(p(sparseAllHole), 10<<20))
	mustDo(t, "link", os.Link(p("sparse/big"), p("sparse/big-link")))
	// Sparse entries are encoded by hand: give them every kind of metadata.
	mustDo(t, "chown", os.Lchown(p("sparse/big"), 1001, 1001))
	mustDo(t, "chmod", unix.Chmod(p("sparse/big"), 0o4750))
	mustDo(t, "xattr", unix.Lsetxattr(p("sparse/big"), "user.sparse", []byte("yes"), 0))
	testutil.Run(t, "setfacl", "-m", "u:4242:r", p("sparse/big"))
	mustDo(t, "chown", os.Lchown(p("sparse/tailhole"), 3000000, 3000001)) // too big for ustar
	mustDo(t, "chown", os.Lchown(p(sparseAllHole), 4242, 4343))
	write("owned/bigid", "ids too big for ustar")
	mustDo(t, "chown", os.Lchown(p("owned/bigid"), 3000000, 3000001))

	write("lost+found/orphan", "never archived")
	write("deep/lost+found/kept", "only the root's lost+found is excluded")
	for _, rel := range []string{"a.tmp", "deep/x/y.tmp", "var/cache/apt/pkg.deb", "home/alice/tmp/f",
		"home/bob/tmp/g", "home/alice/tmp2", "home/alice/keep", "skipdir/f", "deep/skipdir/f", "deep/x/skipdir"} {
		write(rel, "maybe excluded")
	}

	// Times last: creating entries changes their directory's mtime.
	times := map[string]time.Time{
		"owned/alice": time.Unix(-1234567890, 123456789), // before 1970
		"owned":       time.Unix(4102444800, 999999999),  // 2100
		latin1:        time.Unix(1, 1),
		"links/sym":   time.Unix(1600000000, 5),
		"dev/fifo":    time.Unix(1500000000, 500000000),
		"sparse/big":  time.Unix(1700000000, 42),
		sparseAllHole: time.Unix(-5, 5),
		"":            time.Unix(1650000000, 7),
	}
	for rel, tm := range times {
		ts := unix.Timespec{Sec: tm.Unix(), Nsec: int64(tm.Nanosecond())}
		mustDo(t, "utimes "+rel, unix.UtimesNanoAt(unix.AT_FDCWD, p(rel), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
	mustDo(t, "chown root", os.Lchown(root, 1001, 1001))
	mustDo(t, "chmod root", os.Chmod(root, 0o750))
}

// vfsCapV2 encodes a security.capability value granting permitted caps.
func vfsCapV2(permitted uint64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0x02000000|1) // VFS_CAP_REVISION_2, effective
	b = binary.LittleEndian.AppendUint32(b, uint32(permitted))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(permitted>>32))
	return binary.LittleEndian.AppendUint32(b, 0)
}
