package restore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
	"voltar/internal/verify"
)

// buildTorture fills root with everything a filesystem can hold that
// voltar must bring back.
func buildTorture(t *testing.T, root string) {
	t.Helper()
	testutil.RequireTools(t, "setfacl", "getfacl")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	write := func(rel, data string, mode os.FileMode) {
		t.Helper()
		must(os.MkdirAll(filepath.Dir(p(rel)), 0o755))
		must(os.WriteFile(p(rel), []byte(data), mode))
		must(os.Chmod(p(rel), mode))
	}

	// Odd names, incl. non-UTF-8 bytes and a 255-byte component.
	for _, n := range []string{"space name", "new\nline", "tab\tname", `back\slash`, `quote"'`, "ünïcødé ✓",
		"\xff\xfe-not-utf8", "-dash", "*glob?[x]", "%3D=%25", strings.Repeat("L", 255)} {
		write("names/"+n, "name "+n, 0o644)
	}
	// A deep path (archive.Write reaches files by absolute path, so the
	// whole must stay below PATH_MAX).
	deep := "deep"
	for i := 0; len(deep) < 3500; i++ {
		deep += "/" + strings.Repeat("d", 60)
	}
	write(deep+"/bottom", "bottom", 0o600)

	// Sparse: 1 GiB with a little data at both ends and in the middle.
	f, err := os.Create(p("sparse/big"))
	if err != nil {
		must(os.MkdirAll(p("sparse"), 0o755))
		f, err = os.Create(p("sparse/big"))
	}
	must(err)
	for _, off := range []int64{0, 512 << 20, 1<<30 - 3} {
		_, err := f.WriteAt([]byte("DATA"), off)
		must(err)
	}
	must(f.Truncate(1<<30 + 1))
	must(f.Close())
	write("sparse/empty", "", 0o644)
	write("sparse/zeros", string(make([]byte, 3*4096+100)), 0o644)
	// Data, then zeros to the end: the size comes from ftruncate.
	write("sparse/tail", "data"+string(make([]byte, 2*4096+7)), 0o644)

	// Hard links across directories, and one to a fifo.
	write("links/a", "linked", 0o640)
	must(os.MkdirAll(p("links/sub"), 0o755))
	must(os.Link(p("links/a"), p("links/b")))
	must(os.Link(p("links/a"), p("links/sub/c")))
	must(unix.Mkfifo(p("links/fifo"), 0o620))
	must(os.Link(p("links/fifo"), p("links/fifo2")))

	// Devices and a fifo.
	must(os.MkdirAll(p("dev"), 0o755))
	must(unix.Mknod(p("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(p("dev/loop200"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	must(unix.Mknod(p("dev/fifo"), unix.S_IFIFO|0o600, 0))

	// Modes and owners without names.
	write("modes/setuid", "#!/bin/sh\n", 0o755)
	write("modes/none", "", 0)
	write("modes/all", "", 0o777)
	must(os.MkdirAll(p("modes/sticky"), 0o755))
	must(os.MkdirAll(p("modes/setgid"), 0o755))
	must(os.Lchown(p("modes/setuid"), 4242, 4243))
	must(os.Lchown(p("modes/setgid"), 4242, 4243))
	must(unix.Chmod(p("modes/setuid"), 0o4755))
	must(unix.Chmod(p("modes/all"), 0o7777))
	must(unix.Chmod(p("modes/sticky"), 0o1777))
	must(unix.Chmod(p("modes/setgid"), 0o2770))
	write("caps/ping", "binary", 0o755)
	must(unix.Setxattr(p("caps/ping"), "security.capability", capV2(), 0))

	// Symlinks: relative, absolute, dangling, owned by a nameless uid.
	must(os.MkdirAll(p("sym"), 0o755))
	must(os.Symlink("../links/a", p("sym/rel")))
	must(os.Symlink("/etc/passwd", p("sym/abs")))
	must(os.Symlink("nowhere/at/all", p("sym/dangling")))
	must(os.Symlink("\xff-target", p("sym/binary")))
	must(os.Lchown(p("sym/rel"), 4242, 4243))

	// Xattrs and ACLs.
	write("attrs/file", "attrs", 0o640)
	must(unix.Setxattr(p("attrs/file"), "user.text", []byte("hello"), 0))
	must(unix.Setxattr(p("attrs/file"), "user.binary", []byte{0, 1, 2, 0, 255}, 0))
	must(unix.Setxattr(p("attrs/file"), "user.empty", nil, 0))
	must(unix.Setxattr(p("attrs/file"), "trusted.voltar", []byte("t"), 0))
	must(os.MkdirAll(p("attrs/dir/sub"), 0o750))
	write("attrs/dir/plain", "no acl, though the parent has a default one later", 0o644)
	must(unix.Setxattr(p("attrs/dir"), "user.dir", []byte("d"), 0))
	testutil.Run(t, "setfacl", "-m", "u:4242:rwx,g:4243:r-x,m::rwx", p("attrs/file"))
	testutil.Run(t, "setfacl", "-m", "u:4242:r-x", p("attrs/dir"))
	testutil.Run(t, "setfacl", "-d", "-m", "u:4242:rwx,g::r-x", p("attrs/dir"))
	testutil.Run(t, "setfacl", "-m", "g:4243:rw", p("dev/fifo"))

	// Owners and times last: chown clears setuid and capabilities, and
	// every change above touched the directories' mtimes.
	times := map[string]time.Time{
		"names/space name": time.Unix(-1_500_000_000, 123_456_789), // 1922
		"modes/none":       time.Unix(0, 0),
		"modes/all":        time.Unix(-1, 999_999_999),
		"sparse/big":       time.Date(2400, 1, 2, 3, 4, 5, 678_901_234, time.UTC),
		"attrs/file":       time.Unix(1_700_000_000, 1),
		"dev/null":         time.Unix(1_234_567_890, 42),
		"links/a":          time.Unix(1_600_000_000, 5),
	}
	for rel, tm := range times {
		must(os.Chtimes(p(rel), tm, tm))
	}
	ts := []unix.Timespec{unix.NsecToTimespec(1_111_111_111_222_333_444), unix.NsecToTimespec(1_111_111_111_222_333_444)}
	must(unix.UtimesNanoAt(unix.AT_FDCWD, p("sym/rel"), ts, unix.AT_SYMLINK_NOFOLLOW))
	for _, d := range []string{"names", "modes/sticky", "attrs/dir", "deep", "."} {
		must(os.Chtimes(p(d), time.Unix(-86_400*365*60, 7), time.Unix(-86_400*365*60, 7)))
	}
}

func TestTortureTreeRoundTrip(t *testing.T) {
	src := mountFS(t, "ext4", 256)
	buildTorture(t, src)
	st := local.New(t.TempDir())
	f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "volume-1", Time: t0, Compression: codec.Zstd},
		map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: "ext4"}})
	b := catalogtest.Resolve(t, st, f)

	// What archive.Write records is what verify counts.
	if r := verify.Backup(context.Background(), st, b, nil); !r.OK {
		t.Fatalf("verify: %v", r.Problems)
	}

	dst := mountFS(t, "ext4", 256)
	res, err := restore.ToDir(context.Background(), st, b, dst, restore.Options{})
	if err != nil {
		t.Fatalf("restore: %v\n%+v", err, res)
	}
	fr := res.Filesystems[0]
	if !fr.Verified || fr.Dir != dst || len(fr.Warnings) != 0 || fr.RefusedCount+fr.FailedCount != 0 {
		t.Errorf("result: %+v", fr)
	}
	if fr.Entries != b.Manifest.Filesystems[0].Entries || fr.Files != b.Manifest.Filesystems[0].Files ||
		fr.Bytes != b.Manifest.Filesystems[0].SourceBytes {
		t.Errorf("counts %d entries %d files %d bytes, manifest %+v", fr.Entries, fr.Files, fr.Bytes, b.Manifest.Filesystems[0])
	}
	compareTrees(t, src, dst)

	var big unix.Stat_t
	if err := unix.Stat(filepath.Join(dst, "sparse/big"), &big); err != nil {
		t.Fatal(err)
	}
	if big.Blocks*512 > 1<<20 {
		t.Errorf("sparse/big allocates %d bytes, want holes", big.Blocks*512)
	}
}

func TestFlippedByteFailsRestore(t *testing.T) {
	// Uncompressed, a flip in the last file's data is caught only by the
	// hash at the end, after every file was written.
	for _, tc := range []struct {
		c    string
		flip func(n int) int
	}{
		{codec.Zstd, func(n int) int { return n * 3 / 4 }},
		{codec.None, func(n int) int { return n * 3 / 4 }},
		{codec.None, func(n int) int { return n - 1024 - 100 }},
	} {
		c := tc.c
		t.Run(c, func(t *testing.T) {
			src := t.TempDir()
			for i := range 20 {
				data := make([]byte, 64<<10)
				for j := range data {
					data[j] = byte(j*7 + i*13 + j/251)
				}
				if err := os.WriteFile(filepath.Join(src, "f"+string(rune('a'+i))), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			st := local.New(t.TempDir())
			f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: t0, Compression: c},
				map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: "ext4"}})
			b := catalogtest.Resolve(t, st, f)
			key := b.Key(b.Manifest.Filesystems[0].Archive)
			data, err := os.ReadFile(filepath.Join(st.Root(), key))
			if err != nil {
				t.Fatal(err)
			}
			data[tc.flip(len(data))] ^= 0x10
			if err := os.WriteFile(filepath.Join(st.Root(), key), data, 0o600); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "restore")
			res, err := restore.ToDir(context.Background(), st, b, dst, restore.Options{})
			var pe *restore.PartialError
			if !errors.As(err, &pe) || !errors.Is(err, restore.ErrChecksum) {
				t.Fatalf("err = %v, want a checksum PartialError", err)
			}
			if pe.Dir != dst || pe.Files == 0 || pe.Files != res.Filesystems[0].Files ||
				!strings.Contains(err.Error(), "already written under "+dst) || !strings.Contains(err.Error(), "fs.tar") {
				t.Errorf("err = %v (files %d)", err, pe.Files)
			}
			if res.Filesystems[0].Verified {
				t.Error("result says verified")
			}
			t.Log(err)
		})
	}
}
