// Package retention decides which backups of one volume to keep. It is pure:
// no I/O, no clock; the caller passes the backups, the policy, the current
// time and the operator's time zone, and gets back one Decision per backup.
//
// The keep rules combine like restic's `forget`: a backup is kept if any rule
// wants it, and each Decision lists every rule that did. On top of the rules:
//
//   - Chains are kept whole. An incremental backup names its parent
//     (Backup.Parent), and restoring it needs every ancestor up to its full
//     backup. Once the rules have decided, every kept backup keeps its
//     parent, transitively: a backup is removed only if no kept backup
//     depends on it, and each parent's Decision names the kept backup that
//     needs it ("parent of kept vg0/root/... (incremental)").
//   - The newest restorable backup is always kept, whatever the policy says,
//     even if it is older than KeepDays: a volume never loses its last
//     restorable backup to pruning, and with it its whole chain. Restorable
//     means complete with every ancestor present and complete.
//   - A policy with no keep rule (IsZero) keeps every complete backup, so
//     pruning does nothing until retention is configured. IncompleteGrace is
//     not a keep rule: incomplete folders are still removed after the grace.
//   - Incomplete backups (a folder without manifest.json) never count toward
//     a keep rule and are never "the newest". They are kept while younger
//     than IncompleteGrace (24h when unset), since a run may still be writing
//     them, and removed once their age reaches it. A kept increment does not
//     keep an incomplete parent: it cannot be restored from it anyway.
//   - A complete increment whose chain is broken (an ancestor is missing,
//     incomplete, replaced since its child was made (ParentChanged), or not
//     older than its child, which also ends any cycle) cannot be restored. It is never the newest, never counts toward a
//     keep rule (so it uses up no KeepLast/KeepDaily/... slot meant for a
//     restorable backup), and its Decision says where the chain breaks
//     ("chain broken: parent X is missing"). It is evidence of what went
//     wrong, so it is not removed early either: it is kept while it is no
//     older than the oldest backup the rules (or the newest rule) keep,
//     always when the volume has no restorable backup at all, and with every
//     backup when the policy IsZero; beyond that it goes like any backup
//     the rules do not keep. A kept broken increment keeps the ancestors it
//     still has, like any kept backup.
//   - Backups dated after now (clock skew between hosts, or a wrong clock
//     here) are kept and take no part in the rules: they neither use up a
//     KeepLast/KeepDaily/... slot nor count as the newest backup, so a skewed
//     clock can only make pruning keep more, never less. Their ancestors are
//     kept like those of any kept backup.
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
	// Parent is the ID of the backup this one builds on (an incremental
	// backup's manifest chain.parent); "" for a full backup and for an
	// incomplete folder, whose manifest is not there to say.
	Parent string
	// ParentChanged: the parent's manifest.json is not the one this backup
	// was made on (its SHA-256 differs from the one the increment
	// recorded), so the chain breaks there even though the parent is
	// complete.
	ParentChanged bool
}

// Decision is what to do with one backup and why.
type Decision struct {
	Backup  Backup
	Keep    bool
	Reasons []string // never empty; every rule that keeps the backup, or why it goes
}

// Reasons that are not tied to a bucket, a count or another backup.
const (
	ReasonNewest   = "newest restorable backup (always kept)"
	ReasonNoPolicy = "no retention policy set"
	ReasonFuture   = "dated in the future (clock skew?)"
	ReasonNoRule   = "matches no keep rule"
	// A complete backup whose chain is broken is kept, or removed, by its
	// age against what the rules keep (see the package comment).
	ReasonBrokenKept      = "kept for inspection: not older than the oldest backup the policy keeps"
	ReasonBrokenNoBackup  = "kept for inspection: the volume has no restorable backup"
	ReasonBrokenOlder     = "older than every backup the policy keeps"
	reasonParentPrefix    = "parent of kept "
	reasonBrokenPrefix    = "chain broken: "
	reasonIncrementSuffix = " (incremental)"
)

// Apply decides, for the backups of ONE volume, which to keep. The result
// holds one Decision per input, newest first (ties broken by ID, then
// complete before incomplete, then by Parent), and does not depend on the
// input's order. backups is not modified. loc is the time zone for day,
// week and month buckets; nil means time.Local.
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
		case a.Backup.Complete && !b.Backup.Complete:
			return -1
		case !a.Backup.Complete && b.Backup.Complete:
			return 1
		}
		if c := cmp.Compare(a.Backup.Parent, b.Backup.Parent); c != 0 {
			return c
		}
		switch {
		case !a.Backup.ParentChanged && b.Backup.ParentChanged:
			return -1
		case a.Backup.ParentChanged && !b.Backup.ParentChanged:
			return 1
		}
		return 0
	})

	if err := p.Validate(); err != nil {
		reason := "invalid retention policy: " + strings.ReplaceAll(err.Error(), "\n", "; ")
		for i := range ds {
			ds[i].Keep, ds[i].Reasons = true, []string{reason}
		}
		return ds
	}

	parent, broken := chains(ds)
	grace := p.grace()
	rules := p.rules(loc)
	newestSeen := false
	var brokenLeft []int // complete, not future, chain broken: decided after the rules
	var oldestKept time.Time
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
			if broken[i] != "" {
				d.Reasons = append(d.Reasons, reasonBrokenPrefix+broken[i])
			}
		case broken[i] != "":
			brokenLeft = append(brokenLeft, i)
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
			if d.Keep {
				oldestKept = b.Time // newest first: the last one kept is the oldest
			} else {
				d.Reasons = []string{ReasonNoRule}
			}
		}
	}
	for _, i := range brokenLeft {
		d := &ds[i]
		d.Reasons = []string{reasonBrokenPrefix + broken[i]}
		switch {
		case p.IsZero():
			d.keep(ReasonNoPolicy)
		case !newestSeen:
			d.keep(ReasonBrokenNoBackup)
		case !d.Backup.Time.Before(oldestKept):
			d.keep(ReasonBrokenKept)
		default:
			d.Reasons = append(d.Reasons, ReasonBrokenOlder)
		}
	}

	// Dependants before their parents: a parent is strictly older, so it
	// comes later in ds and is reached after every backup that needs it.
	for i := range ds {
		j := parent[i]
		if !ds[i].Keep || j < 0 || !ds[j].Backup.Complete {
			continue
		}
		ds[j].keep(reasonParentPrefix + ds[i].Backup.ID + reasonIncrementSuffix)
	}
	for i := range ds {
		if d := &ds[i]; d.Keep && len(d.Reasons) > 1 {
			// A parent removed by the rules is kept after all: its
			// "matches no keep rule" or "older than every backup the
			// policy keeps" no longer says what happens to it.
			d.Reasons = slices.DeleteFunc(d.Reasons, func(r string) bool {
				return r == ReasonNoRule || r == ReasonBrokenOlder
			})
		}
	}
	return ds
}

// chains finds each backup's parent in ds (its index, or -1) and, for a
// complete backup whose chain cannot be restored, why ("parent X is
// missing", "ancestor X is incomplete or damaged"); "" for a full backup
// and an intact chain. Only an older parent is followed, so a cycle or a
// parent dated at or after its child breaks the chain instead of looping.
func chains(ds []Decision) (parent []int, broken []string) {
	byID := make(map[string]int, len(ds))
	for i := len(ds) - 1; i >= 0; i-- {
		// Sorted complete first among equal IDs: the complete one wins.
		byID[ds[i].Backup.ID] = i
	}
	// breach is where a chain breaks: child's parent id, and what is wrong.
	type breach struct {
		child    int
		id, what string
	}
	at := make([]*breach, len(ds)) // where the chain behind ds[i] breaks
	parent = make([]int, len(ds))
	broken = make([]string, len(ds))
	// Oldest first, so a parent (strictly older, later in ds) is settled
	// before its children.
	for i := len(ds) - 1; i >= 0; i-- {
		parent[i] = -1
		b := ds[i].Backup
		if b.Parent == "" {
			continue
		}
		j, ok := byID[b.Parent]
		switch {
		case !ok:
			at[i] = &breach{i, b.Parent, "is missing"}
		case !ds[j].Backup.Time.Before(b.Time):
			at[i] = &breach{i, b.Parent, "is not older than its child"}
		case !ds[j].Backup.Complete:
			parent[i] = j
			at[i] = &breach{i, b.Parent, "is incomplete or damaged"}
		case b.ParentChanged:
			parent[i] = j
			at[i] = &breach{i, b.Parent, "is not the backup it was made on (its manifest changed)"}
		default:
			parent[i] = j
			at[i] = at[j]
		}
		switch {
		case at[i] == nil:
		case at[i].child == i:
			broken[i] = "parent " + at[i].id + " " + at[i].what
		default:
			broken[i] = "ancestor " + at[i].id + " " + at[i].what
		}
	}
	return parent, broken
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
