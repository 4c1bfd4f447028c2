package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"voltar/internal/backup"
	"voltar/internal/cleanup"
	"voltar/internal/domain"
	"voltar/internal/fail"
	"voltar/internal/lock"
	"voltar/internal/mountfs"
)

// session is a command's hold on this installation's volumes and store:
// the run lock, taken after no other run was found holding it and the
// leftovers of dead runs were released, and, for a command that creates
// snapshots, loop devices, mounts or store folders, the journal a later
// run's sweep reads if this one dies.
type session struct {
	a       *app
	lock    *lock.Lock
	runID   string
	journal *cleanup.Journal // nil until startJournal
}

// begin takes the run lock and sweeps; withLVM also scans for tagged
// snapshots (see sweep); withJournal starts the journal too. The caller
// must call end, on every path.
func (a *app) begin(ctx context.Context, withLVM, withJournal bool) (*session, error) {
	l, err := lock.Acquire(a.cfg.RuntimeDir)
	if err != nil {
		return nil, err
	}
	if err := a.sweep(ctx, withLVM); err != nil {
		l.Release()
		return nil, err
	}
	s := &session{a: a, lock: l}
	if withJournal {
		if err := s.startJournal(); err != nil {
			l.Release()
			return nil, err
		}
	}
	return s, nil
}

// startJournal begins the part of the session that creates resources:
// its run ID and journal.
func (s *session) startJournal() error {
	runID := backup.NewRunID(time.Now())
	j, err := cleanup.Start(s.a.cfg.StateDir, runID)
	if err != nil {
		return fail.Hint(err, "set state_dir to a writable directory")
	}
	s.runID, s.journal = runID, j
	return nil
}

// finishJournal closes the journal and returns what it could not release
// (logged for the next sweep too); end calls it when the caller did not.
func (s *session) finishJournal() error {
	if s.journal == nil {
		return nil
	}
	j := s.journal
	s.journal = nil
	return j.Finish()
}

// end closes the journal, logging what is left for the next sweep, and
// releases the lock.
func (s *session) end() {
	if err := s.finishJournal(); err != nil {
		s.a.log.Error("cleanup incomplete", "err", err)
	}
	s.lock.Release()
}

// sweepIfIdle sweeps when no other run is active; read-only commands use it.
func (a *app) sweepIfIdle(ctx context.Context) {
	l, ok := lock.TryAcquire(a.cfg.RuntimeDir)
	if !ok {
		return
	}
	defer l.Release()
	if err := a.sweep(ctx, false); err != nil {
		a.log.Warn("cleanup of a dead run's leftovers failed", "err", err)
	}
}

// sweep releases what dead runs left. withLVM also scans for tagged
// snapshots when the config names no volume group (backup of LVs named on
// the command line); with volume groups configured it always does.
func (a *app) sweep(ctx context.Context, withLVM bool) error {
	o := backup.SweepOptions{
		RuntimeDir: a.cfg.RuntimeDir, StateDir: a.cfg.StateDir,
		OpenStore: a.openStore, Logger: a.log,
	}
	// A dead run's journal may name a snapshot even when this command has
	// nothing to do with LVM; remove it whenever LVM is here. Scanning all
	// VGs for tagged LVs is left to commands that use LVM.
	if s, err := a.lvm(); err == nil {
		if withLVM || len(a.cfg.LVM.VolumeGroups) > 0 {
			o.Sweepers = append(o.Sweepers, s)
		} else {
			o.JournalOnly = append(o.JournalOnly, s)
		}
	} else if fail.IsUsage(err) {
		// LVM is here but its config is wrong (lvm.snapshot_size): say so,
		// or a leftover snapshot's "LVM is not available" hides the cause.
		a.log.Warn("leftover snapshots cannot be released", "err", err)
	}
	o.Sweepers = append(o.Sweepers, a.images(), a.qcow2())
	// A guest a killed run left frozen, and the overlays of its external
	// snapshots, committed back (domains:).
	o.Handlers = map[string]cleanup.Handler{cleanup.Freeze: domain.ThawLeftover(a.log), cleanup.Overlay: domain.CommitLeftover(a.log, a.qcow2().StopReaders)}
	n, err := backup.Sweep(ctx, o)
	// FUSE mounts whose voltar mount was killed.
	k, merr := mountfs.Sweeper{RuntimeDir: a.cfg.RuntimeDir}.Sweep(ctx)
	n += k
	err = errors.Join(err, merr)
	if n > 0 {
		a.log.Info("released leftovers of dead runs", "count", n)
	}
	if err != nil {
		return fail.Hint(fmt.Errorf("cleanup of a dead run's leftovers: %w", err),
			"release them by hand (umount, losetup -d, lvremove), then run voltar again")
	}
	return nil
}
