package verify_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/store"
	"voltar/internal/store/local"
	"voltar/internal/verify"
)

var t0 = time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC)

// tree is a small archive with a few entry types and a file big enough
// for zstd to split into several blocks.
func tree(t *testing.T) []byte {
	big := strings.Repeat("voltar verifies every byte. ", 40000)
	return catalogtest.Tar(t,
		catalogtest.Dir("./", 0o755),
		catalogtest.Dir("./etc", 0o755),
		catalogtest.File("./etc/hostname", 0o644, "db1\n"),
		catalogtest.File("./big", 0o600, big),
		catalogtest.Symlink("./etc/link", "hostname"),
		catalogtest.Link("./etc/hard", "./etc/hostname"),
	)
}

func setup(t *testing.T, compression string) (*local.Store, catalogtest.Folder, *catalog.Backup) {
	t.Helper()
	st := local.New(t.TempDir())
	f := catalogtest.Folder{
		Host: "h", Group: "vg", Volume: "volume-1", Time: t0, Compression: compression,
		Table: manifest.Table{Type: "mbr", Partitions: []manifest.Partition{{Number: 1, Start: 1 << 20, Size: 1 << 29, Type: "0x83"}}},
		Archives: []catalogtest.Archive{
			{FS: manifest.Filesystem{Name: "p1", Partition: 1, Type: "ext4"}, Data: catalogtest.Compress(t, tree(t), compression)},
		},
	}
	catalogtest.Write(t, st, f)
	return st, f, catalogtest.Resolve(t, st, f)
}

func problems(r verify.Result) string {
	var s []string
	for _, p := range r.Problems {
		s = append(s, p.String())
	}
	return strings.Join(s, "\n")
}

func TestGoodBackupPasses(t *testing.T) {
	for _, c := range []string{codec.Zstd, codec.Gzip, codec.None} {
		t.Run(c, func(t *testing.T) {
			st, _, b := setup(t, c)
			r := verify.Backup(context.Background(), st, b, nil)
			if !r.OK || len(r.Problems) != 0 {
				t.Fatalf("problems:\n%s", problems(r))
			}
			if len(r.Objects) != 1 || r.Objects[0].Entries != 6 || r.Objects[0].Files != 2 ||
				r.Objects[0].SHA256 != b.Manifest.Filesystems[0].SHA256 {
				t.Errorf("objects = %+v", r.Objects)
			}
		})
	}
}

// corrupt replaces a stored object.
func corrupt(t *testing.T, st *local.Store, key string, edit func([]byte) []byte) {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	if _, err := st.Put(context.Background(), key, bytes.NewReader(edit(buf.Bytes())), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func reResolve(t *testing.T, st *local.Store, f catalogtest.Folder) *catalog.Backup {
	return catalogtest.Resolve(t, st, f)
}

func wantProblem(t *testing.T, r verify.Result, object string, substrs ...string) {
	t.Helper()
	if r.OK {
		t.Fatalf("verify passed, want a problem with %s", object)
	}
	for _, p := range r.Problems {
		if p.Object != object {
			continue
		}
		ok := true
		for _, s := range substrs {
			ok = ok && strings.Contains(p.Message, s)
		}
		if ok {
			return
		}
	}
	t.Errorf("no problem for %s containing %q; got:\n%s", object, substrs, problems(r))
}

func TestFlippedByteFails(t *testing.T) {
	for _, c := range []string{codec.Zstd, codec.Gzip, codec.None} {
		t.Run(c, func(t *testing.T) {
			st, f, b := setup(t, c)
			corrupt(t, st, b.Key(b.Manifest.Filesystems[0].Archive), func(d []byte) []byte {
				d[len(d)/2] ^= 0x01
				return d
			})
			r := verify.Backup(context.Background(), st, reResolve(t, st, f), nil)
			wantProblem(t, r, "p1.tar"+layout.Ext(c), "sha256 is ", "SHA256SUMS and manifest.json say "+b.Manifest.Filesystems[0].SHA256)
		})
	}
}

func TestTruncatedZstdFails(t *testing.T) {
	st, f, b := setup(t, codec.Zstd)
	corrupt(t, st, b.Key("p1.tar.zst"), func(d []byte) []byte { return d[:len(d)*2/3] })
	// The manifest is made to agree with the truncated object's size and
	// hash, so only reading the stream to its end can catch it.
	b = reResolve(t, st, f)
	r := verify.Backup(context.Background(), st, b, nil)
	wantProblem(t, r, "p1.tar.zst", "stored size is", "manifest.json says")
	found := false
	for _, p := range r.Problems {
		found = found || (p.Object == "p1.tar.zst" && (strings.Contains(p.Message, "EOF") || strings.Contains(p.Message, "broken")))
	}
	if !found {
		t.Errorf("no read error reported:\n%s", problems(r))
	}
}

func TestTruncatedStreamWithMatchingChecksumsFails(t *testing.T) {
	// A backup whose writer died mid-stream yet recorded the checksum of what
	// it stored: the hashes agree, the zstd stream does not end.
	st := local.New(t.TempDir())
	full := catalogtest.Compress(t, tree(t), codec.Zstd)
	f := catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: t0, Archives: []catalogtest.Archive{{
		FS:   manifest.Filesystem{Type: "ext4", Entries: 6, Files: 2, SourceBytes: 1},
		Data: full[:len(full)/2],
	}}}
	catalogtest.Write(t, st, f)
	r := verify.Backup(context.Background(), st, catalogtest.Resolve(t, st, f), nil)
	wantProblem(t, r, "fs.tar.zst", "EOF")
	for _, p := range r.Problems {
		if strings.Contains(p.Message, "sha256 is") {
			t.Errorf("hash reported wrong although it matches: %s", p)
		}
	}
}

func TestManifestCountMismatchFails(t *testing.T) {
	st, f, b := setup(t, codec.Zstd)
	m := *b.Manifest
	m.Filesystems = append([]manifest.Filesystem(nil), m.Filesystems...)
	m.Filesystems[0].Files = 4
	m.Filesystems[0].Entries = 7
	m.Filesystems[0].SourceBytes += 10
	catalogtest.PutManifest(t, st, b.Prefix, &m)
	r := verify.Backup(context.Background(), st, reResolve(t, st, f), nil)
	wantProblem(t, r, "p1.tar.zst", "files 2, manifest.json says 4")
	wantProblem(t, r, "p1.tar.zst", "entries 6, manifest.json says 7")
	wantProblem(t, r, "p1.tar.zst", "source bytes")
}

func TestMissingAndStrayObjects(t *testing.T) {
	st, f, b := setup(t, codec.Zstd)
	ctx := context.Background()
	if err := st.Delete(ctx, b.Key("p1.tar.zst")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, b.Key("junk"), strings.NewReader("x"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	r := verify.Backup(ctx, st, reResolve(t, st, f), nil)
	wantProblem(t, r, "p1.tar.zst", "missing")
	wantProblem(t, r, "junk", "stray")
}

func TestSumsProblems(t *testing.T) {
	st, f, b := setup(t, codec.Zstd)
	ctx := context.Background()
	other := strings.Repeat("0", 64)
	extra := strings.Repeat("1", 64)
	sums := other + "  p1.tar.zst\n" + extra + "  gone.sql.zst\n"
	if _, err := st.Put(ctx, b.Key(layout.Sums), strings.NewReader(sums), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	r := verify.Backup(ctx, st, reResolve(t, st, f), nil)
	wantProblem(t, r, "p1.tar.zst", "SHA256SUMS says sha256 "+other)
	wantProblem(t, r, "p1.tar.zst", "sha256 is "+b.Manifest.Filesystems[0].SHA256+", SHA256SUMS says "+other)
	wantProblem(t, r, "gone.sql.zst", "missing: listed in SHA256SUMS")

	if err := st.Delete(ctx, b.Key(layout.Sums)); err != nil {
		t.Fatal(err)
	}
	r = verify.Backup(ctx, st, reResolve(t, st, f), nil)
	wantProblem(t, r, "SHA256SUMS", "no SHA256SUMS")
}

func TestOtherListedObjectsAreHashed(t *testing.T) {
	st := local.New(t.TempDir())
	f := catalogtest.Folder{Host: "h", Group: "dumps", Volume: "db1", Time: t0, Extra: map[string][]byte{"dump.sql.zst": []byte("dump")}}
	catalogtest.Write(t, st, f)
	ctx := context.Background()
	sum := "b68e1b7d3d7c2bc70ab7e7bd0dbfc9c6bd7b3e4e4a2f2b7e4f1c8a0f0d0e0a0b" // not the real hash
	if _, err := st.Put(ctx, f.Prefix()+layout.Sums, strings.NewReader(sum+"  dump.sql.zst\n"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	r := verify.Backup(ctx, st, catalogtest.Resolve(t, st, f), nil)
	wantProblem(t, r, "dump.sql.zst", "sha256 is ", "SHA256SUMS says "+sum)
}

func TestSample(t *testing.T) {
	var bs []catalog.Backup
	for i := range 10 {
		bs = append(bs, catalog.Backup{ID: string(rune('a' + i))})
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for pct, n := range map[float64]int{100: 10, 150: 10, 50: 5, 1: 1, 25: 3, 0: 0} {
		got := verify.Sample(bs, pct, rnd)
		if len(got) != n {
			t.Errorf("Sample(%v%%) = %d backups, want %d", pct, len(got), n)
		}
		for i := 1; i < len(got); i++ {
			if got[i-1].ID >= got[i].ID {
				t.Errorf("Sample(%v%%) not in order: %v", pct, got)
			}
		}
	}
}

func TestWriteText(t *testing.T) {
	st, f, b := setup(t, codec.Zstd)
	good := verify.Backup(context.Background(), st, b, nil)
	corrupt(t, st, b.Key("p1.tar.zst"), func(d []byte) []byte { d[100] ^= 0xff; return d })
	bad := verify.Backup(context.Background(), st, reResolve(t, st, f), nil)
	var buf bytes.Buffer
	if err := verify.WriteText(&buf, []verify.Result{good, bad}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"ok      vg/volume-1/2026-11-25T013000Z  1 objects", "FAILED  vg/volume-1/", "        p1.tar.zst: ", "verified 2 backups: 1 ok, 1 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if verify.Failed([]verify.Result{good, bad}) != 1 {
		t.Error("Failed != 1")
	}
}
