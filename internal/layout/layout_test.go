package layout_test

import (
	"testing"
	"time"

	"voltar/internal/codec"
	"voltar/internal/layout"
)

func TestObjectNames(t *testing.T) {
	for _, tc := range []struct {
		o    layout.Object
		name string
	}{
		{layout.Object{FS: "p1", Kind: layout.Tar}, "p1.tar.zst"},
		{layout.Object{FS: "p1", Kind: layout.Tar, Compression: codec.Zstd, Encrypted: true}, "p1.tar.zst.age"},
		{layout.Object{FS: "fs", Kind: layout.Tar, Compression: codec.Gzip}, "fs.tar.gz"},
		{layout.Object{FS: "p12", Kind: layout.Tar, Compression: codec.None}, "p12.tar"},
		{layout.Object{FS: "p2", Kind: layout.Raw, Compression: codec.Zstd}, "p2.raw.zst"},
		{layout.Object{FS: "p2", Kind: layout.Raw, Compression: codec.Gzip, Encrypted: true}, "p2.raw.gz.age"},
		{layout.Object{FS: "dump", Kind: layout.SQL, Compression: codec.Zstd, Encrypted: true}, "dump.sql.zst.age"},
		{layout.Object{FS: "dump", Kind: layout.SQL, Compression: codec.None}, "dump.sql"},
		{layout.Object{FS: "outside", Kind: layout.Runs, Compression: codec.Zstd}, "outside.runs.zst"},
		{layout.Object{FS: "outside", Kind: layout.Runs, Compression: codec.Gzip, Encrypted: true}, "outside.runs.gz.age"},
	} {
		if got := tc.o.Name(); got != tc.name {
			t.Errorf("%+v.Name() = %q, want %q", tc.o, got, tc.name)
		}
		got, err := layout.ParseObject(tc.name)
		want := tc.o
		if want.Compression == "" {
			want.Compression = codec.Zstd
		}
		if err != nil || got != want {
			t.Errorf("ParseObject(%q) = %+v, %v, want %+v", tc.name, got, err, want)
		}
	}
	for _, bad := range []string{"", "p1", "p0.tar.zst", "p01.tar", "x.tar.zst", "../p1.tar.zst", "p1.tar.zst/x",
		"dump.tar.zst", "p1.sql.zst", "p1.zip", "manifest.json", "SHA256SUMS", ".tar.zst",
		"outside.raw.zst", "outside.tar.zst", "p1.runs.zst", "fs.runs", "dump.runs.zst"} {
		if o, err := layout.ParseObject(bad); err == nil {
			t.Errorf("ParseObject(%q) = %+v, want an error", bad, o)
		}
	}
}

// Moved here from codec.FromName's test: the name grammar is layout's.
func TestCompression(t *testing.T) {
	for name, want := range map[string]string{
		"p1.tar.zst": codec.Zstd, "p1.tar.zst.age": codec.Zstd,
		"p2.raw.gz": codec.Gzip, "p2.raw.gz.age": codec.Gzip,
		"dump.sql.zst.age": codec.Zstd, "p1.tar": codec.None, "p1.tar.age": codec.None,
	} {
		if got := layout.Compression(name); got != want {
			t.Errorf("Compression(%q) = %q, want %q", name, got, want)
		}
	}
}

// Moved here from archive.Ext's test.
func TestExt(t *testing.T) {
	for c, want := range map[string]string{"": ".tar.zst", "zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"} {
		o := layout.Object{FS: "p1", Kind: layout.Tar, Compression: c}
		if got := o.Name(); got != "p1"+want {
			t.Errorf("tar object compressed with %q is %q, want p1%s", c, got, want)
		}
	}
}

func TestEncryptedAndTar(t *testing.T) {
	if !layout.Encrypted("p1.tar.zst.age") || layout.Encrypted("p1.tar.zst") {
		t.Error("Encrypted")
	}
	if !layout.IsTar("p1.tar.zst.age") || !layout.IsTar("fs.tar") || layout.IsTar("p2.raw.zst") || layout.IsTar("dump.sql.zst") {
		t.Error("IsTar")
	}
}

func TestFolders(t *testing.T) {
	ts := time.Date(2026, 11, 25, 1, 30, 0, 0, time.FixedZone("x", 3600))
	if got, want := layout.Folder("h", "vg", "volume-1", ts), "h/vg/volume-1/2026-11-25T003000Z/"; got != want {
		t.Errorf("Folder = %q, want %q", got, want)
	}
	if got, want := layout.DumpFolder("h", "db1", ts), "h/dumps/db1/2026-11-25T003000Z/"; got != want {
		t.Errorf("DumpFolder = %q, want %q", got, want)
	}
	k, ok := layout.ParseKey("h/vg/volume-1/2026-11-25T003000Z/p1.tar.zst")
	if !ok || k.Host != "h" || k.Group != "vg" || k.Volume != "volume-1" || !k.Time.Equal(ts) || k.Name != "p1.tar.zst" {
		t.Errorf("ParseKey = %+v, %v", k, ok)
	}
	if k.Prefix() != "h/vg/volume-1/2026-11-25T003000Z/" || k.ID() != "vg/volume-1/2026-11-25T003000Z" {
		t.Errorf("Prefix %q ID %q", k.Prefix(), k.ID())
	}
	for _, bad := range []string{"h/vg/v/2026-11-25T003000Z/", "h/vg/v/2026-11-25/p1.tar", "h/vg/p1.tar"} {
		if k, ok := layout.ParseKey(bad); ok {
			t.Errorf("ParseKey(%q) = %+v", bad, k)
		}
	}
	if err := layout.CheckID("vg/v/2026-11-25T003000Z"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"vg/v", "vg/../2026-11-25T003000Z", "vg/v/yesterday"} {
		if layout.CheckID(bad) == nil {
			t.Errorf("CheckID(%q) accepted", bad)
		}
	}
}

func TestValidHost(t *testing.T) {
	for _, h := range []string{"node-1", "node_1.example", "A1"} {
		if err := layout.ValidHost(h); err != nil {
			t.Errorf("%q: %v", h, err)
		}
	}
	for _, h := range []string{"", ".", "..", "a/b", "../../evil", "a b", "ä", "a\\b"} {
		if err := layout.ValidHost(h); err == nil {
			t.Errorf("%q accepted", h)
		}
	}
}
