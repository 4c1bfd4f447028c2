package folder_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/folder"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/store"
	"voltar/internal/store/local"
)

// orderStore records the order of Puts.
type orderStore struct {
	*local.Store
	puts []string
}

func (o *orderStore) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (int64, error) {
	o.puts = append(o.puts, key[strings.LastIndexByte(key, '/')+1:])
	return o.Store.Put(ctx, key, r, opts)
}

// Publish writes manifest.json.sha256 before manifest.json (so every
// complete backup has it), and it checks the manifest as written.
func TestPublishCoversManifest(t *testing.T) {
	ctx := context.Background()
	st := &orderStore{Store: local.New(t.TempDir())}
	ts := time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC)
	m := &manifest.Manifest{Schema: 1, Tool: "voltar", Host: "h", ID: "vg/v/2026-11-25T013000Z",
		Table:       manifest.Table{Type: "none"},
		Filesystems: []manifest.Filesystem{{Name: "fs", Mode: manifest.ModeFiles, Archive: "fs.tar.zst", SHA256: strings.Repeat("0", 64)}},
		Status:      manifest.StatusComplete}
	prefix := "h/vg/v/2026-11-25T013000Z/"
	if err := folder.Publish(ctx, st, prefix, m, ts, nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(st.puts, " "); got != "SHA256SUMS manifest.json.sha256 manifest.json" {
		t.Errorf("puts: %s, want SHA256SUMS, manifest.json.sha256, manifest.json", got)
	}
	read := func(name string) []byte {
		rc, err := st.Get(ctx, prefix+name)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return b
	}
	if got, want := read(layout.ManifestSum), manifest.ChecksumFile(read(layout.Manifest)); !bytes.Equal(got, want) {
		t.Errorf("%s = %q, want %q", layout.ManifestSum, got, want)
	}
	if _, err := catalog.Resolve(ctx, st, "h", "vg/v/latest"); err != nil {
		t.Errorf("published backup does not resolve: %v", err)
	}
	// The folder's size counts every object in it, not only the archives
	// (here: none was written).
	objs, err := st.List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, o := range objs {
		size += o.Size
	}
	if m.PublishedBytes != size || size == 0 {
		t.Errorf("PublishedBytes = %d, want %d, the size of the folder", m.PublishedBytes, size)
	}
}
