// Package nightly is `voltar run`: preflight the destination, back up every
// selected volume (a few at a time), prune each volume after its new backup
// succeeded, and collect everything into a report. One volume's failure
// never stops the others.
package nightly

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/domain"
	"voltar/internal/dump"
	"voltar/internal/fail"
	"voltar/internal/folder"
	"voltar/internal/hook"
	"voltar/internal/manifest"
	"voltar/internal/parallel"
	"voltar/internal/prune"
	"voltar/internal/report"
	"voltar/internal/store"
	"voltar/internal/units"
	"voltar/internal/volume"
)

// Job is one volume to back up and how to snapshot it.
type Job struct {
	Volume      volume.Volume
	Snapshotter volume.Snapshotter
	Excludes    []string
	// BtrfsSnapshots: archive read-only btrfs snapshots too.
	BtrfsSnapshots bool
	// Hooks run around the volume's snapshot.
	Hooks hook.Set
	// Isolation: backup.IsolationKernel or IsolationSandbox.
	Isolation string
	// Incremental: when the backup builds on the volume's previous one.
	Incremental backup.Incremental
	// Domain, when set, is the libvirt domain (a key of Options.Domains)
	// this volume is a disk of, Target its name in the guest: the jobs
	// of one domain are backed up together (domain.Backup), in one slot
	// of Concurrency.
	Domain, Target string
}

// Missing is a configured source that cannot be backed up: an image file
// that is gone, a volume group that does not exist or cannot be listed. The
// operator asked for it, so it is a failed volume of the run, never dropped.
type Missing struct {
	// ID names it as the report names volumes: image/<file name> for an
	// image (what its backups are stored under), <vg>/* for a volume group,
	// which stands for every volume of the group.
	ID  string
	Err error // what is wrong, with hints
}

// covers reports whether the missing source stands for the volume id
// (vg/volume): its own ID, or any volume of a missing group.
func (m Missing) covers(id string) bool {
	if g, ok := strings.CutSuffix(m.ID, "/*"); ok {
		return strings.HasPrefix(id, g+"/")
	}
	return m.ID == id
}

// Options configure a run.
type Options struct {
	// Settings are shared by every backup and dump of the run (they replace
	// Backup's and Dump's), and name the store and host pruned and reported.
	folder.Settings
	Jobs []Job
	// Missing are configured sources that cannot be backed up; each is a
	// failed volume of the report, after the jobs.
	Missing     []Missing
	Concurrency int
	// Domains are the freeze settings of each domain the jobs name;
	// RunID, Journal and Logger come from Backup.
	Domains map[string]domain.Options
	// Backup is the template for each volume's backup options; Settings
	// come from the run, Snapshotter, Excludes and BtrfsSnapshots are set
	// per job.
	Backup backup.Options
	Prune  prune.Options
	// Dumps run before the volumes, or after them with DumpsAfter,
	// DumpConcurrency at a time, with Dump's options (Settings from the run).
	Dumps           []dump.Target
	DumpsAfter      bool
	DumpConcurrency int
	Dump            dump.Options
	// RequireMount: this directory must be a mount point (checked by a
	// store that is a store.Preflighter).
	RequireMount   string
	MinFreePercent float64
	Retention      string // for the report
	Now            func() time.Time
}

// Run performs the nightly job and returns its report.
func Run(ctx context.Context, o Options) *report.Run {
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Backup.Settings, o.Dump.Settings = o.Settings, o.Settings
	r := &report.Run{
		Host: o.Host, Started: o.Now(), Store: o.Store.String(), Retention: o.Retention,
		StoreTotalBytes: -1, DestUsedBytes: -1, DestAvailBytes: -1, DestTotalBytes: -1, Version: o.Version,
	}
	defer func() { r.Finished = o.Now() }()
	cat := &listing{}

	if err := preflight(ctx, o, cat); err != nil {
		r.Errors = append(r.Errors, *report.NewProblem(err))
		notAttempted := &report.Problem{Message: "not attempted: the run's preflight failed"}
		for _, j := range o.Jobs {
			r.Volumes = append(r.Volumes, report.Volume{ID: j.Volume.ID(), Status: report.StatusSkipped,
				StoredBytes: -1, SourceBytes: -1, Files: -1, PeakCOWPct: -1, Err: notAttempted})
		}
		r.Volumes = append(r.Volumes, missing(o)...)
		for _, d := range o.Dumps {
			r.Dumps = append(r.Dumps, report.Dump{Name: d.Name, Status: report.StatusSkipped, StoredBytes: -1, Err: notAttempted})
		}
		usage(ctx, o, r)
		return r
	}

	if !o.DumpsAfter {
		r.Dumps = dumps(ctx, o)
	}
	r.Volumes = append(volumes(ctx, o), missing(o)...)
	if o.DumpsAfter {
		r.Dumps = dumps(ctx, o)
	}
	unselected(ctx, o, cat, r)
	usage(ctx, o, r)
	return r
}

// missing is the report's row of each configured source that cannot be
// backed up.
func missing(o Options) []report.Volume {
	var out []report.Volume
	for _, m := range o.Missing {
		out = append(out, report.Volume{ID: m.ID, Status: report.StatusFailed,
			StoredBytes: -1, SourceBytes: -1, Files: -1, PeakCOWPct: -1, Err: report.NewProblem(m.Err)})
	}
	return out
}

// listing is this host's catalog, read at most once per run: the
// free-space estimate and the unselected volumes both need it, and reading
// it reads every manifest of the host.
type listing struct {
	done bool
	cat  *catalog.Catalog
	err  error
}

func (l *listing) get(ctx context.Context, o Options) (*catalog.Catalog, error) {
	if !l.done {
		l.cat, l.err = catalog.List(ctx, o.Store, o.Host, "")
		l.done = true
	}
	return l.cat, l.err
}

// unselected lists the volumes with backups of this host that the run did
// not select (a deleted LV, a renamed image, an exclude), with their newest
// backup: no failure, but a backup that stopped must be visible in every
// report. A missing source already fails for the volumes it stands for.
func unselected(ctx context.Context, o Options, l *listing, r *report.Run) {
	c, err := l.get(ctx, o)
	if err != nil {
		if ctx.Err() == nil {
			r.Errors = append(r.Errors, *report.NewProblem(fail.Hint(
				fmt.Errorf("cannot tell which volumes with backups are no longer selected: %w", err),
				"check that the store can be listed: voltar list")))
		}
		return
	}
	selected := map[string]bool{}
	for _, j := range o.Jobs {
		selected[j.Volume.ID()] = true
	}
	for _, b := range c.Backups { // sorted by volume, then time: the last one is the newest
		id := b.Group + "/" + b.Volume
		if b.Group == dump.Group || selected[id] || slices.ContainsFunc(o.Missing, func(m Missing) bool { return m.covers(id) }) {
			continue
		}
		if n := len(r.Unselected); n > 0 && r.Unselected[n-1].ID == id {
			u := &r.Unselected[n-1]
			u.LastBackup, u.BackupID, u.Backups = b.Time, b.ID, u.Backups+1
			continue
		}
		r.Unselected = append(r.Unselected, report.Unselected{ID: id, LastBackup: b.Time, BackupID: b.ID, Backups: 1})
	}
}

// Aborted is the report of a run that stopped before Run could start (the
// store could not be opened, the sweep or the volume selection failed):
// the operator who reads only the mail, the JSON report or the metrics
// learns of it too. What was not measured is unknown (-1), not zero.
func Aborted(host, storeName, retention, version string, started, finished time.Time, err error) *report.Run {
	return &report.Run{
		Host: host, Started: started, Finished: finished, Store: storeName, Retention: retention,
		StoreTotalBytes: -1, DestUsedBytes: -1, DestAvailBytes: -1, DestTotalBytes: -1,
		Errors: []report.Problem{*report.NewProblem(err)}, Version: version,
	}
}

// dumps runs the database dumps and prunes each one that succeeded.
func dumps(ctx context.Context, o Options) []report.Dump {
	if len(o.Dumps) == 0 {
		return nil
	}
	var out []report.Dump
	for _, res := range dump.All(ctx, o.Dumps, o.DumpConcurrency, o.Dump) {
		rd := DumpRow(res)
		if res.Err == nil && !res.Skipped {
			if _, err := prune.Store(ctx, o.Store, o.Host, dump.Group+"/"+res.Name, o.Prune); err != nil {
				// The dump is stored (its ID and size stay in the row);
				// only the old ones are still there.
				rd.Status = report.StatusPruneFailed
				rd.Err = report.NewProblem(fail.Hint(fmt.Errorf("dump %s succeeded, but pruning failed: %w", res.Name, err),
					"check the store's permissions; `voltar prune --dry-run` shows what is due"))
			}
		}
		out = append(out, rd)
	}
	return out
}

// DumpRow turns a dump's result into its row of the report.
func DumpRow(r dump.Result) report.Dump {
	d := report.Dump{Name: r.Name, Started: r.Started, Finished: r.Finished, StoredBytes: -1}
	switch {
	case r.Skipped:
		d.Status, d.Err = report.StatusSkipped, report.NewProblem(r.Err)
	case r.Err != nil:
		d.Status, d.Err = report.StatusFailed, report.NewProblem(r.Err)
	default:
		d.Status, d.BackupID, d.StoredBytes = report.StatusOK, r.Manifest.ID, r.Manifest.PublishedBytes
	}
	return d
}

// volumes backs up every job, Concurrency at a time; the disks of one
// domain take one slot together.
func volumes(ctx context.Context, o Options) []report.Volume {
	var units [][]Job
	at := map[string]int{}
	for _, j := range o.Jobs {
		if j.Domain == "" {
			units = append(units, []Job{j})
			continue
		}
		i, ok := at[j.Domain]
		if !ok {
			i = len(units)
			at[j.Domain] = i
			units = append(units, nil)
		}
		units[i] = append(units[i], j)
	}
	var out []report.Volume
	for _, rows := range parallel.Map(ctx, units, o.Concurrency, func(u []Job) []report.Volume {
		if u[0].Domain == "" {
			return []report.Volume{one(ctx, o, u[0])}
		}
		return set(ctx, o, u)
	}) {
		out = append(out, rows...)
	}
	return out
}

// options are job j's backup options.
func options(o Options, j Job) backup.Options {
	bo := o.Backup
	bo.Snapshotter, bo.Excludes, bo.BtrfsSnapshots, bo.Hooks = j.Snapshotter, j.Excludes, j.BtrfsSnapshots, j.Hooks
	bo.Isolation, bo.Incremental = j.Isolation, j.Incremental
	return bo
}

// set backs up the disks of one domain together, then prunes each.
func set(ctx context.Context, o Options, jobs []Job) []report.Volume {
	started := o.Now()
	rows := make([]report.Volume, len(jobs))
	if err := ctx.Err(); err != nil {
		for i, j := range jobs {
			rows[i] = one(ctx, o, j) // says: not attempted
		}
		return rows
	}
	do := o.Domains[jobs[0].Domain]
	do.RunID, do.Journal, do.Logger = o.Backup.RunID, o.Backup.Journal, o.Backup.Logger
	if do.Logger == nil {
		do.Logger = o.Logger
	}
	var members []domain.Member
	for _, j := range jobs {
		members = append(members, domain.Member{Target: j.Target, Volume: j.Volume, Options: options(o, j)})
	}
	for i, res := range domain.Backup(ctx, members, do) {
		rows[i] = finish(ctx, o, jobs[i], started, res.Manifest, res.Err)
	}
	return rows
}

// one backs up and then prunes one volume.
func one(ctx context.Context, o Options, j Job) report.Volume {
	started := o.Now()
	if err := ctx.Err(); err != nil {
		return report.Volume{ID: j.Volume.ID(), Started: started, Finished: o.Now(), StoredBytes: -1, SourceBytes: -1, Files: -1, PeakCOWPct: -1,
			Status: report.StatusSkipped, Err: report.NewProblem(fmt.Errorf("not attempted: %w", err))}
	}
	m, err := backup.Volume(ctx, j.Volume, options(o, j))
	return finish(ctx, o, j, started, m, err)
}

// finish makes job j's row of the report from its backup's outcome and
// prunes the volume when the backup is stored.
func finish(ctx context.Context, o Options, j Job, started time.Time, m *manifest.Manifest, err error) (v report.Volume) {
	v = report.Volume{ID: j.Volume.ID(), Started: started, StoredBytes: -1, SourceBytes: -1, Files: -1, PeakCOWPct: -1}
	defer func() { v.Finished = o.Now() }()
	if m == nil {
		v.Status, v.Err = report.StatusFailed, report.NewProblem(err)
		return v
	}
	// A manifest means the backup is stored, even when releasing the
	// snapshot afterwards failed (err): report it, and prune, as stored.
	v.Status = report.StatusOK
	if err != nil {
		err = fmt.Errorf("backup %s is stored, but: %w", m.ID, err)
		v.Status, v.Err = report.StatusFailed, report.NewProblem(err)
	}
	backupErr := err
	// The whole folder, SHA256SUMS and the manifest too: what the run
	// wrote, as the store's growth shows it.
	v.BackupID, v.StoredBytes, v.SourceBytes, v.Files = m.ID, m.PublishedBytes, m.DataBytes(), m.Files()
	v.Warnings = m.AllWarnings()
	v.Consistency = m.Snapshot.Consistency
	if m.Snapshot.Kind == string(volume.KindExternal) {
		v.Snapshot = m.Snapshot.Kind
	}
	if m.Chain != nil {
		v.Level, v.Parent = m.Chain.Level, m.Chain.Parent
	}
	if st := m.Snapshot.Set; st != nil {
		var disks []string
		for _, d := range st.Disks {
			disks = append(disks, d.Target+" "+d.Volume)
		}
		v.Domain = st.Domain + ": " + strings.Join(disks, ", ")
	}
	if m.Snapshot.Kind == string(volume.KindThick) {
		v.PeakCOWPct = m.Snapshot.PeakCOWPct
	}
	for _, f := range m.Filesystems {
		v.Filesystems = append(v.Filesystems, report.FS{Name: f.Name, Type: f.Type, Mode: f.Mode, Reason: f.Reason, StoredBytes: f.StoredBytes,
			NotEntered: len(f.NotEntered), Subvolumes: len(f.Subvolumes), SkippedSubvolumes: f.SkippedSubvolumes()})
	}
	// Only now, with a new good backup in place, may old ones go.
	res, err := prune.Store(ctx, o.Store, o.Host, j.Volume.ID(), o.Prune)
	for _, pv := range res {
		for _, d := range pv.Decisions {
			if d.Removed {
				v.Removed = append(v.Removed, report.Removed{ID: d.ID, Reason: strings.Join(d.Reasons, ", ")})
			}
		}
	}
	if err != nil {
		err = fail.Hint(fmt.Errorf("backup %s succeeded, but pruning failed: %w", m.ID, err),
			"check the store's permissions; `voltar prune --dry-run` shows what is due")
		// The backup is stored and is the volume's last success: its own
		// status, not a failed backup. A backup that failed already
		// (releasing its snapshot) stays failed, with both errors.
		if v.Status == report.StatusOK {
			v.Status = report.StatusPruneFailed
		} else {
			err = errors.Join(backupErr, err)
		}
		v.Err = report.NewProblem(err)
	}
	return v
}

// preflight checks the destination before any snapshot is made. A store
// that cannot preflight (S3) was checked when it was opened, and reports
// no free space.
func preflight(ctx context.Context, o Options, l *listing) error {
	pf, ok := store.As[store.Preflighter](o.Store)
	if !ok {
		return nil
	}
	if err := pf.Preflight(ctx, store.PreflightOptions{RequireMount: o.RequireMount}); err != nil {
		return err
	}
	sp, ok := store.As[store.Space](o.Store)
	if !ok {
		return nil
	}
	u, err := sp.Usage(ctx)
	if err != nil {
		return err
	}
	free := u.Avail
	if o.MinFreePercent > 0 && u.Size > 0 && 100-u.UsedPercent() < o.MinFreePercent {
		return fail.Hint(fmt.Errorf("store %s has %s free (%.1f%%), less than store.min_free_percent %.0f%%",
			o.Store, units.Bytes(free), 100-u.UsedPercent(), o.MinFreePercent),
			"free space or prune old backups (voltar prune --dry-run shows what is due)")
	}
	need := estimate(ctx, o, l)
	if need > free {
		return fail.Hint(fmt.Errorf("store %s has %s free, but the last backups of the selected volumes took %s",
			o.Store, units.Bytes(free), units.Bytes(need)),
			"free space or prune old backups before the run; voltar does not start backups it expects to fill the disk")
	}
	return nil
}

// estimate is what the last backup of each selected volume stored.
func estimate(ctx context.Context, o Options, l *listing) int64 {
	c, err := l.get(ctx, o)
	if err != nil {
		return 0
	}
	last := map[string]int64{}
	for _, b := range c.Backups {
		last[b.Group+"/"+b.Volume] = b.Manifest.StoredBytes() // sorted by time: the last wins
	}
	var n int64
	for _, j := range o.Jobs {
		n += last[j.Volume.ID()]
	}
	return n
}

// usage fills in the store's totals after the run.
func usage(ctx context.Context, o Options, r *report.Run) {
	if objs, err := o.Store.List(ctx, o.Host+"/"); err == nil {
		var n int64
		for _, obj := range objs {
			n += obj.Size
		}
		r.StoreTotalBytes = n
	}
	if sp, ok := store.As[store.Space](o.Store); ok {
		if u, err := sp.Usage(ctx); err == nil {
			r.DestUsedBytes, r.DestAvailBytes, r.DestTotalBytes = u.Used, u.Avail, u.Size
		}
	}
}
