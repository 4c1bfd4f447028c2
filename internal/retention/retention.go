// Package retention decides which backups of one volume to keep. It is pure:
// no I/O, no clock; the caller passes the backups, the policy, the current
// time and the operator's time zone, and gets back one Decision per backup.
//
// The keep rules combine like restic's `forget`: a backup is kept if any rule
// wants it, and each Decision lists every rule that did. On top of the rules:
//
//   - The newest complete backup is always kept, whatever the policy says,
//     even if it is older than KeepDays: a volume never loses its last
//     restorable backup to pruning.
//   - A policy with no keep rule (IsZero) keeps every complete backup, so
//     pruning does nothing until retention is configured. IncompleteGrace is
//     not a keep rule: incomplete folders are still removed after the grace.
//   - Incomplete backups (a folder without manifest.json) never count toward
//     a keep rule and are never "the newest". They are kept while younger
//     than IncompleteGrace (24h when unset), since a run may still be writing
//     them, and removed once their age reaches it.
//   - Backups dated after now (clock skew between hosts, or a wrong clock
//     here) are kept and take no part in the rules: they neither use up a
//     KeepLast/KeepDaily/... slot nor count as the newest backup, so a skewed
//     clock can only make pruning keep more, never less.
//
// KeepDays is a duration, not a count of calendar days: a backup is kept
// while now.Sub(t) < KeepDays*24h. This is what the classic cron script's
// `find -mtime +N -delete` did and what restic's --keep-within does; across a
// DST change a "day" is still 24 hours.
//
// KeepDaily, KeepWeekly and KeepMonthly count buckets that hold backups, not
// calendar periods: "daily 7" keeps the newest backup of each of the last 7
// days that have one, however far back they reach. Buckets are taken in the
// operator's time zone (loc), so a backup at 00:30 local time belongs to that
// local day even though its UTC timestamp (the folder name) is on the day
// before, and DST changes and month ends fall where the operator expects.
// Weeks are ISO 8601 weeks (Monday first, week 1 holds the year's first
// Thursday), so 2026-W53 runs from 2026-12-28 to 2027-01-03.
package retention

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// DefaultIncompleteGrace is the IncompleteGrace used when the policy leaves it 0.
const DefaultIncompleteGrace = 24 * time.Hour

// maxDays keeps KeepDays*24h within time.Duration (about 292 years).
const maxDays = int(1<<63-1) / int(24*time.Hour)

// Policy says which backups of a volume to keep. The zero value keeps every
// complete backup. Field names in messages are the config keys.
type Policy struct {
	KeepDays    int // keep every backup younger than N*24h (the classic backups_retention_days); 0 = off
	KeepLast    int // keep the N newest
	KeepDaily   int // keep the newest backup of each of the last N local days that have backups
	KeepWeekly  int // ... of each of the last N ISO weeks that have backups
	KeepMonthly int // ... of each of the last N months that have backups

	// IncompleteGrace is how long a folder without manifest.json is left
	// alone before it is removed; 0 means DefaultIncompleteGrace.
	IncompleteGrace time.Duration
}

// IsZero reports whether the policy sets no keep rule.
func (p Policy) IsZero() bool {
	return p.KeepDays == 0 && p.KeepLast == 0 && p.KeepDaily == 0 && p.KeepWeekly == 0 && p.KeepMonthly == 0
}

// Validate reports values that make no sense, all of them at once.
func (p Policy) Validate() error {
	var errs []error
	for _, f := range p.fields() {
		if f.n < 0 {
			errs = append(errs, fmt.Errorf("%s %d: must not be negative", f.key, f.n))
		}
	}
	if p.KeepDays > maxDays {
		errs = append(errs, fmt.Errorf("keep_days %d: must be at most %d", p.KeepDays, maxDays))
	}
	if p.IncompleteGrace < 0 {
		errs = append(errs, fmt.Errorf("incomplete_grace %s: must not be negative", p.IncompleteGrace))
	}
	return errors.Join(errs...)
}

// String describes the policy for reports and logs, e.g.
// "keep_days=7 keep_daily=7 incomplete_grace=24h", or "none (keep everything)
// incomplete_grace=24h" when no keep rule is set.
func (p Policy) String() string {
	var parts []string
	for _, f := range p.fields() {
		if f.n != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", f.key, f.n))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "none (keep everything)")
	}
	parts = append(parts, "incomplete_grace="+shortDuration(p.grace()))
	return strings.Join(parts, " ")
}

func (p Policy) fields() []struct {
	key string
	n   int
} {
	return []struct {
		key string
		n   int
	}{
		{"keep_days", p.KeepDays},
		{"keep_last", p.KeepLast},
		{"keep_daily", p.KeepDaily},
		{"keep_weekly", p.KeepWeekly},
		{"keep_monthly", p.KeepMonthly},
	}
}

func (p Policy) grace() time.Duration {
	if p.IncompleteGrace == 0 {
		return DefaultIncompleteGrace
	}
	return p.IncompleteGrace
}

// Backup is one backup folder of a volume.
type Backup struct {
	ID       string    // e.g. "vg0/root/2026-11-25T013000Z"
	Time     time.Time // when it was taken (the folder's timestamp)
	Complete bool      // false: the folder has no manifest.json
}

// Decision is what to do with one backup and why.
type Decision struct {
	Backup  Backup
	Keep    bool
	Reasons []string // never empty; every rule that keeps the backup, or why it goes
}

// Reasons that are not tied to a bucket or a count.
const (
	ReasonNewest   = "newest backup (always kept)"
	ReasonNoPolicy = "no retention policy set"
	ReasonFuture   = "dated in the future (clock skew?)"
	ReasonNoRule   = "matches no keep rule"
)

// Apply decides, for the backups of ONE volume, which to keep. The result
// holds one Decision per input, newest first (ties broken by ID, then
// complete before incomplete), and does not depend on the input's order.
// backups is not modified. loc is the time zone for day, week and month
// buckets; nil means time.Local.
//
// Callers should Validate the policy first. Apply cannot return an error, so
// given an invalid policy it keeps every backup and says why.
func Apply(backups []Backup, p Policy, now time.Time, loc *time.Location) []Decision {
	if loc == nil {
		loc = time.Local
	}
	ds := make([]Decision, len(backups))
	for i, b := range backups {
		ds[i].Backup = b
	}
	slices.SortStableFunc(ds, func(a, b Decision) int {
		if c := b.Backup.Time.Compare(a.Backup.Time); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Backup.ID, a.Backup.ID); c != 0 {
			return c
		}
		switch {
		case a.Backup.Complete == b.Backup.Complete:
			return 0
		case a.Backup.Complete:
			return -1
		default:
			return 1
		}
	})

	if err := p.Validate(); err != nil {
		reason := "invalid retention policy: " + strings.ReplaceAll(err.Error(), "\n", "; ")
		for i := range ds {
			ds[i].Keep, ds[i].Reasons = true, []string{reason}
		}
		return ds
	}

	grace := p.grace()
	rules := p.rules(loc)
	newestSeen := false
	for i := range ds {
		d := &ds[i]
		b := d.Backup
		future := b.Time.After(now)
		switch {
		case !b.Complete && future:
			d.keep("incomplete, " + ReasonFuture)
		case !b.Complete && now.Sub(b.Time) < grace:
			d.keep("incomplete, younger than " + shortDuration(grace) + " grace")
		case !b.Complete:
			d.Reasons = []string{"incomplete, older than " + shortDuration(grace) + " grace"}
		case future:
			d.keep(ReasonFuture)
		default:
			if !newestSeen {
				newestSeen = true
				d.keep(ReasonNewest)
			}
			if p.IsZero() {
				d.keep(ReasonNoPolicy)
			}
			if p.KeepDays > 0 && now.Sub(b.Time) < time.Duration(p.KeepDays)*24*time.Hour {
				d.keep(withinDays(p.KeepDays))
			}
			for _, r := range rules {
				if r.left == 0 {
					continue
				}
				if k := r.bucket(b.Time); !r.used || k != r.last {
					r.last, r.used = k, true
					r.left--
					d.keep(r.reason(k))
				}
			}
			if !d.Keep {
				d.Reasons = []string{ReasonNoRule}
			}
		}
	}
	return ds
}

func (d *Decision) keep(reason string) {
	d.Keep = true
	d.Reasons = append(d.Reasons, reason)
}

// rule is one count-based keep rule while Apply walks the backups newest
// first: it keeps a backup when its bucket differs from the last one it kept.
type rule struct {
	left   int
	bucket func(time.Time) string
	reason func(bucket string) string
	last   string
	used   bool
}

func (p Policy) rules(loc *time.Location) []*rule {
	n := 0
	prefix := func(name string) func(string) string {
		return func(bucket string) string { return name + " " + bucket }
	}
	return []*rule{
		{
			left: p.KeepLast,
			// Every backup is a bucket of its own.
			bucket: func(time.Time) string { n++; return fmt.Sprint(n) },
			reason: func(string) string { return fmt.Sprintf("last %d", p.KeepLast) },
		},
		{
			left:   p.KeepDaily,
			bucket: func(t time.Time) string { return t.In(loc).Format("2006-01-02") },
			reason: prefix("daily"),
		},
		{
			left: p.KeepWeekly,
			bucket: func(t time.Time) string {
				y, w := t.In(loc).ISOWeek()
				return fmt.Sprintf("%04d-W%02d", y, w)
			},
			reason: prefix("weekly"),
		},
		{
			left:   p.KeepMonthly,
			bucket: func(t time.Time) string { return t.In(loc).Format("2006-01") },
			reason: prefix("monthly"),
		},
	}
}

func withinDays(n int) string {
	if n == 1 {
		return "within 1 day"
	}
	return fmt.Sprintf("within %d days", n)
}

// shortDuration prints 24h rather than 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
