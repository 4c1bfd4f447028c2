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
// every decision explained, the newest complete backup kept, stale
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
	var newest time.Time
	hasComplete := false
	for _, b := range in {
		if b.Complete && !b.Time.After(now) && (!hasComplete || b.Time.After(newest)) {
			newest, hasComplete = b.Time, true
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
		switch {
		case b.Complete && b.Time.Equal(newest) && d.Keep:
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
		t.Fatalf("%s: the newest complete backup (%s) is not kept", where, newest.Format(time.RFC3339))
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
		bs = append(bs, retention.Backup{
			ID:       fmt.Sprintf("vg0/root/%s-%d", t.UTC().Format("2006-01-02T150405Z"), len(bs)),
			Time:     t,
			Complete: r.IntN(5) != 0,
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
