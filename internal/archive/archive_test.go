package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"voltar/internal/archive"
	"voltar/internal/codec"
	"voltar/internal/layout"
	"voltar/internal/objio"
	"voltar/internal/testutil"
)

// TestWriteRestoresWithGNUTar archives the torture tree, restores it the
// way an operator would without voltar, and compares both trees.
func TestWriteRestoresWithGNUTar(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "tar", "zstd", "gzip", "getfacl", "setfacl", "sha256sum", "bash")
	src := mountExt4(t, 4*gib)
	buildTorture(t, src)
	remountRO(t, src)
	want := scan(t, src, func(rel string) bool {
		return rel == "lost+found" || rel == "dev/sock" || slices.Contains(excludedPaths, rel)
	})

	for _, tc := range []struct{ comp, extract string }{
		{codec.Zstd, "zstd -d < p1.tar.zst | tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -p -C \"$DST\""},
		{codec.Gzip, "tar -xz --xattrs --xattrs-include='*' --acls --numeric-owner -p -C \"$DST\" -f p1.tar.gz"},
	} {
		t.Run(tc.comp, func(t *testing.T) {
			dir := t.TempDir()
			name := layout.Object{FS: "p1", Kind: layout.Tar, Compression: tc.comp}.Name()
			var logs bytes.Buffer
			var progress []archive.Progress
			res, sum := writeFile(t, src, filepath.Join(dir, name), tc.comp, archive.Options{
				Excludes: tortureExcludes,
				Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
				Progress: func(p archive.Progress) { progress = append(progress, p) },
			})
			checkResult(t, res, sum, want, filepath.Join(dir, name))
			if !strings.Contains(logs.String(), "socket") || !strings.Contains(logs.String(), "dev/sock") {
				t.Errorf("no warning about the skipped socket in logs:\n%s", logs.String())
			}
			if len(progress) == 0 || progress[len(progress)-1] != (archive.Progress{Bytes: res.SourceBytes, Files: res.Files}) {
				t.Errorf("last progress %v, want bytes %d files %d", progress[len(progress)-1:], res.SourceBytes, res.Files)
			}

			// The operator's restore, verbatim.
			sums := sum.SHA256 + "  " + name + "\n"
			mustDo(t, "write sums", os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums), 0o644))
			dst := mountExt4(t, 4*gib)
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", "sha256sum -c SHA256SUMS && "+tc.extract)
			cmd.Dir, cmd.Env = dir, append(os.Environ(), "DST="+dst)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("restore: %v\n%s", err, out)
			}
			t.Logf("restore output:\n%s", out)
			compareTrees(t, want, scan(t, dst, func(rel string) bool { return rel == "lost+found" }))
			compareACLs(t, src, dst, "acl/file", "acl/dir")
			checkSparse(t, dst)
			checkListing(t, filepath.Join(dir, name), tc.comp)
			readBack(t, filepath.Join(dir, name), tc.comp, src, want)
		})
	}
}

func writeFile(t *testing.T, root, path, comp string, opts archive.Options) (archive.Result, objio.Sum) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, sum, err := writeEncoded(context.Background(), root, f, comp, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return res, sum
}

// checkResult compares res with the file written and the tree archived.
func checkResult(t *testing.T, res archive.Result, sum objio.Sum, want map[string]*fileInfo, path string) {
	t.Helper()
	// The torture tree's sparse files hold far less data than their
	// sizes; exact figures are checked by the backup tests.
	if res.DataBytes <= 0 || res.DataBytes >= res.SourceBytes/100 {
		t.Errorf("DataBytes %d: want the data without the holes of the sparse files (SourceBytes %d)", res.DataBytes, res.SourceBytes)
	}
	res.DataBytes = 0
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Bytes != fi.Size() {
		t.Errorf("StoredBytes %d, file has %d", sum.Bytes, fi.Size())
	}
	if got := fileSum(t, path); sum.SHA256 != got {
		t.Errorf("SHA256 %s, file has %s", sum.SHA256, got)
	}
	var files, bytes int64
	seen := make(map[uint64]bool)
	for _, f := range want {
		if f.mode&unix.S_IFMT == unix.S_IFREG && !seen[f.ino] {
			seen[f.ino] = true
			files++
			bytes += f.size
		}
	}
	wantRes := archive.Result{
		SourceBytes: bytes, Files: files, Entries: int64(len(want)),
		Excluded: 8,            // lost+found and excludedPaths but pkg.deb, hidden by its directory
		Skipped:  1,            // the socket
		Inodes:   res.Inodes,   // checked against statfs by the backup tests
		TarBytes: res.TarBytes, // checked against the stream by TestIndexMatchesSource
	}
	if res.TarBytes <= 0 || res.TarBytes%512 != 0 {
		t.Errorf("TarBytes %d: not a whole number of tar blocks", res.TarBytes)
	}
	if !reflect.DeepEqual(res, wantRes) {
		t.Errorf("Result:\n got %+v\nwant %+v", res, wantRes)
	}
}

func compareTrees(t *testing.T, want, got map[string]*fileInfo) {
	t.Helper()
	for rel := range want {
		if got[rel] == nil {
			t.Errorf("%q: missing after restore", rel)
		}
	}
	for rel := range got {
		if want[rel] == nil {
			t.Errorf("%q: restored but not expected", rel)
		}
	}
	for _, rel := range excludedPaths {
		if got[rel] != nil {
			t.Errorf("%q: excluded but restored", rel)
		}
	}
	for _, rel := range keptPaths {
		if got[rel] == nil {
			t.Errorf("%q: wrongly excluded", rel)
		}
	}
	for rel, w := range want {
		g := got[rel]
		if g == nil {
			continue
		}
		if g.mode != w.mode || g.uid != w.uid || g.gid != w.gid {
			t.Errorf("%q: mode %#o %d:%d, want %#o %d:%d", rel, g.mode, g.uid, g.gid, w.mode, w.uid, w.gid)
		}
		if g.mtime != w.mtime {
			t.Errorf("%q: mtime %v, want %v", rel, g.mtime, w.mtime)
		}
		if w.mode&unix.S_IFMT != unix.S_IFDIR && (g.size != w.size || g.sum != w.sum) {
			t.Errorf("%q: size %d sha256 %s, want %d %s", rel, g.size, g.sum, w.size, w.sum)
		}
		if g.target != w.target {
			t.Errorf("%q: symlink to %q, want %q", rel, g.target, w.target)
		}
		if typ := w.mode & unix.S_IFMT; (typ == unix.S_IFCHR || typ == unix.S_IFBLK) && g.rdev != w.rdev {
			t.Errorf("%q: rdev %#x, want %#x", rel, g.rdev, w.rdev)
		}
		if !reflect.DeepEqual(g.xattrs, w.xattrs) {
			t.Errorf("%q: xattrs\n got %q\nwant %q", rel, g.xattrs, w.xattrs)
		}
	}
	if g, w := linkGroups(got), linkGroups(want); !reflect.DeepEqual(g, w) {
		t.Errorf("hardlink groups %q, want %q", g, w)
	}
	if len(linkGroups(want)) != 2 {
		t.Errorf("torture tree has hardlink groups %q, want 2", linkGroups(want))
	}
}

// compareACLs compares getfacl's view, the tool operators would use.
func compareACLs(t *testing.T, src, dst string, rels ...string) {
	t.Helper()
	getfacl := func(root string) string {
		cmd := exec.Command("getfacl", append([]string{"-n"}, rels...)...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("getfacl: %v\n%s", err, out)
		}
		return string(out)
	}
	w, g := getfacl(src), getfacl(dst)
	if g != w {
		t.Errorf("getfacl after restore:\n%s\nwant:\n%s", g, w)
	}
	for _, s := range []string{"user:1001:rw-", "group:1001:rwx", "default:group:4343:r-x", "user:7:r-x"} {
		if !strings.Contains(g, s) {
			t.Errorf("restored ACLs lack %q:\n%s", s, g)
		}
	}
}

func checkSparse(t *testing.T, dst string) {
	t.Helper()
	for rel, maxBytes := range map[string]int64{"sparse/big": 6 << 20, "sparse/tailhole": 64 << 10, sparseAllHole: 0} {
		var st unix.Stat_t
		mustDo(t, "stat", unix.Lstat(filepath.Join(dst, rel), &st))
		if st.Blocks*512 > maxBytes {
			t.Errorf("%s: restored with %d bytes allocated (size %d), want <= %d", rel, st.Blocks*512, st.Size, maxBytes)
		}
	}
}

// checkListing checks that `tar -tv` shows the names of the tree's own
// passwd and group, and numbers where it has none.
func checkListing(t *testing.T, path, comp string) {
	t.Helper()
	out := testutil.Run(t, "tar", "-tv", "--use-compress-program", comp, "-f", path)
	wants := map[string]string{
		"./owned/alice":  " alice/staff2 ",
		"./owned/nobody": " 4242/4343 ",
		"./owned/":       " alice/4343 ",
		"./etc/passwd":   " root/root ",
		"./sparse/big":   "-rwsr-x--- alice/staff2 1073741824 ",
	}
	for _, line := range strings.Split(out, "\n") {
		for name, owner := range wants {
			if strings.HasSuffix(line, " "+name) {
				if !strings.Contains(line, owner) {
					t.Errorf("tar -tv: %q, want owner %q", line, owner)
				}
				delete(wants, name)
			}
		}
	}
	if len(wants) > 0 {
		t.Errorf("tar -tv lacks %v:\n%s", wants, out)
	}
}

// readBack reads the archive with archive/tar, as voltar's restore will.
func readBack(t *testing.T, path, comp, src string, want map[string]*fileInfo) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := codec.NewReader(f, comp)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	seen := make(map[string]bool)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("archive/tar: %v", err)
		}
		rel := strings.TrimPrefix(strings.TrimSuffix(hdr.Name, "/"), ".")
		rel = strings.TrimPrefix(rel, "/")
		w := want[rel]
		if w == nil || seen[rel] {
			t.Errorf("archive/tar: unexpected or repeated entry %q", hdr.Name)
			continue
		}
		seen[rel] = true
		if hdr.Mode != int64(w.mode&0o7777) || hdr.Uid != int(w.uid) || hdr.Gid != int(w.gid) {
			t.Errorf("archive/tar: %q: mode %#o %d:%d, want %#o %d:%d", rel, hdr.Mode, hdr.Uid, hdr.Gid, w.mode&0o7777, w.uid, w.gid)
		}
		if hdr.ModTime.Unix() != w.mtime.Sec || int64(hdr.ModTime.Nanosecond()) != w.mtime.Nsec {
			t.Errorf("archive/tar: %q: mtime %v, want %v", rel, hdr.ModTime, w.mtime)
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			h := sha256.New()
			n, err := io.Copy(h, tr)
			if err != nil {
				t.Fatalf("archive/tar: read %q: %v", rel, err)
			}
			if n != w.size || hdr.Size != w.size || hex.EncodeToString(h.Sum(nil)) != w.sum {
				t.Errorf("archive/tar: %q: %d bytes (header %d), want %d with sha256 %s", rel, n, hdr.Size, w.size, w.sum)
			}
		case tar.TypeLink:
			target := strings.TrimPrefix(hdr.Linkname, "./")
			if want[target] == nil || want[target].ino != w.ino || !seen[target] {
				t.Errorf("archive/tar: %q: hardlink to %q, not an earlier name of the same file", rel, hdr.Linkname)
			}
		case tar.TypeSymlink:
			if hdr.Linkname != w.target {
				t.Errorf("archive/tar: %q: symlink to %q, want %q", rel, hdr.Linkname, w.target)
			}
		}
		xa := make(map[string]string)
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				xa[strings.NewReplacer("%3D", "=", "%25", "%").Replace(name)] = v
			}
		}
		if !reflect.DeepEqual(xa, w.xattrs) {
			t.Errorf("archive/tar: %q: xattrs %q, want %q", rel, xa, w.xattrs)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("archive/tar read %d entries, want %d", len(seen), len(want))
	}
}
