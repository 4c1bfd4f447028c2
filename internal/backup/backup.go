// Package backup runs the pipeline for one volume:
//
//	snapshot -> partitions -> map -> mount -> archive -> publish -> release
//
// Every resource is recorded in the run's journal when acquired and released
// in a defer under a context that outlives cancellation, so an error, a
// signal or a cancel leaves nothing behind; a kill -9 leaves the journal for
// the next run's sweep.
package backup

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"voltar/internal/cleanup"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/folder"
	"voltar/internal/hook"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/progress"
	"voltar/internal/sandbox"
	"voltar/internal/volume"
)

// Options configure the backup of one volume.
type Options struct {
	// Settings are the store, host, encoding, journal and cleanup timeout
	// the backup shares with every writer of the run.
	folder.Settings
	Excludes []string
	// BtrfsSnapshots archives read-only btrfs snapshots too (config
	// btrfs_snapshots: include); by default they are listed as skipped.
	BtrfsSnapshots bool
	// BootRaw stores a filesystem raw when a bootloader points at its
	// blocks (syslinux/extlinux, LILO), so it boots after a restore
	// (config boot_partitions: raw); by default it is archived as files
	// with a warning to reinstall the bootloader.
	BootRaw bool
	// Isolation is where guest filesystems are parsed: IsolationKernel
	// ("" too) mounts them in the host's kernel, IsolationSandbox in a
	// User-Mode Linux kernel run as an unprivileged user (internal/sandbox).
	Isolation string
	// Sandbox bounds each sandbox (zero values: sandbox's defaults).
	Sandbox     sandbox.Limits
	RuntimeDir  string
	RunID       string
	Snapshotter volume.Snapshotter
	// Hooks run around the snapshot (config hooks:, volume_hooks:).
	Hooks hook.Set
	// Incremental says when the backup builds on the volume's previous
	// one (config incremental:); the zero value makes it full.
	Incremental Incremental
	Progress    *progress.Printer
	// Turn, when set, is called once the snapshot is made and journaled
	// (and the post_snapshot hook ran), before it is read; an error fails
	// the volume (the snapshot is released). A libvirt domain's disks
	// wait there for the previous disk's backup (internal/domain).
	Turn func(ctx context.Context) error
	// Inject, when set, is called at each stage and may return an error to
	// simulate a failure there. For tests.
	Inject func(stage string) error
	// Drop, when set, makes the archive walk leave out the entries it
	// returns true for without a trace (archive.Options.Drop). For tests
	// of the completeness check only.
	Drop func(rel string) bool
}

// Stages passed to Options.Inject.
const (
	StageSnapshot = "snapshot"
	// StageCreated and StageCopied come right after a snapshot or a
	// writable copy was made, before anything else is done with it.
	StageCreated = "created"
	StageCopied  = "copied"
	StageTable   = "table"
	StageMap     = "map"
	StageMount   = "mount"
	StageArchive = "archive"
	StagePublish = "publish"
)

// NewRunID names a run: its UTC start time plus a random suffix.
func NewRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// LoopTag marks loop devices made by run runID of the voltar whose runtime
// directory is runtimeDir. The directory's hash keeps one voltar's sweep
// (say, make demo's) off the loop devices of another that uses a different
// runtime directory and lock.
func LoopTag(runtimeDir, runID string) string { return loopTagPrefix(runtimeDir) + runID }

func loopTagPrefix(runtimeDir string) string { return "voltar:" + Scope(runtimeDir) + ":" }

// Scope names one voltar installation by its runtime directory (which holds
// its lock): what carries the scope was made under that lock.
func Scope(runtimeDir string) string {
	h := sha256.Sum256([]byte(filepath.Clean(runtimeDir)))
	return hex.EncodeToString(h[:4])
}

// checkEvery is how often a snapshot's fill level is polled while it is
// read.
const checkEvery = 5 * time.Second

// Volume backs up v and returns the published manifest.
func Volume(ctx context.Context, v volume.Volume, o Options) (m *manifest.Manifest, err error) {
	log := o.Logger.With("volume", v.ID())
	prefix, started, err := folder.Free(ctx, o.Store, func(t time.Time) string { return layout.Folder(o.Host, v.Group, v.Name, t) })
	if err != nil {
		return nil, err
	}
	m = &manifest.Manifest{
		Tool: "voltar", Version: o.Version, Host: o.Host,
		ID:          strings.TrimSuffix(strings.TrimPrefix(prefix, o.Host+"/"), "/"),
		Volume:      manifest.Volume{Kind: v.Kind, Name: v.Name, Group: v.Group, Path: v.Path, Size: v.Size, UUID: v.UUID},
		Compression: o.Compression,
		Started:     started,
	}
	if v.Format != "" {
		m.Volume.Format, m.Volume.VirtualSize = v.Format, v.Size
		for _, l := range v.Backing {
			m.Volume.Backing = append(m.Volume.Backing, manifest.Backing{Path: l.Path, Format: l.Format, VirtualSize: l.Size})
		}
	}
	if o.Recipients != nil {
		m.Encryption = &manifest.Encryption{Method: crypt.Method, Recipients: o.Recipients.Keys()}
	}
	m.Isolation = IsolationKernel
	if o.Isolation == IsolationSandbox {
		m.Isolation = IsolationSandbox
	}
	m.Schema = manifest.SchemaFor(m)
	r := &run{o: o, v: v, log: log, prefix: prefix, m: m}
	// post_backup runs last, after every release, with the outcome.
	defer func() { r.postBackup(ctx, m, &err) }()
	defer r.releaseAll(&err)
	if err := r.preBackup(ctx); err != nil {
		return nil, err
	}

	// The parent is chosen before the snapshot, which then lives no
	// longer than it must; the layout decides whether it fits.
	r.parent = r.chooseParent(ctx)
	defer r.parent.close()

	if err := r.inject(StageSnapshot); err != nil {
		return nil, err
	}
	// Journaled before it exists: a kill between its creation and a
	// later entry would leave a snapshot only its mark can find. Before
	// the preflight too, whose space reservation only Create gives back:
	// nothing may fail between the two.
	planned, err := r.plan("")
	if err != nil {
		return nil, err
	}
	// The hooks run around the preflight and the snapshot: the post hook
	// whenever the pre hook ran, and the snapshot is kept for release
	// even when the post hook failed.
	snap, err := r.hooked(ctx, func() (*volume.Snapshot, error) {
		if pf, ok := o.Snapshotter.(volume.Preflighter); ok {
			if _, err := pf.Preflight(ctx, v); err != nil {
				return nil, orHint(fmt.Errorf("preflight %s: %w", v.ID(), err), "%s", volumeHint(v))
			}
		}
		snap, err := o.Snapshotter.Create(ctx, v, o.RunID)
		if err != nil {
			return nil, orHint(fmt.Errorf("snapshot %s: %w", v.ID(), err), "%s", volumeHint(v))
		}
		return snap, nil
	})
	r.unplan(planned, snap)
	if snap == nil {
		return nil, err
	}
	r.snap = snap
	if err != nil {
		return nil, err
	}
	if err := r.inject(StageCreated); err != nil {
		return nil, err
	}
	for _, h := range snapRefs(snap) {
		if !isPlanned(planned, h) {
			if err := r.hold(journalKind(h.Kind), h.Ref); err != nil {
				return nil, err
			}
		}
	}
	if o.Turn != nil {
		if err := o.Turn(ctx); err != nil {
			return nil, err
		}
	}
	m.Snapshot = manifest.Snapshot{Kind: string(snap.Kind), Name: snap.Name, Size: snap.Size, Consistency: r.consistency(snap), Set: setOf(snap)}
	log.Info("snapshot created", "kind", snap.Kind, "snapshot", snap.Name)

	parts, err := r.layout(ctx)
	if err != nil {
		return nil, err
	}
	r.increment(ctx, parts)

	// Watch the snapshot while reading it: an overflowing COW snapshot turns
	// whatever is read afterwards into garbage, so stop early.
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopWatch := r.watch(actx, cancel)

	if err := r.hold(cleanup.Partial, folder.PartialRef(o.Store, prefix)); err != nil {
		return nil, err
	}
	r.partial = true
	readErr := func(what string, err error) error {
		stopWatch()
		if cause := context.Cause(actx); cause != nil && errors.Is(cause, volume.ErrOverflow) {
			err = cause
		} else if pct, cerr := o.Snapshotter.Check(ctx, snap); errors.Is(cerr, volume.ErrOverflow) {
			// An invalidated snapshot fails reads with EIO before the
			// next poll sees it: name the real cause.
			r.peak(pct)
			err = cerr
		}
		return fmt.Errorf("%s %s: %w", v.ID(), what, err)
	}
	archived := 0
	for _, p := range parts {
		fs, err := r.filesystem(actx, p)
		if err != nil {
			return nil, readErr(p.name, err)
		}
		if fs.Mode != manifest.ModeSkipped { // only swap is skipped
			archived++
		}
		m.Filesystems = append(m.Filesystems, fs)
	}
	r.settleChain()
	if err := r.outside(actx, parts); err != nil {
		return nil, readErr("bytes outside the partitions", err)
	}
	stopWatch()
	pct, err := o.Snapshotter.Check(ctx, snap)
	r.peak(pct)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", v.ID(), err)
	}
	m.Snapshot.PeakCOWPct = r.peakPct
	if archived == 0 {
		return nil, fail.Hint(fmt.Errorf("%s: no filesystem could be backed up (%s)", v.ID(), skippedReasons(m)),
			"exclude this volume in the config if it holds nothing to back up")
	}
	m.Status = manifest.StatusComplete
	m.Schema = manifest.SchemaFor(m) // subvolumes need a newer one
	if err := r.inject(StagePublish); err != nil {
		return nil, err
	}
	if err := folder.Publish(ctx, o.Store, r.prefix, m, time.Now().UTC(), o.Signer); err != nil {
		return nil, err
	}
	r.partial = false
	if o.Journal != nil {
		o.Journal.Done(cleanup.Partial, folder.PartialRef(o.Store, prefix))
	}
	log.Info("backup complete", "id", m.ID, "stored_bytes", m.StoredBytes(), "files", m.Files())
	return m, nil
}

// plan journals every name the snapshotter may give the snapshot (part
// "") or a writable copy of part, before it is made. The snapshotter's own
// failures leave nothing, so unplan drops the names not taken.
func (r *run) plan(part string) ([]volume.Planned, error) {
	pl, ok := r.o.Snapshotter.(volume.Planner)
	if !ok {
		return nil, nil
	}
	planned := pl.Planned(r.v, r.o.RunID, part)
	for i, p := range planned {
		if err := r.hold(journalKind(p.Kind), p.Ref); err != nil {
			r.unplan(planned[:i], nil)
			return nil, err
		}
	}
	return planned, nil
}

// unplan marks the planned names done but those of what was made (made
// may be nil).
func (r *run) unplan(planned []volume.Planned, made *volume.Snapshot) {
	var kept []volume.Planned
	if made != nil {
		kept = snapRefs(made)
	}
	for _, p := range planned {
		if !isPlanned(kept, p) {
			r.done(journalKind(p.Kind), p.Ref)
		}
	}
}

// isPlanned reports whether made is among the journaled names.
func isPlanned(planned []volume.Planned, made volume.Planned) bool {
	for _, p := range planned {
		if journalKind(made.Kind) == journalKind(p.Kind) && made.Ref == p.Ref {
			return true
		}
	}
	return false
}

// snapRefs are the journal entries snapshot s stands for: its Holds, or
// itself when it leaves something to remove.
func snapRefs(s *volume.Snapshot) []volume.Planned {
	if len(s.Holds) > 0 {
		return s.Holds
	}
	if snapKind(s) == "" {
		return nil
	}
	return []volume.Planned{{Kind: s.Kind, Ref: snapRef(s)}}
}

// orHint attaches a hint to err unless something in its chain already
// says what to do: a tool's own error (lvcreate's stderr) rarely does, and
// the report promises a hint with every error.
func orHint(err error, format string, args ...any) error {
	if len(fail.Hints(err)) > 0 {
		return err
	}
	return fail.Hint(err, format, args...)
}

// volumeHint says where to look when v cannot be snapshotted.
func volumeHint(v volume.Volume) string {
	h := "`voltar volumes` shows whether " + v.ID() + " can be backed up"
	if v.Kind == volume.KindLVM {
		h += "; `lvs -a " + v.Group + "` and `vgs " + v.Group + "` show its snapshots and free space"
	}
	return h
}

// snapKind is the journal kind of a snapshot, "" for none.
func snapKind(s *volume.Snapshot) string { return journalKind(s.Kind) }

// journalKind is the journal kind under which snapshots of kind k are
// recorded, "" for kinds that leave nothing to remove.
func journalKind(k volume.SnapshotKind) string {
	switch k {
	case volume.KindReflink, volume.KindCopy:
		return cleanup.Clone
	case volume.KindThick, volume.KindThin:
		return cleanup.LV
	case volume.KindExport:
		return cleanup.Export
	}
	return ""
}

// snapRef is how the journal names a snapshot: vg/lv or the clone's path.
func snapRef(s *volume.Snapshot) string {
	if snapKind(s) == cleanup.LV {
		return strings.TrimPrefix(s.Path, "/dev/")
	}
	return s.Name
}

func skippedReasons(m *manifest.Manifest) string {
	if len(m.Filesystems) == 0 {
		return "no partitions"
	}
	var rs []string
	for _, f := range m.Filesystems {
		rs = append(rs, f.Name+": "+f.Reason)
	}
	return strings.Join(rs, "; ")
}

// run is the state of one volume's backup.
type run struct {
	o       Options
	v       volume.Volume
	log     *slog.Logger
	prefix  string
	m       *manifest.Manifest
	snap    *volume.Snapshot
	partial bool
	peakPct float64
	// preHooked: the pre_snapshot hook ran and succeeded.
	preHooked bool
	// parent is the backup this one builds on (nil: a full backup).
	parent *parent
	// release holds undo steps, run newest first.
	release []func(ctx context.Context) error
}

func (r *run) inject(stage string) error {
	if r.o.Inject == nil {
		return nil
	}
	if err := r.o.Inject(stage); err != nil {
		return fmt.Errorf("%s: %s: %w", r.v.ID(), stage, err)
	}
	return nil
}

func (r *run) peak(p float64) {
	if p > r.peakPct {
		r.peakPct = p
	}
}

// hold journals a resource when cond is true.
// hold journals a resource, so a later sweep finds it if this process
// dies. A resource that cannot be journaled is not kept: the error stops
// the backup, which releases it.
func (r *run) hold(kind, ref string) error {
	if r.o.Journal == nil {
		return nil
	}
	if err := r.o.Journal.Add(kind, ref); err != nil {
		return fail.Hint(err, "state_dir must be writable and have room: it records what to clean up after a crash")
	}
	return nil
}

func (r *run) done(kind, ref string) {
	if r.o.Journal != nil {
		r.o.Journal.Done(kind, ref)
	}
}

// onRelease registers an undo step.
func (r *run) onRelease(f func(ctx context.Context) error) { r.release = append(r.release, f) }

// releaseAll undoes everything, newest first, then the snapshot, and removes
// the objects of an unfinished backup. It runs even when ctx is cancelled.
func (r *run) releaseAll(errp *error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.o.CleanupTimeout)
	defer cancel()
	var errs []error
	for i := len(r.release) - 1; i >= 0; i-- {
		if err := r.release[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// The volume's own mount directory, once empty. No directory is shared
	// with another volume of the run, so none is pulled from under one.
	os.Remove(filepath.Dir(r.mountDir("x")))
	if r.snap != nil {
		if err := r.o.Snapshotter.Release(ctx, r.snap); err != nil {
			errs = append(errs, fmt.Errorf("release snapshot %s: %w", r.snap.Name, err))
		} else {
			for _, h := range snapRefs(r.snap) {
				r.done(journalKind(h.Kind), h.Ref)
			}
			r.log.Info("snapshot removed", "snapshot", r.snap.Name)
		}
	}
	if r.partial {
		if err := folder.RemovePartial(ctx, r.o.Store, r.prefix); err != nil {
			errs = append(errs, err)
		} else if r.o.Journal != nil {
			r.o.Journal.Done(cleanup.Partial, folder.PartialRef(r.o.Store, r.prefix))
		}
	}
	if len(errs) > 0 {
		rel := fmt.Errorf("cleanup of %s: %w", r.v.ID(), errors.Join(errs...))
		rel = fail.Hint(rel, "the next voltar command retries the cleanup; check `losetup -a`, `lvs -o+lv_tags` and mounts under %s", r.o.RuntimeDir)
		*errp = errors.Join(*errp, rel)
	}
}

// mountDir is the private mount point of one filesystem of this volume,
// in a directory the volume owns alone: volumes of one run back up side by
// side, and each removes its directory when it is done.
func (r *run) mountDir(name string) string {
	return filepath.Join(r.o.RuntimeDir, r.o.RunID+"-"+r.v.Group+"-"+r.v.Name, name)
}

// makeMountDir creates the mount point of filesystem name and journals it
// (cleanup.Mount), so a sweep unmounts and removes it after a crash.
func (r *run) makeMountDir(name string) (string, error) {
	dir := r.mountDir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("mount point: %w", err)
	}
	if err := r.hold(cleanup.Mount, dir); err != nil {
		os.Remove(dir)
		return "", err
	}
	return dir, nil
}

// watch polls the snapshot until stopped; an overflow cancels ctx.
func (r *run) watch(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(checkEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				pct, err := r.o.Snapshotter.Check(ctx, r.snap)
				r.peak(pct)
				if errors.Is(err, volume.ErrOverflow) {
					cancel(err)
					return
				}
			}
		}
	}()
	return func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-finished
	}
}
