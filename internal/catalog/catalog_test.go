package catalog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/fail"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/store"
	"voltar/internal/store/local"
)

var t0 = time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC)

func folder(t *testing.T, host, group, vol string, at time.Time) catalogtest.Folder {
	return catalogtest.Folder{
		Host: host, Group: group, Volume: vol, Time: at,
		Archives: []catalogtest.Archive{{
			FS:   manifest.Filesystem{Type: "ext4"},
			Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("./a", 0o644, "hello")), "zstd"),
		}},
	}
}

func TestListSortsAndSeparatesIncomplete(t *testing.T) {
	st := local.New(t.TempDir())
	ctx := context.Background()
	catalogtest.Write(t, st, folder(t, "h1", "vg", "volume-2", t0))
	catalogtest.Write(t, st, folder(t, "h1", "vg", "volume-1", t0.Add(24*time.Hour)))
	catalogtest.Write(t, st, folder(t, "h1", "vg", "volume-1", t0))
	inc := folder(t, "h1", "vg", "volume-1", t0.Add(48*time.Hour))
	inc.NoManifest = true
	catalogtest.Write(t, st, inc)
	catalogtest.Write(t, st, folder(t, "h2", "vg", "volume-1", t0)) // other host
	// Outside the layout: ignored.
	if _, err := st.Put(ctx, "h1/vg/volume-1/notatime/x", strings.NewReader("x"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	cat, err := catalog.List(ctx, st, "h1", "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range cat.Backups {
		got = append(got, b.ID)
	}
	want := []string{
		"vg/volume-1/2026-11-25T013000Z",
		"vg/volume-1/2026-11-26T013000Z",
		"vg/volume-2/2026-11-25T013000Z",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("backups = %v, want %v", got, want)
	}
	b := cat.Backups[0]
	if b.Host != "h1" || b.Group != "vg" || b.Volume != "volume-1" || !b.Time.Equal(t0) ||
		b.Prefix != "h1/vg/volume-1/2026-11-25T013000Z/" || b.Manifest == nil || b.Manifest.Files() != 1 {
		t.Errorf("backup = %+v", b)
	}
	if len(b.Objects) != 4 {
		t.Errorf("objects = %+v, want archive, SHA256SUMS, manifest and its checksum", b.Objects)
	}
	if len(cat.Incomplete) != 1 || cat.Incomplete[0].ID != "vg/volume-1/2026-11-27T013000Z" ||
		cat.Incomplete[0].Reason != "no manifest.json" || cat.Incomplete[0].Bytes == 0 || cat.Incomplete[0].HasManifest {
		t.Errorf("incomplete = %+v", cat.Incomplete)
	}

	for filter, n := range map[string]int{"volume-1": 2, "vg/volume-1": 2, "/dev/vg/volume-2": 1, "other/volume-1": 0, "volume-9": 0} {
		cat, err := catalog.List(ctx, st, "h1", filter)
		if err != nil {
			t.Fatal(err)
		}
		if len(cat.Backups) != n {
			t.Errorf("List(%q) = %d backups, want %d", filter, len(cat.Backups), n)
		}
	}
	all, err := catalog.List(ctx, st, "", "volume-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Backups) != 3 {
		t.Errorf("all hosts: %d backups, want 3", len(all.Backups))
	}
	if _, err := catalog.List(ctx, st, "h1", "a/b/c"); err == nil {
		t.Error("bad filter accepted")
	}
}

func TestListUnreadableManifestIsIncomplete(t *testing.T) {
	st := local.New(t.TempDir())
	ctx := context.Background()
	f := folder(t, "h", "vg", "v", t0)
	catalogtest.Write(t, st, f)
	// As an older voltar wrote it: no manifest.json.sha256.
	if err := st.Delete(ctx, f.Prefix()+layout.ManifestSum); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, f.Prefix()+layout.Manifest, strings.NewReader("{not json"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.List(ctx, st, "h", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Backups) != 0 || len(cat.Incomplete) != 1 || !cat.Incomplete[0].HasManifest || !cat.Incomplete[0].Damaged ||
		!strings.HasPrefix(cat.Incomplete[0].Reason, "manifest.json unreadable") {
		t.Errorf("catalog = %+v", cat)
	}
}

func TestResolve(t *testing.T) {
	st := local.New(t.TempDir())
	ctx := context.Background()
	catalogtest.Write(t, st, folder(t, "h", "vg", "v", t0))
	catalogtest.Write(t, st, folder(t, "h", "vg", "v", t0.Add(time.Hour)))
	inc := folder(t, "h", "vg", "v", t0.Add(2*time.Hour))
	inc.NoManifest = true
	catalogtest.Write(t, st, inc)

	for id, want := range map[string]string{
		"vg/v/2026-11-25T013000Z":   "2026-11-25T013000Z",
		"h/vg/v/2026-11-25T013000Z": "2026-11-25T013000Z",
		"vg/v/latest":               "2026-11-25T023000Z",
		"h/vg/v/latest":             "2026-11-25T023000Z",
	} {
		b, err := catalog.Resolve(ctx, st, "h", id)
		if err != nil {
			t.Errorf("Resolve(%q): %v", id, err)
			continue
		}
		if b.ID != "vg/v/"+want || b.Manifest == nil {
			t.Errorf("Resolve(%q) = %s", id, b.ID)
		}
	}

	_, err := catalog.Resolve(ctx, st, "h", "vg/v/2026-11-25T033000Z")
	var nf *catalog.NotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, catalog.ErrNotFound) || nf.Reason != "incomplete: no manifest.json" {
		t.Errorf("incomplete: err = %v", err)
	}
	_, err = catalog.Resolve(ctx, st, "h", "vg/v/2026-12-01T000000Z")
	want := "no backup vg/v/2026-12-01T000000Z in " + st.String()
	if err == nil || err.Error() != want || strings.Join(fail.Hints(err), "|") != "voltar list vg/v" {
		t.Errorf("missing: err = %v hints %q, want %s", err, fail.Hints(err), want)
	}
	if _, err := catalog.Resolve(ctx, st, "h", "vg/other/latest"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("latest of nothing: err = %v", err)
	}
	var ide *catalog.IDError
	for _, id := range []string{"vg/v", "vg/v/yesterday", "a/b/c/d/e", "vg/../2026-11-25T013000Z"} {
		if _, err := catalog.Resolve(ctx, st, "h", id); !errors.As(err, &ide) || !fail.IsUsage(err) {
			t.Errorf("Resolve(%q): err = %v, want IDError", id, err)
		}
	}
	if _, err := catalog.Resolve(ctx, st, "", "vg/v/latest"); !errors.As(err, &ide) {
		t.Errorf("no host: err = %v", err)
	}
}

func TestParseSums(t *testing.T) {
	h := strings.Repeat("ab", 32)
	sums, err := catalog.ParseSums(strings.NewReader(h + "  p1.tar.zst\n" + strings.ToUpper(h) + " *p2.tar.zst\n\\" + h + "  a\\nb\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 3 || sums["p1.tar.zst"] != h || sums["p2.tar.zst"] != h || sums["a\nb"] != h {
		t.Errorf("sums = %v", sums)
	}
	for _, bad := range []string{"xyz  a\n", h + " a\n", h + "  a\n" + h + "  a\n", strings.Repeat("zz", 32) + "  a\n"} {
		if _, err := catalog.ParseSums(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseSums(%q) accepted", bad)
		}
	}
}

func TestTextAndJSON(t *testing.T) {
	st := local.New(t.TempDir())
	catalogtest.Write(t, st, folder(t, "h", "vg", "v", t0))
	inc := folder(t, "h", "vg", "v", t0.Add(time.Hour))
	inc.NoManifest = true
	catalogtest.Write(t, st, inc)
	cat, err := catalog.List(context.Background(), st, "h", "")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := cat.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"vg/v/2026-11-25T013000Z", "fs:ext4", "complete", "INCOMPLETE", "no manifest.json"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, buf.String())
		}
	}
	js, err := json.Marshal(cat)
	if err != nil {
		t.Fatal(err)
	}
	var back catalog.Catalog
	if err := json.Unmarshal(js, &back); err != nil || len(back.Backups) != 1 || back.Backups[0].Manifest.Files() != 1 {
		t.Errorf("json round trip: %v %+v", err, back)
	}
}

// getCounter counts the objects read from a store.
type getCounter struct {
	*local.Store
	gets []string
}

func (g *getCounter) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	g.gets = append(g.gets, key)
	return g.Store.Get(ctx, key)
}

// GetRange counts ranged reads too; otherwise the local store's, promoted,
// would read past the count.
func (g *getCounter) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	g.gets = append(g.gets, key)
	return g.Store.GetRange(ctx, key, off, n)
}

// Resolving latest reads the newest manifest, not the volume's whole
// history (a GET each on S3).
func TestResolveLatestReadsOneManifest(t *testing.T) {
	st := &getCounter{Store: local.New(t.TempDir())}
	ctx := context.Background()
	for i := range 10 {
		catalogtest.Write(t, st.Store, folder(t, "h", "vg", "v", t0.Add(time.Duration(i)*time.Hour)))
	}
	b, err := catalog.Resolve(ctx, st, "h", "vg/v/latest")
	if err != nil || b.Time != t0.Add(9*time.Hour) {
		t.Fatalf("latest = %v, %v", b, err)
	}
	if len(st.gets) != 2 {
		t.Errorf("resolving latest read %d objects: %v, want the manifest and its checksum", len(st.gets), st.gets)
	}
}
