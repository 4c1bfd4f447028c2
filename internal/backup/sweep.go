package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"voltar/internal/cleanup"
	"voltar/internal/disk"
	"voltar/internal/folder"
	"voltar/internal/hook"
	"voltar/internal/store"
	"voltar/internal/volume"
)

// SweepOptions say where dead runs may have left things.
type SweepOptions struct {
	RuntimeDir string
	StateDir   string
	// OpenStore opens the store a journal names, to remove unfinished backups.
	OpenStore func(ctx context.Context, name string) (store.Store, error)
	// Sweepers remove the snapshots dead runs' journals name, each those
	// of its kinds, and then search for unjournaled ones by their marks.
	Sweepers []volume.Sweeper
	// JournalOnly sweepers only remove what journals name: searching
	// costs a scan (every VG's LVs) that commands not using them skip.
	JournalOnly []volume.Sweeper
	// Handlers release journal kinds backup itself does not make (a
	// libvirt guest left frozen: cleanup.Freeze).
	Handlers map[string]cleanup.Handler
	Logger   *slog.Logger
}

// Sweep releases everything dead runs left behind: first what their
// journals name, then anything carrying voltar's marks (mounts under the
// runtime directory, loop devices tagged voltar:, and what o.Sweepers find:
// LVs tagged voltar, clones named for this installation). The caller must
// hold the run lock.
func Sweep(ctx context.Context, o SweepOptions) (int, error) {
	log := o.Logger
	// Several dead runs' partial backups usually name one store: open it
	// once (an unreachable S3 endpoint costs its timeout only once, too).
	type opened struct {
		st  store.Store
		err error
	}
	stores := map[string]opened{}
	openStore := func(ctx context.Context, name string) (store.Store, error) {
		if s, ok := stores[name]; ok {
			return s.st, s.err
		}
		st, err := o.OpenStore(ctx, name)
		stores[name] = opened{st, err}
		return st, err
	}
	handlers := map[string]cleanup.Handler{
		cleanup.Mount: func(ctx context.Context, dir string) error {
			if err := disk.Unmount(dir); err != nil {
				return err
			}
			os.Remove(dir)
			return nil
		},
		cleanup.Loop: func(ctx context.Context, dev string) error { return detachIfOurs(dev, o.RuntimeDir) },
		cleanup.Partial: func(ctx context.Context, ref string) error {
			name, prefix, ok := strings.Cut(ref, "\t")
			if !ok || o.OpenStore == nil {
				return nil
			}
			// An unfinished backup is never mistaken for one (it has no
			// manifest), so removing it can wait for a store that answers.
			st, err := openStore(ctx, name)
			if err != nil {
				return cleanup.Later(err)
			}
			if err := folder.RemovePartial(ctx, st, prefix); err != nil {
				return cleanup.Later(err)
			}
			return nil
		},
	}
	// A post hook a killed run owed: run once, logged if it fails (a
	// hook that keeps failing is not run again by every command).
	handlers[cleanup.Hook] = func(ctx context.Context, ref string) error {
		if err := hook.RunOwed(ctx, ref, log); err != nil {
			log.Error("post_snapshot hook of a dead run failed", "err", err)
		}
		return nil
	}
	handlers[cleanup.LV] = func(ctx context.Context, lv string) error {
		return fmt.Errorf("snapshot %s left behind, but LVM is not available to remove it", lv)
	}
	for _, sw := range append(append([]volume.Sweeper{}, o.Sweepers...), o.JournalOnly...) {
		for _, k := range sw.Kinds() {
			if jk := journalKind(k); jk != "" {
				handlers[jk] = sw.RemoveLeftover
			}
		}
	}
	for k, h := range o.Handlers {
		handlers[k] = h
	}
	released, err := cleanup.SweepJournals(ctx, o.StateDir, handlers, log)
	n := len(released)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}

	// Marks, for what a journal could not record (a crash between creating
	// and journaling, or a lost state directory).
	mounts, err := disk.MountsUnder(o.RuntimeDir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range mounts {
		if m == filepath.Clean(o.RuntimeDir) {
			continue // only what is mounted below it is ours
		}
		if err := disk.Unmount(m); err != nil {
			errs = append(errs, fmt.Errorf("unmount leftover %s: %w", m, err))
			continue
		}
		n++
		log.Info("unmounted leftover of a dead run", "dir", m)
	}
	loops, err := disk.ListLoops()
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range loops {
		if l.Err != nil {
			log.Warn("cannot tell whose loop device this is; leaving it alone", "device", l.Path, "backing", l.Backing, "err", l.Err)
			continue
		}
		if !strings.HasPrefix(l.Tag, loopTagPrefix(o.RuntimeDir)) {
			continue
		}
		if err := disk.DetachLoop(l.Path); err != nil {
			errs = append(errs, fmt.Errorf("detach leftover %s: %w", l.Path, err))
			continue
		}
		n++
		log.Info("detached leftover loop device of a dead run", "device", l.Path, "backing", l.Backing)
	}
	// Snapshots (tagged LVs, clones named for this installation).
	for _, sw := range o.Sweepers {
		k, err := sw.Sweep(ctx)
		n += k
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Empty run directories under the runtime directory.
	runs, _ := os.ReadDir(o.RuntimeDir)
	for _, e := range runs {
		if e.IsDir() {
			removeEmptyTree(filepath.Join(o.RuntimeDir, e.Name()))
		}
	}
	return n, errors.Join(errs...)
}

// detachIfOurs detaches dev only if it still carries this voltar's tag: the
// number may have been reused by someone else since the run died.
func detachIfOurs(dev, runtimeDir string) error {
	loops, err := disk.ListLoops()
	if err != nil {
		return err
	}
	for _, l := range loops {
		// A device whose backing file is gone (a qcow2 export whose
		// storage daemon died: ENOTCONN) shows no tag: the journal's word
		// that it is ours is all there is, and nothing can use it anyway.
		if l.Path == dev && (strings.HasPrefix(l.Tag, loopTagPrefix(runtimeDir)) || errors.Is(l.Err, unix.ENOTCONN)) {
			return disk.DetachLoop(dev)
		}
	}
	return nil
}

func removeEmptyTree(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			removeEmptyTree(filepath.Join(dir, e.Name()))
		}
	}
	os.Remove(dir) // fails, harmlessly, unless empty
}
