package prune_test

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/layout"
	"voltar/internal/prune"
	"voltar/internal/retention"
	"voltar/internal/store"
	"voltar/internal/store/local"
)

// writeChain stores a full backup at times[0] and an increment on the one
// before at each later time.
func writeChain(t *testing.T, st store.Store, times ...time.Time) []catalogtest.Folder {
	t.Helper()
	var fs []catalogtest.Folder
	for _, at := range times {
		fs = append(fs, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: at,
			Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("a", 0o644, "x")), "zstd")}}})
	}
	catalogtest.WriteChain(t, st, fs...)
	return fs
}

func daysBefore(now time.Time, days ...int) []time.Time {
	var ts []time.Time
	for _, d := range days {
		ts = append(ts, now.Add(-time.Duration(d)*24*time.Hour-time.Hour))
	}
	return ts
}

func byTime(t *testing.T, res []prune.Volume) map[time.Time]prune.Decision {
	t.Helper()
	if len(res) != 1 {
		t.Fatalf("%d volumes, want 1", len(res))
	}
	m := map[time.Time]prune.Decision{}
	for _, d := range res[0].Decisions {
		at, err := time.Parse(time.RFC3339, d.Time)
		if err != nil {
			t.Fatal(err)
		}
		m[at] = d
	}
	return m
}

// keep_last 1 keeps the newest increment and, for it, every backup back to
// its full; the older chain goes whole. The dry run's JSON says which
// kept backup needs which parent.
func TestPruneKeepsWholeChains(t *testing.T) {
	ctx := context.Background()
	st := local.New(t.TempDir())
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	old := writeChain(t, st, daysBefore(now, 13, 12, 11)...)
	cur := writeChain(t, st, daysBefore(now, 6, 5, 4, 3, 2)...)

	o := prune.Options{Policy: retention.Policy{KeepLast: 1}, Loc: time.UTC, Now: func() time.Time { return now }, DryRun: true}
	res, err := prune.Store(ctx, st, "h", "", o)
	if err != nil {
		t.Fatal(err)
	}
	got := byTime(t, res)
	for i, f := range cur {
		d := got[f.Time]
		if !d.Keep || d.Level != i {
			t.Errorf("%s: keep %v level %d, want kept at level %d: %q", d.ID, d.Keep, d.Level, i, d.Reasons)
		}
		if i == len(cur)-1 {
			continue
		}
		child := got[cur[i+1].Time]
		if want := "parent of kept " + child.ID + " (incremental)"; !slices.Contains(d.Reasons, want) {
			t.Errorf("%s: reasons %q, want %q", d.ID, d.Reasons, want)
		}
		if child.Parent != d.ID {
			t.Errorf("%s: parent %q, want %q", child.ID, child.Parent, d.ID)
		}
	}
	for _, f := range old {
		if d := got[f.Time]; d.Keep {
			t.Errorf("%s of the older chain kept: %q", d.ID, d.Reasons)
		}
	}
	js, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"level":4,"parent":"vg/v/`, `"reasons":["parent of kept vg/v/`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js)
		}
	}

	o.DryRun = false
	if _, err := prune.Store(ctx, st, "h", "", o); err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range old {
		for _, obj := range objs {
			if strings.HasPrefix(obj.Key, f.Prefix()) {
				t.Errorf("%s survived", obj.Key)
			}
		}
	}
	for _, f := range cur {
		if _, err := st.Stat(ctx, f.Prefix()+layout.Manifest); err != nil {
			t.Errorf("%s: %v", f.Prefix(), err)
		}
	}
}

// A damaged middle link breaks the increments behind it: the newest
// restorable backup is the one before it, which keep_last 1 keeps with its
// full; the damaged folder stays for a person, and the broken increments
// after it, newer than what the policy keeps, stay as evidence.
func TestPruneDamagedLinkBreaksTheChain(t *testing.T) {
	ctx := context.Background()
	st := local.New(t.TempDir())
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	fs := writeChain(t, st, daysBefore(now, 10, 4, 3, 2, 1)...)
	corrupt(t, st, fs[2])

	o := prune.Options{Policy: retention.Policy{KeepLast: 1, IncompleteGrace: time.Hour}, Loc: time.UTC, Now: func() time.Time { return now }}
	res, err := prune.Store(ctx, st, "h", "", o)
	if err != nil {
		t.Fatal(err)
	}
	got := byTime(t, res)
	if d := got[fs[1].Time]; !d.Keep || d.Reasons[0] != retention.ReasonNewest {
		t.Errorf("the increment before the damaged one: %+v, want kept as the newest restorable backup", d)
	}
	if d := got[fs[0].Time]; !d.Keep || !slices.Contains(d.Reasons, "parent of kept "+got[fs[1].Time].ID+" (incremental)") {
		t.Errorf("full: %+v, want kept as the parent", d)
	}
	if d := got[fs[2].Time]; !d.Keep || !d.Damaged {
		t.Errorf("damaged link: %+v, want kept as damaged", d)
	}
	damaged := got[fs[2].Time].ID
	for i, f := range fs[3:] {
		d := got[f.Time]
		want := "chain broken: ancestor " + damaged + " is incomplete or damaged"
		if i == 0 {
			want = "chain broken: parent " + damaged + " is incomplete or damaged"
		}
		if !d.Keep || d.Removed || d.Reasons[0] != want {
			t.Errorf("%s: %+v, want kept, first reason %q", d.ID, d, want)
		}
	}
}

// A full whose manifest.json was rewritten since its increment was made is
// not the parent the increment builds on: the increment is not restorable,
// and the full is the newest restorable backup.
func TestPruneParentChanged(t *testing.T) {
	ctx := context.Background()
	st := local.New(t.TempDir())
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	fs := writeChain(t, st, daysBefore(now, 3, 2)...)
	m := catalogtest.Resolve(t, st, fs[0]).Manifest
	m.Version = "rewritten"
	catalogtest.PutManifest(t, st, fs[0].Prefix(), m)

	o := prune.Options{Policy: retention.Policy{KeepLast: 1}, Loc: time.UTC, Now: func() time.Time { return now }, DryRun: true}
	res, err := prune.Store(ctx, st, "h", "", o)
	if err != nil {
		t.Fatal(err)
	}
	got := byTime(t, res)
	if d := got[fs[0].Time]; !d.Keep || d.Reasons[0] != retention.ReasonNewest {
		t.Errorf("full: %+v, want the newest restorable backup", d)
	}
	if d := got[fs[1].Time]; !d.Keep || !strings.Contains(d.Reasons[0], "is not the backup it was made on") {
		t.Errorf("increment: %+v, want kept with its chain broken at a changed parent", d)
	}
}

// corrupt flips manifest.json's first byte, leaving manifest.json.sha256.
func corrupt(t *testing.T, st store.Store, f catalogtest.Folder) {
	t.Helper()
	ctx := context.Background()
	key := f.Prefix() + layout.Manifest
	rc, err := st.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := st.Put(ctx, key, strings.NewReader(string(b)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
