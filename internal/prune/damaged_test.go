package prune_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/layout"
	"voltar/internal/prune"
	"voltar/internal/retention"
	"voltar/internal/store"
	"voltar/internal/store/local"
)

// A damaged folder (its manifest.json does not match manifest.json.sha256)
// is never a good backup and never removed: the newest good backup behind
// it is kept as the newest, and the damaged one is kept for a person, also
// long after incomplete_grace.
func TestPruneKeepsDamagedAndNewestGood(t *testing.T) {
	ctx := context.Background()
	st := local.New(t.TempDir())
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	var newest catalogtest.Folder
	for d := 0; d < 3; d++ {
		f := catalogtest.Folder{Host: "h", Group: "vg", Volume: "v",
			Time:     now.Add(-time.Duration(d)*72*time.Hour - time.Hour),
			Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("a", 0o644, "x")), "zstd")}}}
		catalogtest.Write(t, st, f)
		if d == 0 {
			newest = f
		}
	}
	key := newest.Prefix() + layout.Manifest
	rc, err := st.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	b[0] ^= 0xff
	if _, err := st.Put(ctx, key, bytes.NewReader(b), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	o := prune.Options{Policy: retention.Policy{KeepLast: 1, IncompleteGrace: time.Minute}, Loc: time.UTC, Now: func() time.Time { return now }}
	res, err := prune.Store(ctx, st, "h", "", o)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]prune.Decision{}
	for _, d := range res[0].Decisions {
		got[d.Time] = d
	}
	damaged := got[newest.Time.Format(time.RFC3339)]
	if !damaged.Keep || !damaged.Damaged || damaged.Complete || damaged.Removed {
		t.Errorf("damaged folder: %+v, want kept as damaged", damaged)
	}
	good := got[now.Add(-73*time.Hour).Format(time.RFC3339)]
	if !good.Keep || good.Removed {
		t.Errorf("newest good backup: %+v, want kept", good)
	}
	if oldest := got[now.Add(-145*time.Hour).Format(time.RFC3339)]; !oldest.Removed {
		t.Errorf("oldest backup: %+v, want removed (keep_last 1)", oldest)
	}
	if _, err := st.Get(ctx, key); err != nil {
		t.Errorf("damaged manifest removed: %v", err)
	}
}
