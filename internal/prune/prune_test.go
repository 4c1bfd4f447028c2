package prune_test

import (
	"context"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zones without the system database

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/prune"
	"voltar/internal/retention"
	"voltar/internal/store/local"
)

func TestPruneKeepsNewestAndRemovesTheRest(t *testing.T) {
	st := local.New(t.TempDir())
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	for d := 0; d < 10; d++ {
		catalogtest.Write(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "volume-1",
			Time:     now.Add(-time.Duration(d)*24*time.Hour - time.Hour),
			Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("a", 0o644, "x")), "zstd")}}})
	}
	// A killed run's folder, two days old, and another volume's only backup
	// that is far older than keep_days.
	catalogtest.Write(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "volume-1", Time: now.Add(-48*time.Hour - 30*time.Minute), NoManifest: true,
		Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("c", 0o644, "z")), "zstd")}}})
	catalogtest.Write(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "volume-2", Time: now.Add(-90 * 24 * time.Hour),
		Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("b", 0o644, "y")), "zstd")}}})

	o := prune.Options{Policy: retention.Policy{KeepDays: 3}, Loc: time.UTC, Now: func() time.Time { return now }, DryRun: true}
	dry, err := prune.Store(context.Background(), st, "h", "", o)
	if err != nil {
		t.Fatal(err)
	}
	objsBefore, _ := st.List(context.Background(), "")
	if len(dry) != 2 {
		t.Fatalf("dry run covered %d volumes, want 2", len(dry))
	}
	o.DryRun = false
	res, err := prune.Store(context.Background(), st, "h", "", o)
	if err != nil {
		t.Fatal(err)
	}
	objsAfter, _ := st.List(context.Background(), "")
	if len(objsAfter) >= len(objsBefore) {
		t.Fatalf("prune removed nothing: %d objects before, %d after", len(objsBefore), len(objsAfter))
	}
	kept, removed := 0, 0
	for _, d := range res[0].Decisions {
		if d.Keep {
			kept++
		} else if d.Removed {
			removed++
		}
	}
	// volume-1: 3 within 3 days; 7 old + 1 incomplete removed.
	if kept != 3 || removed != 8 {
		t.Errorf("volume-1: kept %d, removed %d; want 3 and 8: %+v", kept, removed, res[0].Decisions)
	}
	// volume-2's only backup is old but the newest: kept.
	if d := res[1].Decisions; len(d) != 1 || !d[0].Keep || !strings.Contains(strings.Join(d[0].Reasons, " "), "newest") {
		t.Errorf("volume-2: %+v, want its only backup kept as the newest", d)
	}
	for _, o := range objsAfter {
		if strings.Contains(o.Key, "volume-1/") && !strings.HasPrefix(o.Key, "h/vg/volume-1/2026-11-2") {
			t.Errorf("old object survived: %s", o.Key)
		}
	}
}

// A volume's own policy counts its days in its own time zone: 23:30 and
// 00:30 UTC are two days in UTC but one evening in New York.
func TestPolicyForTimeZone(t *testing.T) {
	st := local.New(t.TempDir())
	for _, at := range []time.Time{time.Date(2026, 11, 24, 23, 30, 0, 0, time.UTC), time.Date(2026, 11, 25, 0, 30, 0, 0, time.UTC)} {
		catalogtest.Write(t, st, catalogtest.Folder{Host: "h", Group: "dumps", Volume: "db1", Time: at,
			Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("a", 0o644, "x")), "zstd")}}})
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	removed := func(o prune.Options) int {
		t.Helper()
		res, err := prune.Store(context.Background(), st, "h", "", o)
		if err != nil || len(res) != 1 {
			t.Fatalf("prune: %v, %+v", err, res)
		}
		n := 0
		for _, d := range res[0].Decisions {
			if !d.Keep {
				n++
			}
		}
		return n
	}
	daily := retention.Policy{KeepDaily: 2}
	o := prune.Options{Policy: daily, Loc: time.UTC, Now: func() time.Time { return now }, DryRun: true}
	if n := removed(o); n != 0 {
		t.Errorf("in UTC: %d would go, want 0 (two days)", n)
	}
	o.PolicyFor = func(group, volume string) (retention.Policy, *time.Location, bool) {
		return daily, ny, group == "dumps" && volume == "db1"
	}
	if n := removed(o); n != 1 {
		t.Errorf("in New York: %d would go, want 1 (one day)", n)
	}
}
