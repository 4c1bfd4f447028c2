package retention_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
	_ "time/tzdata" // the cases need Europe/Berlin and America/New_York everywhere

	"voltar/internal/retention"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current results")

// A golden case is a generated history, a policy and a moment; its golden file
// is the table of every decision, for a human to read and check.
type goldenCase struct {
	name, title string
	zone        string
	now         func(*time.Location) time.Time
	history     func(*time.Location) []retention.Backup
	policy      retention.Policy
}

var combined = retention.Policy{KeepLast: 3, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6}

var dstPolicy = retention.Policy{KeepDays: 2, KeepDaily: 5, KeepWeekly: 3}

var goldenCases = []goldenCase{
	{
		name: "keep_days", title: "keep_days alone, the classic backups_retention_days",
		zone: "Europe/Berlin", now: mainNow, history: mainHistory,
		policy: retention.Policy{KeepDays: 14},
	},
	{
		name: "combined", title: "keep_last 3, keep_daily 7, keep_weekly 4, keep_monthly 6",
		zone: "Europe/Berlin", now: mainNow, history: mainHistory,
		policy: combined,
	},
	{
		name: "zero_policy", title: "no keep rule: every complete backup stays, stale incomplete folders go",
		zone: "Europe/Berlin", now: mainNow, history: mainHistory,
	},
	{
		name: "all_incomplete", title: "only failed or running backups: none counts, the grace decides",
		zone: "Europe/Berlin", now: mainNow,
		history: func(loc *time.Location) []retention.Backup {
			var h history
			for _, t := range []time.Time{
				at(loc, 2026, 11, 25, 8, 30), at(loc, 2026, 11, 24, 9, 0), at(loc, 2026, 11, 24, 8, 59),
				at(loc, 2026, 11, 23, 1, 30), at(loc, 2026, 11, 1, 1, 30),
			} {
				h.add(t, false)
			}
			return h
		},
		policy: combined,
	},
	{
		name: "newest_older_than_keep_days", title: "last backup 30 days ago, keep_days 7: the newest complete one stays",
		zone: "Europe/Berlin", now: mainNow,
		history: func(loc *time.Location) []retention.Backup {
			var h history
			h.nightly(at(loc, 2026, 9, 27, 1, 30), at(loc, 2026, 10, 26, 1, 30), nil)
			h.add(at(loc, 2026, 10, 27, 1, 30), false)
			h.add(at(loc, 2026, 11, 25, 1, 30), false)
			return h
		},
		policy: retention.Policy{KeepDays: 7},
	},
	{
		name: "month_ends_leap_2028", title: "Jan 31 -> Feb 1 and Feb 28 -> 29 -> Mar 1 in a leap year",
		zone: "Europe/Berlin",
		now:  func(loc *time.Location) time.Time { return at(loc, 2028, 3, 3, 12, 0) },
		history: func(loc *time.Location) []retention.Backup {
			var h history
			h.nightly(at(loc, 2028, 1, 20, 1, 30), at(loc, 2028, 3, 3, 1, 30), nil)
			for _, t := range []time.Time{at(loc, 2028, 1, 31, 23, 45), at(loc, 2028, 2, 28, 23, 45), at(loc, 2028, 2, 29, 23, 45)} {
				h.add(t, true)
			}
			return h
		},
		policy: retention.Policy{KeepDaily: 3, KeepMonthly: 3},
	},
	{
		name: "month_ends_new_york", title: "nightly at 03:30Z: folder names say the 1st, New York says the day before",
		zone: "America/New_York",
		now:  func(*time.Location) time.Time { return time.Date(2028, 3, 5, 15, 0, 0, 0, time.UTC) },
		history: func(*time.Location) []retention.Backup {
			var h history
			h.nightly(time.Date(2028, 1, 25, 3, 30, 0, 0, time.UTC), time.Date(2028, 3, 5, 3, 30, 0, 0, time.UTC), nil)
			return h
		},
		policy: retention.Policy{KeepDaily: 2, KeepMonthly: 3},
	},
	dstCase("dst_berlin_spring", "Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST",
		"Europe/Berlin", 2026, 3, 29, time.Date(2026, 3, 28, 22, 30, 0, 0, time.UTC), time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)),
	dstCase("dst_berlin_fall", "Europe/Berlin: 2026-10-25 03:00 CEST -> 02:00 CET, 02:30 happens twice",
		"Europe/Berlin", 2026, 10, 25, time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC)),
	dstCase("dst_new_york_spring", "America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT",
		"America/New_York", 2026, 3, 8, time.Date(2026, 3, 8, 4, 30, 0, 0, time.UTC), time.Date(2026, 3, 8, 7, 30, 0, 0, time.UTC)),
	dstCase("dst_new_york_fall", "America/New_York: 2026-11-01 02:00 EDT -> 01:00 EST, 01:30 happens twice",
		"America/New_York", 2026, 11, 1, time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC), time.Date(2026, 11, 1, 6, 30, 0, 0, time.UTC)),
	{
		name: "keep_days_dst_24h", title: "keep_days 1 across the fall-back: a day is 24h, so Sun 01:45 CEST (exactly 24h old) goes; a wall-clock cutoff (Sun 00:45) would keep it",
		zone: "Europe/Berlin",
		now:  func(loc *time.Location) time.Time { return at(loc, 2026, 10, 26, 0, 45) },
		history: func(*time.Location) []retention.Backup {
			var h history
			for t := time.Date(2026, 10, 24, 20, 15, 0, 0, time.UTC); t.Before(time.Date(2026, 10, 25, 2, 0, 0, 0, time.UTC)); t = t.Add(30 * time.Minute) {
				h.add(t, true)
			}
			h.add(time.Date(2026, 10, 25, 23, 30, 0, 0, time.UTC), true)
			return h
		},
		policy: retention.Policy{KeepDays: 1},
	},
	{
		name: "iso_week_53", title: "2026-W53 runs Mon 2026-12-28 to Sun 2027-01-03; no backups in 2026-10",
		zone: "Europe/Berlin",
		now:  func(loc *time.Location) time.Time { return at(loc, 2027, 1, 15, 12, 0) },
		history: func(loc *time.Location) []retention.Backup {
			var h history
			h.add(at(loc, 2026, 9, 15, 1, 30), true)
			h.add(at(loc, 2026, 11, 15, 1, 30), true)
			h.nightly(at(loc, 2026, 12, 10, 1, 30), at(loc, 2027, 1, 15, 1, 30), nil)
			return h
		},
		policy: retention.Policy{KeepWeekly: 5, KeepMonthly: 4},
	},
	{
		name: "clock_skew", title: "backups dated after now are kept and use up no rule",
		zone: "Europe/Berlin", now: mainNow,
		history: func(loc *time.Location) []retention.Backup {
			var h history
			h.nightly(at(loc, 2026, 11, 16, 1, 30), at(loc, 2026, 11, 25, 1, 30), nil)
			h.add(at(loc, 2026, 11, 25, 10, 0), true)
			h.add(at(loc, 2026, 11, 28, 1, 30), true)
			h.add(at(loc, 2026, 11, 26, 1, 30), false)
			return h
		},
		policy: retention.Policy{KeepLast: 2, KeepDaily: 4},
	},
	{
		name: "chains_daily_weekly_monthly", title: "weekly fulls on Sunday, nightly increments: a kept increment keeps its chain back to the full",
		zone: "Europe/Berlin", now: mainNow,
		history: func(loc *time.Location) []retention.Backup {
			var h history
			h.chained(at(loc, 2026, 10, 4, 1, 30), at(loc, 2026, 11, 25, 1, 30))
			return h
		},
		policy: retention.Policy{KeepDaily: 7, KeepWeekly: 3, KeepMonthly: 2},
	},
	{
		name: "chains_keep_last", title: "keep_last 2 keeps Wed and Tue; Mon and Sunday's full stay for them",
		zone: "Europe/Berlin", now: mainNow,
		history: func(loc *time.Location) []retention.Backup {
			var h history
			h.chained(at(loc, 2026, 11, 8, 1, 30), at(loc, 2026, 11, 25, 1, 30))
			return h
		},
		policy: retention.Policy{KeepLast: 2},
	},
	{
		name: "chain_full_missing", title: "the fulls of Sun 11-01 and Sun 11-22 were deleted by hand: their increments are broken and count for nothing",
		zone: "Europe/Berlin", now: mainNow,
		history: func(loc *time.Location) []retention.Backup {
			var h history
			h.chained(at(loc, 2026, 10, 25, 1, 30), at(loc, 2026, 11, 25, 1, 30))
			h.drop(at(loc, 2026, 11, 1, 1, 30))
			h.drop(at(loc, 2026, 11, 22, 1, 30))
			return h
		},
		policy: retention.Policy{KeepLast: 3, KeepWeekly: 2},
	},
	{
		name: "chain_damaged_link", title: "Wed 11-18 (incr 3) lost its manifest: Thu to Sat behind it are broken and use no daily slot (prune itself keeps a damaged folder)",
		zone: "Europe/Berlin", now: mainNow,
		history: func(loc *time.Location) []retention.Backup {
			var h history
			h.chained(at(loc, 2026, 11, 8, 1, 30), at(loc, 2026, 11, 25, 1, 30))
			h.incomplete(at(loc, 2026, 11, 18, 1, 30))
			return h
		},
		policy: retention.Policy{KeepDaily: 7},
	},
	{
		name: "chain_newest_broken", title: "Tue 11-24 was deleted by hand: Wed 11-25 cannot be restored, so the newest restorable backup is Mon's",
		zone: "Europe/Berlin", now: mainNow,
		history: func(loc *time.Location) []retention.Backup {
			var h history
			h.chained(at(loc, 2026, 11, 15, 1, 30), at(loc, 2026, 11, 25, 1, 30))
			h.drop(at(loc, 2026, 11, 24, 1, 30))
			return h
		},
		policy: retention.Policy{KeepDays: 1},
	},
}

func TestGolden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			loc, err := time.LoadLocation(c.zone)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.policy.Validate(); err != nil {
				t.Fatal(err)
			}
			now := c.now(loc)
			got := render(c, loc, now, retention.Apply(c.history(loc), c.policy, now, loc))
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v\nhint: go test ./internal/retention -update", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the result (hint: go test ./internal/retention -update, then review the diff)\n%s",
					path, firstDiff(got, string(want)))
			}
		})
	}
}

// mainHistory is four months of nightly 01:30 backups ending today, with some
// nights missing, some days with a second (manual) backup, a failed night and
// a few leftover or running folders without a manifest.
func mainHistory(loc *time.Location) []retention.Backup {
	var h history
	h.nightly(at(loc, 2026, 7, 29, 1, 30), at(loc, 2026, 11, 25, 1, 30), func(i int) bool { return i%17 == 8 })
	for i := 3; i < 120; i += 11 {
		h.add(at(loc, 2026, 7, 29+i, 13, 10), true)
	}
	h.add(at(loc, 2026, 11, 25, 8, 30), false) // running now
	h.add(at(loc, 2026, 11, 24, 22, 0), false) // a dead run 11h ago, still in its grace
	h.add(at(loc, 2026, 11, 23, 1, 45), false) // failed the night the 01:30 one worked
	h.add(at(loc, 2026, 9, 10, 1, 45), false)
	// The night of 2026-11-22 failed outright: only its incomplete folder remains.
	for i, b := range h {
		if b.Time.Equal(at(loc, 2026, 11, 22, 1, 30)) {
			h[i].Complete = false
		}
	}
	return h
}

func mainNow(loc *time.Location) time.Time { return at(loc, 2026, 11, 25, 9, 0) }

// dstCase is nightly 00:30 local backups for two weeks around a DST change on
// day y-m-d (a Sunday), plus two extra backups given in UTC that show where
// the change falls, judged three days later at 09:00.
func dstCase(name, title, zone string, y int, m time.Month, d int, extra ...time.Time) goldenCase {
	return goldenCase{
		name: name, title: title, zone: zone,
		now: func(loc *time.Location) time.Time { return at(loc, y, m, d+3, 9, 0) },
		history: func(loc *time.Location) []retention.Backup {
			var h history
			h.nightly(at(loc, y, m, d-11, 0, 30), at(loc, y, m, d+3, 0, 30), nil)
			for _, t := range extra {
				h.add(t, true)
			}
			return h
		},
		policy: dstPolicy,
	}
}

type history []retention.Backup

// chained adds a backup at first's wall-clock time on every local day from
// first to last: a full on Sundays (and on the first day), otherwise an
// increment on the day before's.
func (h *history) chained(first, last time.Time) {
	loc := first.Location()
	parent := ""
	for i := 0; ; i++ {
		t := time.Date(first.Year(), first.Month(), first.Day()+i, first.Hour(), first.Minute(), 0, 0, loc)
		if t.After(last) {
			return
		}
		if t.Weekday() == time.Sunday {
			parent = ""
		}
		h.add(t, true)
		(*h)[len(*h)-1].Parent = parent
		parent = (*h)[len(*h)-1].ID
	}
}

// drop removes the backup taken at t, as a person deleting its folder would.
func (h *history) drop(t time.Time) {
	*h = slices.DeleteFunc(*h, func(b retention.Backup) bool { return b.Time.Equal(t) })
}

// incomplete turns the backup taken at t into a folder without a usable
// manifest (which also loses its parent: the manifest said it).
func (h *history) incomplete(t time.Time) {
	for i, b := range *h {
		if b.Time.Equal(t) {
			(*h)[i].Complete, (*h)[i].Parent = false, ""
		}
	}
}

func (h *history) add(t time.Time, complete bool) {
	*h = append(*h, retention.Backup{ID: t.UTC().Format("2006-01-02T150405Z"), Time: t, Complete: complete})
}

// nightly adds a complete backup at first's wall-clock time on every local
// day from first to last, except the days (counted from 0) skip returns true for.
func (h *history) nightly(first, last time.Time, skip func(day int) bool) {
	loc := first.Location()
	for i := 0; ; i++ {
		t := time.Date(first.Year(), first.Month(), first.Day()+i, first.Hour(), first.Minute(), 0, 0, loc)
		if t.After(last) {
			return
		}
		if skip == nil || !skip(i) {
			h.add(t, true)
		}
	}
}

func at(loc *time.Location, y int, m time.Month, d, hh, mm int) time.Time {
	return time.Date(y, m, d, hh, mm, 0, 0, loc)
}

func render(c goldenCase, loc *time.Location, now time.Time, ds []retention.Decision) string {
	var b strings.Builder
	kept := 0
	for _, d := range ds {
		if d.Keep {
			kept++
		}
	}
	fmt.Fprintf(&b, "# %s\n", c.title)
	fmt.Fprintf(&b, "policy: %s\n", c.policy)
	fmt.Fprintf(&b, "zone:   %s\n", loc)
	fmt.Fprintf(&b, "now:    %s (%s)\n", now.In(loc).Format("Mon 2006-01-02 15:04 MST"), now.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "result: %d backups, %d kept, %d removed\n\n", len(ds), kept, len(ds)-kept)
	chains := slices.ContainsFunc(ds, func(d retention.Decision) bool { return d.Backup.Parent != "" })
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	if chains {
		fmt.Fprint(tw, "ID (UTC)\tLOCAL TIME\tISO WEEK\tSTATE\tCHAIN\tDECISION\tREASONS\n")
	} else {
		fmt.Fprintln(tw, "ID (UTC)\tLOCAL TIME\tISO WEEK\tSTATE\tDECISION\tREASONS")
	}
	for _, d := range ds {
		local := d.Backup.Time.In(loc)
		y, w := local.ISOWeek()
		state, decision := "complete", "remove"
		if !d.Backup.Complete {
			state = "incomplete"
		}
		if d.Keep {
			decision = "keep"
		}
		if chains {
			switch {
			case d.Backup.Parent != "":
				state += "\ton " + d.Backup.Parent
			case d.Backup.Complete:
				state += "\tfull"
			default:
				state += "\t-"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%04d-W%02d\t%s\t%s\t%s\n", d.Backup.ID, local.Format("Mon 2006-01-02 15:04 MST"),
			y, w, state, decision, strings.Join(d.Reasons, "; "))
	}
	tw.Flush()
	return b.String()
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, gl, wl)
		}
	}
	return "(no line differs)"
}
