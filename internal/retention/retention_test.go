package retention_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"voltar/internal/retention"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		p    retention.Policy
		want []string // substrings of the error; none means valid
	}{
		{p: retention.Policy{}},
		{p: retention.Policy{KeepDays: 30, KeepLast: 1, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, IncompleteGrace: time.Hour}},
		{p: retention.Policy{KeepDays: -1}, want: []string{"keep_days -1: must not be negative"}},
		{
			p:    retention.Policy{KeepLast: -1, KeepDaily: -2, KeepWeekly: -3, KeepMonthly: -4, IncompleteGrace: -time.Hour},
			want: []string{"keep_last -1", "keep_daily -2", "keep_weekly -3", "keep_monthly -4", "incomplete_grace -1h0m0s"},
		},
		{p: retention.Policy{KeepDays: 1 << 40}, want: []string{"keep_days 1099511627776: must be at most"}},
	} {
		err := tc.p.Validate()
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%+v: got %v, want no error", tc.p, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v: got no error, want %q", tc.p, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: got %q, want it to contain %q", tc.p, err, w)
			}
		}
	}
}

func TestIsZeroAndString(t *testing.T) {
	for _, tc := range []struct {
		p        retention.Policy
		wantZero bool
		want     string
	}{
		{retention.Policy{}, true, "none (keep everything) incomplete_grace=24h"},
		{retention.Policy{IncompleteGrace: 90 * time.Minute}, true, "none (keep everything) incomplete_grace=1h30m"},
		{retention.Policy{KeepDays: 7}, false, "keep_days=7 incomplete_grace=24h"},
		{retention.Policy{KeepMonthly: 1}, false, "keep_monthly=1 incomplete_grace=24h"},
		{combined, false, "keep_last=3 keep_daily=7 keep_weekly=4 keep_monthly=6 incomplete_grace=24h"},
	} {
		if got := tc.p.IsZero(); got != tc.wantZero {
			t.Errorf("%+v IsZero: got %v, want %v", tc.p, got, tc.wantZero)
		}
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v String: got %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestInvalidPolicyKeepsEverything(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	bs := []retention.Backup{
		{ID: "a", Time: now.Add(-100 * 24 * time.Hour), Complete: true},
		{ID: "b", Time: now.Add(-100 * 24 * time.Hour)},
	}
	for _, d := range retention.Apply(bs, retention.Policy{KeepDays: -1}, now, time.UTC) {
		if !d.Keep || len(d.Reasons) != 1 || !strings.HasPrefix(d.Reasons[0], "invalid retention policy: keep_days -1") {
			t.Errorf("%s: got keep=%v %q, want kept as invalid policy", d.Backup.ID, d.Keep, d.Reasons)
		}
	}
}

// chainOf is a nightly chain of complete backups ending at last: a full
// n-1 days before it, then an increment a day.
func chainOf(last time.Time, n int) []retention.Backup {
	var bs []retention.Backup
	parent := ""
	for i := n - 1; i >= 0; i-- {
		t := last.Add(-time.Duration(i) * 24 * time.Hour)
		id := "vg0/root/" + t.Format("2006-01-02T150405Z")
		bs = append(bs, retention.Backup{ID: id, Time: t, Complete: true, Parent: parent})
		parent = id
	}
	return bs
}

func decisions(ds []retention.Decision) map[string]retention.Decision {
	m := map[string]retention.Decision{}
	for _, d := range ds {
		m[d.Backup.ID] = d
	}
	return m
}

// A kept increment keeps every ancestor up to its full, each naming the
// backup that needs it; without chains keep_last 1 would keep one backup.
func TestKeptIncrementKeepsItsChain(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	bs := chainOf(now.Add(-6*time.Hour), 5)
	ds := retention.Apply(bs, retention.Policy{KeepLast: 1}, now, time.UTC)
	for i, d := range ds {
		if !d.Keep {
			t.Errorf("%s removed: %q; the newest increment depends on it", d.Backup.ID, d.Reasons)
		}
		if i > 0 {
			want := "parent of kept " + ds[i-1].Backup.ID + " (incremental)"
			if !slices.Equal(d.Reasons, []string{want}) {
				t.Errorf("%s: reasons %q, want [%q]", d.Backup.ID, d.Reasons, want)
			}
		}
	}
}

// An increment whose full is gone is not restorable: it is not the newest,
// uses up no keep_last slot, and says where its chain breaks.
func TestBrokenChainIsNotNewest(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	older := chainOf(now.Add(-10*24*time.Hour), 3)    // full, incr, incr: restorable
	newer := chainOf(now.Add(-6*time.Hour), 4)[1:]    // its full is gone
	old := chainOf(now.Add(-100*24*time.Hour), 3)[1:] // broken and old
	bs := slices.Concat(older, newer, old)
	got := decisions(retention.Apply(bs, retention.Policy{KeepLast: 1}, now, time.UTC))

	newest := got[older[2].ID]
	if !newest.Keep || newest.Reasons[0] != retention.ReasonNewest || !slices.Contains(newest.Reasons, "last 1") {
		t.Errorf("newest restorable %s: %+v, want kept as the newest and by last 1", older[2].ID, newest)
	}
	for _, b := range older[:2] {
		if !got[b.ID].Keep {
			t.Errorf("%s removed, but the newest restorable backup builds on it", b.ID)
		}
	}
	gone := chainOf(now.Add(-6*time.Hour), 4)[0].ID
	for i, b := range newer {
		d := got[b.ID]
		want := "chain broken: ancestor " + gone + " is missing"
		if i == 0 {
			want = "chain broken: parent " + gone + " is missing"
		}
		if !d.Keep || d.Reasons[0] != want || !slices.Contains(d.Reasons, retention.ReasonBrokenKept) {
			t.Errorf("%s: %+v, want kept for inspection with %q", b.ID, d, want)
		}
		if slices.Contains(d.Reasons, retention.ReasonNewest) || slices.Contains(d.Reasons, "last 1") {
			t.Errorf("%s: a broken increment counted for a rule: %q", b.ID, d.Reasons)
		}
	}
	for _, b := range old {
		if d := got[b.ID]; d.Keep || !slices.Contains(d.Reasons, retention.ReasonBrokenOlder) {
			t.Errorf("%s: %+v, want removed as broken and older than what the policy keeps", b.ID, d)
		}
	}
}

// With no restorable backup at all, nothing broken is removed, and a
// policy without rules keeps broken increments like every complete backup.
func TestBrokenKeptWithoutRestorableOrPolicy(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	bs := chainOf(now.Add(-100*24*time.Hour), 4)[1:]
	for _, tc := range []struct {
		p    retention.Policy
		want string
	}{
		{retention.Policy{KeepDays: 1}, retention.ReasonBrokenNoBackup},
		{retention.Policy{}, retention.ReasonNoPolicy},
	} {
		withFull := append(slices.Clone(bs), chainOf(now.Add(-200*24*time.Hour), 1)...)
		in := bs
		if tc.p.IsZero() {
			in = withFull // a restorable backup besides: still every one kept
		}
		for _, d := range retention.Apply(in, tc.p, now, time.UTC) {
			if d.Backup.Parent != "" && (!d.Keep || !slices.Contains(d.Reasons, tc.want)) {
				t.Errorf("%s, %s: %+v, want kept: %s", tc.p, d.Backup.ID, d, tc.want)
			}
		}
	}
}

// A parent replaced since its increment was made breaks the chain there,
// though it is kept for the increment like any parent.
func TestParentChanged(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	bs := chainOf(now.Add(-time.Hour), 3)
	bs[1].ParentChanged = true
	got := decisions(retention.Apply(bs, retention.Policy{KeepLast: 1}, now, time.UTC))
	want := "chain broken: ancestor " + bs[0].ID + " is not the backup it was made on (its manifest changed)"
	if d := got[bs[2].ID]; d.Reasons[0] != want {
		t.Errorf("newest: %q, want %q first", d.Reasons, want)
	}
	if d := got[bs[0].ID]; !d.Keep || d.Reasons[0] != retention.ReasonNewest {
		t.Errorf("full: %+v, want the newest restorable backup", d)
	}
	for _, b := range bs {
		if !got[b.ID].Keep {
			t.Errorf("%s removed", b.ID)
		}
	}
}

// A parent that is not older than its child, a backup that is its own
// parent, and a cycle break the chain; Apply ends and keeps the newest
// backup with an intact chain.
func TestChainCyclesAndBadParents(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return now.Add(-time.Duration(h) * time.Hour) }
	bs := []retention.Backup{
		{ID: "full", Time: at(50), Complete: true},
		{ID: "a", Time: at(10), Complete: true, Parent: "b"},
		{ID: "b", Time: at(9), Complete: true, Parent: "a"},
		{ID: "self", Time: at(8), Complete: true, Parent: "self"},
		{ID: "same", Time: at(7), Complete: true, Parent: "twin"},
		{ID: "twin", Time: at(7), Complete: true, Parent: "full"},
		{ID: "late", Time: at(5), Complete: true, Parent: "b"},
	}
	got := decisions(retention.Apply(bs, retention.Policy{KeepLast: 1}, now, time.UTC))
	want := map[string]string{
		"a":    "chain broken: parent b is not older than its child",
		"b":    "chain broken: ancestor b is not older than its child",
		"self": "chain broken: parent self is not older than its child",
		"same": "chain broken: parent twin is not older than its child",
		"late": "chain broken: ancestor b is not older than its child",
	}
	for id, w := range want {
		if d := got[id]; d.Reasons[0] != w {
			t.Errorf("%s: %q, want %q first", id, d.Reasons, w)
		}
	}
	if d := got["twin"]; !d.Keep || d.Reasons[0] != retention.ReasonNewest {
		t.Errorf("twin: %+v, want kept as the newest restorable backup", d)
	}
	if d := got["full"]; !d.Keep || !slices.Equal(d.Reasons, []string{"parent of kept twin (incremental)"}) {
		t.Errorf("full: %+v, want kept as twin's parent", d)
	}
}

// A backup dated in the future is kept, and so is what it builds on. An
// increment on an incomplete folder is broken, and goes once it is older
// than what the policy keeps; its incomplete parent is not kept for it.
func TestFutureIncrementKeepsItsParent(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	bs := []retention.Backup{
		{ID: "full", Time: now.Add(-90 * 24 * time.Hour), Complete: true},
		{ID: "mid", Time: now.Add(-60 * 24 * time.Hour), Complete: true, Parent: "full"},
		{ID: "future", Time: now.Add(2 * time.Hour), Complete: true, Parent: "mid"},
		{ID: "dead", Time: now.Add(-30 * 24 * time.Hour)},
		{ID: "orphan", Time: now.Add(-2 * time.Hour), Complete: true, Parent: "dead"},
		{ID: "new", Time: now.Add(-1 * time.Hour), Complete: true},
	}
	got := decisions(retention.Apply(bs, retention.Policy{KeepLast: 1}, now, time.UTC))
	for _, id := range []string{"full", "mid", "future", "new"} {
		if !got[id].Keep {
			t.Errorf("%s removed: %q", id, got[id].Reasons)
		}
	}
	if d := got["mid"]; !slices.Equal(d.Reasons, []string{"parent of kept future (incremental)"}) {
		t.Errorf("mid: %q, want kept as the future backup's parent", d.Reasons)
	}
	if d := got["dead"]; d.Keep {
		t.Errorf("dead: incomplete past its grace kept: %q", d.Reasons)
	}
	want := []string{"chain broken: parent dead is incomplete or damaged", retention.ReasonBrokenOlder}
	if d := got["orphan"]; d.Keep || !slices.Equal(d.Reasons, want) {
		t.Errorf("orphan: %+v, want removed: %q", d, want)
	}
}

func TestNilLocationIsLocal(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	bs := randomHistory(rand.New(rand.NewPCG(1, 2)), now)
	p := retention.Policy{KeepDaily: 5, KeepWeekly: 3}
	if got, want := retention.Apply(bs, p, now, nil), retention.Apply(bs, p, now, time.Local); !reflect.DeepEqual(got, want) {
		t.Error("Apply with a nil location differs from Apply with time.Local")
	}
}

func TestEmpty(t *testing.T) {
	if got := retention.Apply(nil, combined, time.Now(), time.UTC); len(got) != 0 {
		t.Errorf("got %d decisions for no backups", len(got))
	}
}

// TestProperties checks, over random histories, policies, clocks and zones,
// what must hold whatever the policy: one decision per input, newest first,
// every decision explained, the newest restorable backup kept and no other
// called the newest, the complete parent of every kept backup kept, stale
// incomplete folders removed, the result independent of input order, and
// keeping monotonic in every count.
func TestProperties(t *testing.T) {
	var locs []*time.Location
	for _, z := range []string{"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"} {
		loc, err := time.LoadLocation(z)
		if err != nil {
			t.Fatal(err)
		}
		locs = append(locs, loc)
	}
	const seed = 20261125
	r := rand.New(rand.NewPCG(seed, 0))
	for i := range 3000 {
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(3 * 365 * 24 * time.Hour))))
		bs := randomHistory(r, now)
		p := randomPolicy(r)
		loc := locs[r.IntN(len(locs))]
		where := fmt.Sprintf("seed %d case %d: policy %s, zone %s, now %s, %d backups", seed, i, p, loc, now.Format(time.RFC3339), len(bs))
		orig := slices.Clone(bs)
		got := retention.Apply(bs, p, now, loc)
		if !reflect.DeepEqual(bs, orig) {
			t.Fatalf("%s: Apply modified its input", where)
		}
		checkDecisions(t, where, bs, got, p, now)

		shuffled := slices.Clone(bs)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := retention.Apply(shuffled, p, now, loc); !reflect.DeepEqual(got, again) {
			t.Fatalf("%s: result depends on input order", where)
		}

		if !p.IsZero() {
			more := p
			switch r.IntN(5) {
			case 0:
				more.KeepDays += 1 + r.IntN(5)
			case 1:
				more.KeepLast += 1 + r.IntN(5)
			case 2:
				more.KeepDaily += 1 + r.IntN(5)
			case 3:
				more.KeepWeekly += 1 + r.IntN(5)
			default:
				more.KeepMonthly += 1 + r.IntN(5)
			}
			bigger := retention.Apply(bs, more, now, loc)
			for j := range got {
				if got[j].Keep && !bigger[j].Keep {
					t.Fatalf("%s: %s kept by %s but not by %s", where, got[j].Backup.ID, p, more)
				}
			}
		}
	}
}

func checkDecisions(t *testing.T, where string, in []retention.Backup, got []retention.Decision, p retention.Policy, now time.Time) {
	t.Helper()
	if len(got) != len(in) {
		t.Fatalf("%s: %d decisions for %d backups", where, len(got), len(in))
	}
	count := map[retention.Backup]int{}
	for _, b := range in {
		count[b]++
	}
	byID := map[string]retention.Backup{}
	for _, b := range in {
		if old, ok := byID[b.ID]; !ok || (b.Complete && !old.Complete) {
			byID[b.ID] = b
		}
	}
	var restorable func(b retention.Backup, depth int) bool
	restorable = func(b retention.Backup, depth int) bool {
		if !b.Complete || depth > len(in) {
			return false
		}
		if b.Parent == "" {
			return true
		}
		p, ok := byID[b.Parent]
		return ok && !b.ParentChanged && p.Time.Before(b.Time) && restorable(p, depth+1)
	}
	var newest time.Time
	hasComplete := false
	for _, b := range in {
		if restorable(b, 0) && !b.Time.After(now) && (!hasComplete || b.Time.After(newest)) {
			newest, hasComplete = b.Time, true
		}
	}
	kept := map[string]bool{}
	for _, d := range got {
		if d.Keep {
			kept[d.Backup.ID] = true
		}
	}
	grace := p.IncompleteGrace
	if grace == 0 {
		grace = retention.DefaultIncompleteGrace
	}
	newestKept := false
	for i, d := range got {
		count[d.Backup]--
		if i > 0 && d.Backup.Time.After(got[i-1].Backup.Time) {
			t.Fatalf("%s: not newest first at %d: %s after %s", where, i, d.Backup.ID, got[i-1].Backup.ID)
		}
		if len(d.Reasons) == 0 {
			t.Fatalf("%s: %s has no reason", where, d.Backup.ID)
		}
		b := d.Backup
		if p, ok := byID[b.Parent]; d.Keep && ok && p.Complete && p.Time.Before(b.Time) && !kept[p.ID] {
			t.Fatalf("%s: %s kept (%q) but its parent %s removed", where, b.ID, d.Reasons, p.ID)
		}
		if slices.Contains(d.Reasons, retention.ReasonNewest) && !(restorable(b, 0) && b.Time.Equal(newest)) {
			t.Fatalf("%s: %s is called the newest restorable backup: %q", where, b.ID, d.Reasons)
		}
		switch {
		case restorable(b, 0) && b.Time.Equal(newest) && d.Keep:
			newestKept = true
		case b.Time.After(now) && !d.Keep:
			t.Fatalf("%s: %s is dated in the future and removed", where, b.ID)
		case !b.Complete && now.Sub(b.Time) >= grace && d.Keep:
			t.Fatalf("%s: incomplete %s is past its grace and kept: %q", where, b.ID, d.Reasons)
		case b.Complete && p.IsZero() && !d.Keep:
			t.Fatalf("%s: complete %s removed without a policy", where, b.ID)
		}
	}
	for b, n := range count {
		if n != 0 {
			t.Fatalf("%s: %s appears %d times too often in the result", where, b.ID, -n)
		}
	}
	if hasComplete && !newestKept {
		t.Fatalf("%s: the newest restorable backup (%s) is not kept", where, newest.Format(time.RFC3339))
	}
}

// randomHistory is 0..80 backups in the year before now, clustered so that
// days often hold several, with some exact duplicates of time, incomplete
// folders and a few dated after now.
func randomHistory(r *rand.Rand, now time.Time) []retention.Backup {
	n := r.IntN(81)
	bs := make([]retention.Backup, 0, n)
	for range n {
		var t time.Time
		switch {
		case len(bs) > 0 && r.IntN(10) == 0:
			t = bs[r.IntN(len(bs))].Time // same instant, another folder
		case r.IntN(30) == 0:
			t = now.Add(time.Duration(r.Int64N(int64(72 * time.Hour)))) // clock skew
		case r.IntN(3) == 0:
			t = now.Add(-time.Duration(r.Int64N(int64(72 * time.Hour))))
		default:
			t = now.Add(-time.Duration(r.Int64N(int64(365 * 24 * time.Hour))))
		}
		t = t.Truncate(time.Second)
		parent := ""
		switch k := r.IntN(10); {
		case k < 5 && len(bs) > 0:
			// Often older, sometimes newer: Apply must cope.
			parent = bs[r.IntN(len(bs))].ID
		case k == 5:
			parent = "vg0/root/gone"
		}
		changed := parent != "" && r.IntN(8) == 0
		bs = append(bs, retention.Backup{
			ID:            fmt.Sprintf("vg0/root/%s-%d", t.UTC().Format("2006-01-02T150405Z"), len(bs)),
			Time:          t,
			Complete:      r.IntN(5) != 0,
			Parent:        parent,
			ParentChanged: changed,
		})
	}
	return bs
}

func randomPolicy(r *rand.Rand) retention.Policy {
	if r.IntN(8) == 0 {
		return retention.Policy{}
	}
	pick := func(max int) int {
		if r.IntN(2) == 0 {
			return 0
		}
		return r.IntN(max + 1)
	}
	p := retention.Policy{KeepDays: pick(60), KeepLast: pick(10), KeepDaily: pick(14), KeepWeekly: pick(8), KeepMonthly: pick(12)}
	if r.IntN(3) == 0 {
		p.IncompleteGrace = time.Duration(1+r.IntN(72)) * time.Hour
	}
	return p
}
