package browse_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"voltar/internal/browse"
	"voltar/internal/catalog"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/index"
	"voltar/internal/store"
	"voltar/internal/store/storetest"
)

// tree is a tar stream with small files before and after one that spans
// several 8 MiB frames.
func tree(t *testing.T) ([]byte, map[string]string) {
	big := make([]byte, 20<<20)
	rand.NewChaCha8([32]byte{3}).Read(big)
	files := map[string]string{"./a/first": "first\n", "./b/big": string(big), "./c/last": "last\n", "./c/mid": strings.Repeat("m", 3<<20)}
	data := catalogtest.Tar(t,
		catalogtest.Dir("./", 0o755), catalogtest.Dir("./a/", 0o755), catalogtest.File("./a/first", 0o644, files["./a/first"]),
		catalogtest.Dir("./b/", 0o755), catalogtest.File("./b/big", 0o600, files["./b/big"]),
		catalogtest.Dir("./c/", 0o755), catalogtest.File("./c/last", 0o644, files["./c/last"]),
		catalogtest.File("./c/mid", 0o644, files["./c/mid"]),
		catalogtest.Link("./c/link", "./a/first"), catalogtest.Symlink("./c/sym", "../a/first"))
	return data, files
}

func backup(t *testing.T, st store.Store, compression string, withIndex bool, ts int) *catalog.Backup {
	data, _ := tree(t)
	f := catalogtest.Folder{Host: "h", Group: "image", Volume: "v", Time: time.Date(2026, 12, 1, 0, 0, ts, 0, time.UTC),
		Compression: compression, Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, data, compression), Index: withIndex}}}
	catalogtest.Write(t, st, f)
	return catalogtest.Resolve(t, st, f)
}

func open(t *testing.T, st store.Store, b *catalog.Backup) *browse.FS {
	t.Helper()
	f, err := browse.Open(context.Background(), st, b, b.Manifest.Filesystems[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

func cat(f *browse.FS, p string) (string, error) {
	e, ok := f.Index.Lookup(p)
	if !ok {
		return "", errors.New("no " + p)
	}
	var buf bytes.Buffer
	_, err := f.Copy(context.Background(), e, &buf)
	return buf.String(), err
}

// Every way an archive can be stored reads back file by file; only zstd
// and uncompressed archives with an index are seekable.
func TestCopy(t *testing.T) {
	_, files := tree(t)
	for _, tc := range []struct {
		comp     string
		index    bool
		streamed bool
	}{
		{codec.Zstd, true, false}, {codec.None, true, false}, {codec.Gzip, true, true}, {codec.Zstd, false, true},
	} {
		st := storetest.NewMemory()
		f := open(t, st, backup(t, st, tc.comp, tc.index, 0))
		if f.Streamed != tc.streamed {
			t.Errorf("%s index=%v: streamed %v (%s)", tc.comp, tc.index, f.Streamed, f.Why)
		}
		for name, want := range files {
			got, err := cat(f, index.FromTar(name))
			if err != nil || got != want {
				t.Errorf("%s index=%v: %s: %d bytes, %v", tc.comp, tc.index, name, len(got), err)
			}
		}
		if got, err := cat(f, "c/link"); err != nil || got != files["./a/first"] {
			t.Errorf("%s: hard link reads %q, %v", tc.comp, got, err)
		}
	}
}

// A file at the end of a seekable archive is read with at most two frames
// (it may straddle a boundary) plus the index.
func TestCopyReadsOnlyItsFrames(t *testing.T) {
	mem := storetest.NewMemory()
	b := backup(t, mem, codec.Zstd, true, 0)
	c := store.NewCounter(mem)
	f := open(t, c, b)
	if len(f.Index.Frames) < 3 {
		t.Fatalf("%d frames, want several", len(f.Index.Frames))
	}
	indexBytes := c.Bytes()
	if got, err := cat(f, "c/last"); err != nil || got != "last\n" {
		t.Fatalf("c/last: %q, %v", got, err)
	}
	var frames int64
	for _, fr := range f.Index.Frames[len(f.Index.Frames)-2:] {
		frames += fr.CSize
	}
	if read := c.Bytes() - indexBytes; read > frames || read == 0 {
		t.Errorf("reading c/last fetched %d bytes; its last two frames are %d", read, frames)
	}
	obj, _ := b.Object(b.Manifest.Filesystems[0].Archive)
	t.Logf("index %d bytes, one file %d bytes, archive %d bytes", indexBytes, c.Bytes()-indexBytes, obj.Size)
}

// A flipped byte in one frame fails exactly the reads of that frame.
func TestDamagedFrame(t *testing.T) {
	mem := storetest.NewMemory()
	b := backup(t, mem, codec.Zstd, true, 0)
	f := open(t, mem, b)
	big, _ := f.Index.Lookup("b/big")
	k := f.Index.FrameAt(big.Offset + 12<<20)
	fr := f.Index.Frames[k]
	damaged := storetest.NewFaulty(mem,
		&storetest.Fault{Op: storetest.OpGetRange, KeySuffix: ".tar.zst", Corrupt: true, CorruptAt: fr.COff + fr.CSize/2},
		&storetest.Fault{Op: storetest.OpGet, KeySuffix: "T000001Z/fs.tar.zst", Corrupt: true, CorruptAt: 1000})
	f = open(t, damaged, b)
	if _, err := cat(f, "b/big"); !errors.Is(err, browse.ErrDamaged) || !strings.Contains(err.Error(), "frame") {
		t.Errorf("read through the damaged frame: %v", err)
	}
	if got, err := cat(f, "a/first"); err != nil || got != "first\n" {
		t.Errorf("read of an intact frame: %q, %v", got, err)
	}
	// Streamed, the whole archive is checked before anything is given out.
	old := backup(t, mem, codec.Zstd, false, 1)
	f, err := browse.Open(context.Background(), damaged, old, old.Manifest.Filesystems[0], nil)
	if err == nil {
		var buf bytes.Buffer
		e, _ := f.Index.Lookup("a/first")
		_, err = f.Copy(context.Background(), e, &buf)
		if buf.Len() > 0 {
			t.Errorf("a damaged streamed archive gave out %d bytes", buf.Len())
		}
	}
	if !errors.Is(err, browse.ErrDamaged) {
		t.Errorf("damaged streamed archive: %v", err)
	}
}

// An index that puts an entry where the archive has another is caught.
func TestIndexDisagrees(t *testing.T) {
	mem := storetest.NewMemory()
	f := open(t, mem, backup(t, mem, codec.Zstd, true, 0))
	a, _ := f.Index.Lookup("a/first")
	c, _ := f.Index.Lookup("c/last")
	a.Offset, c.Offset = c.Offset, a.Offset
	if _, err := cat(f, "a/first"); !errors.Is(err, browse.ErrDamaged) {
		t.Errorf("entry at the wrong offset: %v", err)
	}
}

func TestDiff(t *testing.T) {
	a := &index.Index{Entries: []index.Entry{
		{Path: ".", Type: index.Dir, Mode: 0o755},
		{Path: "same", Type: index.File, Size: 3, Mtime: 1},
		{Path: "gone", Type: index.File},
		{Path: "grown", Type: index.File, Size: 1, Mtime: 1},
		{Path: "chmod", Type: index.File, Mode: 0o600},
		{Path: "now-dir", Type: index.File},
	}}
	b := &index.Index{Entries: []index.Entry{
		{Path: ".", Type: index.Dir, Mode: 0o755, Mtime: 5},
		{Path: "same", Type: index.File, Size: 3, Mtime: 1},
		{Path: "grown", Type: index.File, Size: 2, Mtime: 2},
		{Path: "chmod", Type: index.File, Mode: 0o644, UID: 7},
		{Path: "now-dir", Type: index.Dir},
		{Path: "new", Type: index.File},
	}}
	var got []string
	for _, c := range browse.Diff(a, b) {
		got = append(got, c.Kind+" "+c.Path+" "+strings.Join(c.What, ","))
	}
	want := []string{"changed chmod mode,owner", "removed gone ", "changed grown content,mtime", "added new ", "changed now-dir type"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Diff:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A file of a backup without an index comes out of one read of its
// archive: the pass that builds the index keeps it.
func TestOpenForStreamedReadsOnce(t *testing.T) {
	mem := storetest.NewMemory()
	b := backup(t, mem, codec.Zstd, false, 0)
	c := store.NewCounter(mem)
	f, err := browse.OpenFor(context.Background(), c, b, b.Manifest.Filesystems[0], nil, "c/last")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.Streamed {
		t.Fatal("a backup without an index is not streamed")
	}
	if got, err := cat(f, "c/last"); err != nil || got != "last\n" {
		t.Fatalf("c/last: %q, %v", got, err)
	}
	obj, _ := b.Object(b.Manifest.Filesystems[0].Archive)
	if c.Reads() != 1 || c.Bytes() != obj.Size {
		t.Errorf("%d reads of %d bytes; want the archive (%d bytes) read once", c.Reads(), c.Bytes(), obj.Size)
	}
}
