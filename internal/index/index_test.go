package index_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"voltar/internal/codec"
	"voltar/internal/index"
)

func write(t *testing.T, entries []index.Entry, frames []codec.Frame, tarBytes int64) string {
	t.Helper()
	var buf bytes.Buffer
	w := index.NewWriter(&buf, index.Header{FS: "p1", Archive: "p1.tar.zst"})
	for i := range entries {
		if err := w.Add(&entries[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(frames, tarBytes); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestRoundTrip(t *testing.T) {
	entries := []index.Entry{
		{Path: ".", Type: index.Dir, Mode: 0o755, Mtime: 1, Ctime: 2, Ino: 2, Nlink: 3, Offset: 0},
		{Path: "caf\xe9/\"q\"\n\x01", Type: index.File, Size: 5, Mode: 0o4755, UID: 1000, GID: 100, Uname: "al\"ice", Gname: "users",
			Mtime: -5e18, Ctime: 7, Ino: 12, Nlink: 2, Xattrs: "ab", Sparse: true, Offset: 1024},
		{Path: "l", Type: index.Symlink, Link: "\xff/target", Offset: 2048},
		{Path: "h", Type: index.Hardlink, Hardlink: "caf\xe9/\"q\"\n\x01", Ino: 12, Nlink: 2, Offset: 2560},
		{Path: "dev/null", Type: index.Char, Major: 1, Minor: 3, Offset: 3072},
	}
	frames := []codec.Frame{{CSize: 10, USize: 3000, SHA256: sha256.Sum256([]byte("a"))}, {COff: 10, CSize: 3, UOff: 3000, USize: 1096}}
	ix, err := index.Read(strings.NewReader(write(t, entries, frames, 4096)))
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Entries) != len(entries) {
		t.Fatalf("%d entries back", len(ix.Entries))
	}
	for i := range entries {
		if ix.Entries[i] != entries[i] {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, ix.Entries[i], entries[i])
		}
	}
	for i := range frames {
		if ix.Frames[i] != frames[i] {
			t.Errorf("frame %d: %+v want %+v", i, ix.Frames[i], frames[i])
		}
	}
	if e, ok := ix.Lookup("h"); !ok || ix.Target(e).Path != entries[1].Path {
		t.Errorf("hard link target: %+v", e)
	}
	if ix.FrameAt(2999) != 0 || ix.FrameAt(3000) != 1 || ix.FrameAt(4096) != -1 {
		t.Errorf("FrameAt: %d %d %d", ix.FrameAt(2999), ix.FrameAt(3000), ix.FrameAt(4096))
	}
	if kids := ix.Children("."); len(kids) != 2 || kids[0].Path != "h" || kids[1].Path != "l" {
		t.Errorf("children of .: %d", len(kids))
	}
}

// Everything read from a store is hostile: each of these is refused.
func TestReadRefuses(t *testing.T) {
	good := write(t, []index.Entry{{Path: ".", Type: index.Dir}, {Path: "a", Type: index.File, Offset: 512}},
		[]codec.Frame{{CSize: 5, USize: 2048}}, 2048)
	lines := strings.SplitAfter(good, "\n")
	head, root, a, frame, end := lines[0], lines[1], lines[2], lines[3], lines[4]
	for name, text := range map[string]string{
		"empty":          "",
		"no header":      root + a + frame + end,
		"version":        strings.Replace(head, `"voltar_index":1`, `"voltar_index":9`, 1) + root + a + frame + end,
		"no end":         head + root + a + frame,
		"after end":      good + root,
		"count":          head + root + frame + end,
		"offset order":   head + a + root + frame + end,
		"offset align":   head + root + strings.Replace(a, `"offset":512`, `"offset":513`, 1) + frame + end,
		"dotdot":         head + root + strings.Replace(a, `"path":"a"`, `"path":"../a"`, 1) + frame + end,
		"absolute":       head + root + strings.Replace(a, `"path":"a"`, `"path":"/etc/a"`, 1) + frame + end,
		"unclean":        head + root + strings.Replace(a, `"path":"a"`, `"path":"x//a"`, 1) + frame + end,
		"type":           head + root + strings.Replace(a, `"type":"file"`, `"type":"door"`, 1) + frame + end,
		"mode":           head + root + strings.Replace(a, `"mode":0`, `"mode":65535`, 1) + frame + end,
		"hardlink out":   head + root + `{"path":"h","type":"hardlink","hardlink":"../x","mode":0,"uid":0,"gid":0,"mtime":0,"ctime":0,"ino":0,"offset":512}` + "\n" + frame + end,
		"frame gap":      head + root + a + strings.Replace(frame, `"offset":0`, `"offset":7`, 1) + end,
		"frame sum":      head + root + a + strings.Replace(frame, `"sha256":"`, `"sha256":"zz`, 1) + end,
		"frames short":   head + root + a + frame + strings.Replace(end, `"tar_bytes":2048`, `"tar_bytes":4096`, 1),
		"entry past end": head + root + strings.Replace(a, `"offset":512`, `"offset":4096`, 1) + frame + end,
		"not json":       head + "{\n",
		"long line":      head + strings.Repeat("x", 100<<10) + "\n",
	} {
		if _, err := index.Read(strings.NewReader(text)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if name != "version" && !errors.Is(err, index.ErrCorrupt) {
			t.Errorf("%s: %v is not ErrCorrupt", name, err)
		}
	}
}

func TestXattrDigest(t *testing.T) {
	a := index.XattrDigest(map[string]string{"SCHILY.xattr.user.a": "1", "mtime": "5", "path": "x"})
	b := index.XattrDigest(map[string]string{"SCHILY.xattr.user.a": "1"})
	if a == "" || a != b {
		t.Errorf("digest depends on non-metadata records: %q %q", a, b)
	}
	if index.XattrDigest(map[string]string{"SCHILY.xattr.user.a": "2"}) == b {
		t.Error("digest does not depend on the value")
	}
	if index.XattrDigest(map[string]string{"hdrcharset": "BINARY"}) != "" {
		t.Error("no metadata records, but a digest")
	}
}

// An increment's index lists entries held by earlier backups: their
// offsets are in those archives, in any order; "from" must be a backup
// timestamp, and Target stays within one archive.
func TestInherited(t *testing.T) {
	entries := []index.Entry{
		{Path: ".", Type: index.Dir, Offset: 0},
		{Path: "a", Type: index.File, Size: 3, Ino: 5, Nlink: 2, Offset: 99 * 512, From: "2026-12-05T010000Z"},
		{Path: "b", Type: index.Hardlink, Hardlink: "a", Ino: 5, Nlink: 2, Offset: 100 * 512, From: "2026-12-05T010000Z"},
		{Path: "c", Type: index.File, Size: 1, Offset: 512},
		{Path: "d", Type: index.Hardlink, Hardlink: "c", Offset: 7 * 512, From: "2026-12-04T010000Z"},
	}
	text := write(t, entries, []codec.Frame{{CSize: 5, USize: 2048}}, 2048)
	ix, err := index.Read(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if ix.Inherited != 3 || ix.Entries[1] != entries[1] {
		t.Errorf("Inherited %d, entry %+v", ix.Inherited, ix.Entries[1])
	}
	if b, _ := ix.Lookup("b"); ix.Target(b).Path != "a" {
		t.Errorf("b's target: %q", ix.Target(b).Path)
	}
	if d, _ := ix.Lookup("d"); ix.Target(d) != d {
		t.Errorf("d's target %q is in another archive", ix.Target(d).Path)
	}
	for name, bad := range map[string]string{
		"from not a time": strings.Replace(text, `"from":"2026-12-05T010000Z"`, `"from":"../x"`, 1),
		"from offset":     strings.Replace(text, `"offset":50688,`, `"offset":50689,`, 1),
	} {
		if bad == text {
			t.Fatalf("%s: no change made", name)
		}
		if _, err := index.Read(strings.NewReader(bad)); !errors.Is(err, index.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	var buf bytes.Buffer
	w := index.NewWriter(&buf, index.Header{FS: "p1"})
	if err := w.Add(&index.Entry{Path: "x", Type: index.File, From: "yesterday"}); err == nil {
		t.Error("Writer took an entry from \"yesterday\"")
	}
}
