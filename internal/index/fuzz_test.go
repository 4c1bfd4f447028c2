package index_test

import (
	"bytes"
	"testing"

	"voltar/internal/codec"
	"voltar/internal/index"
)

// FuzzRead feeds arbitrary bytes to the index reader: it must never panic,
// and what it accepts must be consistent (offsets growing and aligned,
// paths clean, frames contiguous) and survive a write and read back.
func FuzzRead(f *testing.F) {
	var good bytes.Buffer
	w := index.NewWriter(&good, index.Header{FS: "p1", Archive: "p1.tar.zst"})
	for _, e := range []index.Entry{
		{Path: ".", Type: index.Dir, Mode: 0o755},
		{Path: "a\xff", Type: index.File, Size: 3, Offset: 512, Xattrs: "ab"},
		{Path: "l", Type: index.Symlink, Link: "x", Offset: 2048},
		{Path: "h", Type: index.Hardlink, Hardlink: "a\xff", Offset: 2560},
	} {
		w.Add(&e)
	}
	w.Finish([]codec.Frame{{CSize: 10, USize: 3072}}, 3072)
	f.Add(good.Bytes())
	f.Add([]byte(`{"voltar_index":1}` + "\n" + `{"end":{"entries":0,"frames":0,"tar_bytes":0}}` + "\n"))
	f.Add([]byte("{\"voltar_index\":1}\n{\"path\":\"x\\u0000\",\"type\":\"file\",\"offset\":0}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := index.Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		last := int64(-1)
		for _, e := range ix.Entries {
			if e.Offset <= last || e.Offset%512 != 0 {
				t.Fatalf("accepted offset %d after %d", e.Offset, last)
			}
			last = e.Offset
			if index.CheckPath(e.Path) != nil {
				t.Fatalf("accepted path %q", e.Path)
			}
		}
		var u int64
		for _, fr := range ix.Frames {
			if fr.UOff != u {
				t.Fatalf("accepted a frame gap at %d", u)
			}
			u += fr.USize
		}
		var again bytes.Buffer
		w := index.NewWriter(&again, ix.Header)
		for i := range ix.Entries {
			if err := w.Add(&ix.Entries[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Finish(ix.Frames, ix.End.TarBytes); err != nil {
			t.Fatal(err)
		}
		ix2, err := index.Read(&again)
		if err != nil {
			t.Fatalf("what was accepted does not read back: %v", err)
		}
		if len(ix2.Entries) != len(ix.Entries) {
			t.Fatalf("%d entries read back, %d accepted", len(ix2.Entries), len(ix.Entries))
		}
		for i := range ix.Entries {
			if ix2.Entries[i] != ix.Entries[i] {
				t.Fatalf("entry %d: %+v read back as %+v", i, ix.Entries[i], ix2.Entries[i])
			}
		}
	})
}
