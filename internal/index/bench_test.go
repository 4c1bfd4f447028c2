package index

import (
	"bytes"
	"fmt"
	"testing"

	"voltar/internal/codec"
)

// BenchmarkRead decodes the index of an increment of a tree of 100,000
// entries, nine in ten of them inherited from two earlier backups: what
// the next increment reads before its walk.
func BenchmarkRead(b *testing.B) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Header{FS: "p1", Archive: "p1.tar.zst"})
	off := int64(0)
	for i := range 100000 {
		e := Entry{Path: fmt.Sprintf("usr/share/doc/package-%d/file-%d.txt", i/20, i), Type: File, Size: int64(i % 4096),
			Mode: 0o644, Uname: "root", Gname: "root", Mtime: 1700000000123456789 + int64(i), Ctime: 1700000000987654321 + int64(i),
			Ino: uint64(1000 + i), Nlink: 1}
		switch {
		case i%20 == 0:
			e.Type, e.Size, e.Mode = Dir, 0, 0o755
			e.Offset, off = off, off+1024
		case i%10 == 1:
			e.Offset, off = off, off+512+int64(i%4096+511)/512*512
		case i%3 == 0:
			e.From, e.Offset = "2026-12-05T010000Z", int64(i)*512
		default:
			e.From, e.Offset = "2026-12-04T010000Z", int64(i)*512
		}
		if err := w.Add(&e); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Finish([]codec.Frame{{CSize: 1, USize: off}}, off); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		ix, err := Read(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		if len(ix.Entries) != 100000 {
			b.Fatal(len(ix.Entries))
		}
	}
}
