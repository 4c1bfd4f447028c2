package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"voltar/internal/archive"
	"voltar/internal/index"
	"voltar/internal/testutil"
)

// mutateTree applies every kind of change an increment must carry to the
// tree made by seedTree.
func mutateTree(t *testing.T, root string) {
	t.Helper()
	sh := func(script string) {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	sh(`
echo added > a/new.txt
mkdir -p newdir/deep && echo deep > newdir/deep/f
# same size, mtime put back: only ctime tells
printf 'XXXXXXXXXX' | dd of=a/same.txt conv=notrunc status=none
touch -d @1700000000 a/same.txt
rm a/gone.txt
mv a/moved.txt b/moved.txt
chmod 0600 a/mode.txt
chown 1234:5678 a/owner.txt
setfattr -n user.k -v changed a/xattr.txt
setfacl -m u:1000:r a/acl.txt
ln a/linked.txt b/second-name
truncate -s 64M a/sparse.bin && printf end | dd of=a/sparse.bin bs=1 seek=60000000 conv=notrunc status=none
rm -r dir2file && echo now-a-file > dir2file
rm file2dir && mkdir file2dir && echo inside > file2dir/x
ln -s a/new.txt newlink
`)
}

func seedTree(t *testing.T, root string) {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", `
mkdir a b dir2file
echo unchanged > a/unchanged.txt
printf '0123456789' > a/same.txt && touch -d @1700000000 a/same.txt
echo gone > a/gone.txt
echo moved > a/moved.txt
echo mode > a/mode.txt
echo owner > a/owner.txt
echo xattr > a/xattr.txt && setfattr -n user.k -v v1 a/xattr.txt
echo acl > a/acl.txt
echo linked > a/linked.txt
truncate -s 1M a/sparse.bin && printf start | dd of=a/sparse.bin conv=notrunc status=none
echo in > dir2file/in
echo file > file2dir
for i in $(seq 1 50); do echo $i > b/keep$i; done
`)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
}

// TestIncrementRestoresWithGNUTar archives a tree, changes it in every way
// an increment must carry, archives the increment against the first
// archive's index, and restores both with GNU tar alone: the result must be
// the changed tree.
func TestIncrementRestoresWithGNUTar(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "tar", "setfattr", "setfacl", "truncate", "bash")
	src := mountExt4(t, 512<<20)
	seedTree(t, src)

	dir := t.TempDir()
	write := func(name string, parent *archive.Parent) (archive.Result, []index.Entry) {
		t.Helper()
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var entries []index.Entry
		res, err := archive.Write(context.Background(), src, f, archive.Options{
			Parent: parent,
			Index:  func(e *index.Entry) error { entries = append(entries, *e); return nil },
		})
		if err != nil {
			t.Fatalf("Write %s: %v", name, err)
		}
		return res, entries
	}
	_, full := write("l0.tar", nil)
	mutateTree(t, src)
	res, inc := write("l1.tar", &archive.Parent{Index: func() (*index.Index, error) { return &index.Index{Entries: full}, nil }, Time: "2026-12-05T010000Z"})

	// What the increment holds: the changes, and every directory.
	inArchive := map[string]bool{}
	from := map[string]string{}
	for _, e := range inc {
		if e.From == "" {
			inArchive[e.Path] = true
		} else {
			from[e.Path] = e.From
		}
	}
	for _, p := range []string{"a/new.txt", "a/same.txt", "b/moved.txt", "a/mode.txt", "a/owner.txt", "a/xattr.txt",
		"a/acl.txt", "a/linked.txt", "b/second-name", "a/sparse.bin", "dir2file", "file2dir", "file2dir/x", "newlink", ".", "a", "b"} {
		if !inArchive[p] {
			t.Errorf("%s: not in the increment", p)
		}
	}
	for _, p := range []string{"a/unchanged.txt", "b/keep1", "b/keep50"} {
		if from[p] != "2026-12-05T010000Z" {
			t.Errorf("%s: from %q, want the parent", p, from[p])
		}
	}
	if res.Inherited != int64(len(from)) || res.Inherited < 51 {
		t.Errorf("Inherited %d, index inherits %d", res.Inherited, len(from))
	}
	for _, gone := range []string{"a/gone.txt", "a/moved.txt", "dir2file/in"} {
		if inArchive[gone] || from[gone] != "" {
			t.Errorf("%s: deleted, still indexed", gone)
		}
	}
	checkDumpdirs(t, filepath.Join(dir, "l1.tar"), map[string]string{
		".": "Da Db Ydir2file Dfile2dir Dnewdir Ynewlink",
		"a": "Yacl.txt Ylinked.txt Ymode.txt Ynew.txt Yowner.txt Ysame.txt Ysparse.bin Nunchanged.txt Yxattr.txt",
	})

	dst := mountExt4(t, 512<<20)
	for _, n := range []string{"l0.tar", "l1.tar"} {
		cmd := exec.Command("tar", "-x", "--listed-incremental=/dev/null", "--xattrs", "--xattrs-include=*", "--acls",
			"--numeric-owner", "-p", "-C", dst, "-f", filepath.Join(dir, n))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tar -x %s: %v\n%s", n, err, out)
		}
	}
	skip := func(rel string) bool { return rel == "lost+found" }
	want, got := scan(t, src, skip), scan(t, dst, skip)
	sameTree(t, want, got)
}

// sameTree compares two scans: names, types, modes, owners, mtimes,
// contents, link targets, xattrs (ACLs included) and hard-link groups.
func sameTree(t *testing.T, want, got map[string]*fileInfo) {
	t.Helper()
	for rel, w := range want {
		g := got[rel]
		if g == nil {
			t.Errorf("%q: missing", rel)
			continue
		}
		if g.mode != w.mode || g.uid != w.uid || g.gid != w.gid || g.target != w.target || g.rdev != w.rdev {
			t.Errorf("%q: mode %#o %d:%d -> %q, want %#o %d:%d -> %q", rel, g.mode, g.uid, g.gid, g.target, w.mode, w.uid, w.gid, w.target)
		}
		if w.mode&unix.S_IFMT != unix.S_IFDIR && (g.mtime != w.mtime || g.size != w.size || g.sum != w.sum) {
			t.Errorf("%q: mtime %v size %d sha256 %s, want %v %d %s", rel, g.mtime, g.size, g.sum, w.mtime, w.size, w.sum)
		}
		if !reflect.DeepEqual(g.xattrs, w.xattrs) {
			t.Errorf("%q: xattrs %q, want %q", rel, g.xattrs, w.xattrs)
		}
	}
	for rel := range got {
		if want[rel] == nil {
			t.Errorf("%q: restored, but deleted from the source", rel)
		}
	}
	if g, w := linkGroups(got), linkGroups(want); !reflect.DeepEqual(g, w) {
		t.Errorf("hard-link groups %q, want %q", g, w)
	}
}

// checkDumpdirs compares the GNU.dumpdir records of the named directories
// (as "code+name" words, sorted) with want.
func checkDumpdirs(t *testing.T, path string, want map[string]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeDir {
			continue
		}
		d, ok := h.PAXRecords["GNU.dumpdir"]
		if !ok {
			t.Errorf("%s: directory without a dumpdir", h.Name)
			continue
		}
		if !strings.HasSuffix(d, "\x00") {
			t.Errorf("%s: dumpdir %q not NUL-terminated", h.Name, d)
		}
		words := strings.Split(strings.TrimSuffix(strings.TrimSuffix(d, "\x00"), "\x00"), "\x00")
		sort.Slice(words, func(i, j int) bool { return words[i][1:] < words[j][1:] })
		got[index.FromTar(h.Name)] = strings.Join(words, " ")
	}
	for dir, w := range want {
		if got[dir] != w {
			t.Errorf("dumpdir of %s: %q, want %q", dir, got[dir], w)
		}
	}
}
