// Package report turns the results of one `voltar run` into what operators
// read and what monitoring scrapes: a plain-text report (Text), JSON (JSON),
// a Prometheus textfile for node_exporter (WritePrometheus) and a mail over
// SMTP (Send).
//
// Everything here reads a Run and writes; nothing decides what happened. The
// run command fills a Run as it goes and hands it over at the end, also when
// the run failed early, so that a failure is reported like a success.
package report

import (
	"fmt"
	"strings"
	"time"

	"voltar/internal/fail"
)

// Volume and dump statuses. Any other status counts as failed.
const (
	StatusOK      = "ok"
	StatusFailed  = "failed"
	StatusPartial = "partial" // a backup exists but part of the volume is missing from it
	StatusSkipped = "skipped" // not attempted (run aborted, or not due)
	// StatusPruneFailed: the new backup is stored and complete, but
	// pruning the older ones afterwards failed. The row keeps the
	// backup's ID and size and counts as the last success, yet the run
	// failed: the store holds more than retention allows until a prune
	// succeeds.
	StatusPruneFailed = "prune_failed"
)

// Filesystem modes, as in the manifest.
const (
	ModeFiles   = "files"
	ModeRaw     = "raw"
	ModeSkipped = "skipped"
)

// Run is what one `voltar run` did.
type Run struct {
	Host              string
	Started, Finished time.Time
	Store             string // where backups went (directory or s3:// URL)
	Retention         string // human summary of the policy, e.g. "keep_days 7, keep_last 3"
	Volumes           []Volume
	Dumps             []Dump // database dumps, may be empty
	// StoreTotalBytes is the size of all this host's backups in the store
	// after pruning; -1 when unknown.
	StoreTotalBytes int64
	// DestUsedBytes, DestAvailBytes and DestTotalBytes describe the
	// filesystem holding a local store as df does (root-reserved blocks
	// are neither used nor available); -1 when unknown (always for S3).
	DestUsedBytes, DestAvailBytes, DestTotalBytes int64
	Errors                                        []Problem // run-level errors: preflight, lock, ...
	Version                                       string    // voltar's version
	// Unselected are volumes with backups of this host in the store that
	// the run did not select (a deleted LV, a renamed image, an exclude):
	// no failure, but a backup that stopped must not look like success.
	Unselected []Unselected
}

// Unselected is a volume that has backups in the store but was not
// selected for this run.
type Unselected struct {
	ID         string    // vg/volume, as a Volume's ID
	LastBackup time.Time // when its newest complete backup was taken
	BackupID   string    // that backup
	Backups    int       // complete backups of it in the store
}

// Volume is the outcome of one volume's backup.
type Volume struct {
	ID                string // vg/volume
	Status            string // StatusOK, StatusFailed, StatusPartial, StatusPruneFailed or StatusSkipped
	BackupID          string // the published backup, "" when none
	Started, Finished time.Time
	// StoredBytes is what this backup added to the store (its whole
	// folder); SourceBytes the data it was read from (manifest.DataBytes:
	// sparse files without their holes). Negative when
	// unknown.
	StoredBytes, SourceBytes int64
	Files                    int64 // files archived; negative when unknown
	// PeakCOWPct is the highest snapshot COW usage seen; negative when it does
	// not apply (thin snapshots, image volumes).
	PeakCOWPct float64
	// Consistency is what the backup's snapshot holds, as its manifest
	// says: crash, hooked (a pre_snapshot hook quiesced the volume),
	// frozen (a libvirt guest's filesystems were frozen), offline; ""
	// when unknown.
	Consistency string
	// Snapshot is how the point in time was taken, as the manifest's
	// snapshot kind says, when the report says it: "external" (a libvirt
	// external snapshot, its overlay committed back afterwards); "" else.
	Snapshot string
	// Level is the backup's level: 0 full, N the Nth increment since its
	// full; Parent the backup an increment builds on.
	Level  int
	Parent string
	// Domain, for a disk of a libvirt domain, is the domain and the disks
	// snapshotted together with this one, as "web1: vda image/web1.img,
	// vdb vg0/web1-data"; "" for a volume backed up alone.
	Domain      string
	Filesystems []FS
	Removed     []Removed // backups pruned after this volume's success
	Err         *Problem
	// Warnings are what a restore cannot bring back by itself: "p1:
	// syslinux/extlinux ...; reinstall the bootloader after restoring".
	Warnings []string
}

// FS is one filesystem (partition or whole disk) of a volume.
type FS struct {
	Name        string // p1, p2, ... or fs for a whole-disk filesystem
	Type        string // ext4, xfs, swap, ntfs, ...
	Mode        string // ModeFiles, ModeRaw or ModeSkipped
	Reason      string // why raw or skipped
	StoredBytes int64
	// NotEntered counts the paths whose contents the archive lacks
	// (another filesystem mounted inside, a skipped snapshot).
	NotEntered int
	// Subvolumes counts btrfs subvolumes; SkippedSubvolumes those whose
	// contents were left out (read-only snapshots, by default).
	Subvolumes, SkippedSubvolumes int
}

// Removed is a backup deleted by retention.
type Removed struct {
	ID     string
	Reason string
}

// Problem is an error as the user reads it: what went wrong and what to do.
type Problem struct {
	Message string
	Hints   []string
}

// NewProblem returns err's message with the hints attached to it (see
// package fail), or nil for a nil err.
func NewProblem(err error) *Problem {
	if err == nil {
		return nil
	}
	return &Problem{Message: err.Error(), Hints: fail.Hints(err)}
}

// Dump is the outcome of one database dump.
type Dump struct {
	Name              string
	Status            string // StatusOK, StatusFailed, StatusPruneFailed or StatusSkipped
	BackupID          string
	Started, Finished time.Time
	StoredBytes       int64
	Err               *Problem
}

// outcome is what a volume's and a dump's row share, for the outputs
// that treat both alike.
type outcome struct {
	name, status, backupID string
	started, finished      time.Time
	storedBytes            int64
}

func (v Volume) outcome() outcome {
	return outcome{v.ID, v.Status, v.BackupID, v.Started, v.Finished, v.StoredBytes}
}

func (d Dump) outcome() outcome {
	return outcome{d.Name, d.Status, d.BackupID, d.Started, d.Finished, d.StoredBytes}
}

// failed reports whether a status counts as a failure: everything but ok and
// skipped, so that a new or misspelt status is never reported as success.
// A prune failure is one too: the run needs attention.
func failed(status string) bool {
	return status != StatusOK && status != StatusSkipped
}

// stored reports whether a row's backup is complete in the store and is
// its last success: ok, or stored with only the prune after it failed.
func stored(status string) bool {
	return status == StatusOK || status == StatusPruneFailed
}

// OK reports whether the run needs no attention: no run-level error, no
// volume or dump failed, partial or with a failed prune. Skipped volumes
// do not make a run fail.
func (r *Run) OK() bool {
	_, vf, _ := r.Counts()
	_, df, _ := r.DumpCounts()
	return len(r.Errors) == 0 && vf == 0 && df == 0
}

// Counts counts volumes: ok, failed (failed, partial, prune failed or
// unknown status) and all of them. total-ok-failed were skipped.
// PruneFailed says how many of the failed ones are stored backups whose
// prune failed.
func (r *Run) Counts() (ok, failed, total int) {
	for _, v := range r.Volumes {
		ok, failed = count(v.Status, ok, failed)
	}
	return ok, failed, len(r.Volumes)
}

// DumpCounts is Counts for database dumps.
func (r *Run) DumpCounts() (ok, failed, total int) {
	for _, d := range r.Dumps {
		ok, failed = count(d.Status, ok, failed)
	}
	return ok, failed, len(r.Dumps)
}

// PruneFailed counts the volumes and the dumps whose backup is stored but
// whose prune failed (StatusPruneFailed); Counts and DumpCounts count them
// as failed.
func (r *Run) PruneFailed() (volumes, dumps int) {
	for _, v := range r.Volumes {
		if v.Status == StatusPruneFailed {
			volumes++
		}
	}
	for _, d := range r.Dumps {
		if d.Status == StatusPruneFailed {
			dumps++
		}
	}
	return volumes, dumps
}

func count(status string, ok, nfailed int) (int, int) {
	switch {
	case status == StatusOK:
		ok++
	case failed(status):
		nfailed++
	}
	return ok, nfailed
}

// WrittenBytes is what this run added to the store: the stored bytes of
// every volume backup and dump (each the whole folder: archives,
// SHA256SUMS, manifest.json.sha256 and manifest.json).
func (r *Run) WrittenBytes() int64 {
	var n int64
	for _, v := range r.Volumes {
		n += max(v.StoredBytes, 0)
	}
	for _, d := range r.Dumps {
		n += max(d.StoredBytes, 0)
	}
	return n
}

// Subject is the mail subject: the outcome first, so that it reads in a
// list of mails, e.g. "[voltar] host1: 12/12 volumes OK",
// "[voltar] host1: FAILED 2/12 volumes, 3/3 dumps OK",
// "[voltar] host1: FAILED 1/12 volumes (1 stored, prune failed)" or
// "[voltar] host1: FAILED: lock held by PID 12; 0/12 volumes OK (12 skipped)".
func Subject(r *Run) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[voltar] %s: ", r.Host)
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "FAILED: %s; ", oneLine(r.Errors[0].Message, 80))
	}
	ok, nfailed, total := r.Counts()
	switch {
	case total == 0 && len(r.Errors) > 0:
		// The run stopped before it knew its volumes (store unreachable,
		// sweep failed): the error is the whole story.
		return strings.TrimSuffix(b.String(), "; ")
	case nfailed > 0:
		fmt.Fprintf(&b, "FAILED %d/%d volumes", nfailed, total)
	default:
		fmt.Fprintf(&b, "%d/%d volumes OK", ok, total)
	}
	vpf, dpf := r.PruneFailed()
	b.WriteString(notes(vpf, total-ok-nfailed))
	if ok, nfailed, total := r.DumpCounts(); total > 0 {
		if nfailed > 0 {
			fmt.Fprintf(&b, ", FAILED %d/%d dumps", nfailed, total)
		} else {
			fmt.Fprintf(&b, ", %d/%d dumps OK", ok, total)
		}
		b.WriteString(notes(dpf, 0))
	}
	return b.String()
}

// notes qualifies a count of failed rows: " (1 stored, prune failed; 2
// skipped)", or "" when there is nothing to add. A failed prune is told
// apart so that nobody restores from an older backup or re-runs a backup
// that is in the store.
func notes(pruneFailed, skipped int) string {
	var n []string
	if pruneFailed > 0 {
		n = append(n, fmt.Sprintf("%d stored, prune failed", pruneFailed))
	}
	if skipped > 0 {
		n = append(n, fmt.Sprintf("%d skipped", skipped))
	}
	if len(n) == 0 {
		return ""
	}
	return " (" + strings.Join(n, "; ") + ")"
}

// oneLine keeps the first line of s, cut to n runes.
func oneLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// usedPercent is used/total in percent, ok false when either is unknown.
// usedPercent is df's Use%: used of what is used or available.
func usedPercent(used, avail int64) (pct float64, ok bool) {
	if used < 0 || avail < 0 || used+avail <= 0 {
		return 0, false
	}
	return float64(used) / float64(used+avail) * 100, true
}

func duration(start, end time.Time) (time.Duration, bool) {
	if start.IsZero() || end.IsZero() {
		return 0, false
	}
	return end.Sub(start), true
}
