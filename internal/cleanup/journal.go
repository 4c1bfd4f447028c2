// Package cleanup records every resource a run creates (snapshots, clones,
// image exports, loop devices, mounts, half-written backup folders) in an append-only
// journal on disk, so that after a kill -9 or a power loss the next run can
// release exactly what the dead one held.
package cleanup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Resource kinds, released in reverse order of creation.
const (
	Mount   = "mount"   // ref: mount point
	Loop    = "loop"    // ref: /dev/loopN
	Clone   = "clone"   // ref: path of an image clone or copy
	LV      = "lv"      // ref: vg/lv of a snapshot
	Partial = "partial" // ref: store prefix of a backup being written
	Export  = "export"  // ref: the file a qemu-storage-daemon exports an image on
	Hook    = "hook"    // ref: a post_snapshot hook owed, as JSON (argv, env, timeout)
	Freeze  = "freeze"  // ref: a libvirt guest whose filesystems may be frozen, as JSON (socket, domain)
	Overlay = "overlay" // ref: a libvirt external snapshot's overlay a running guest may write into, as JSON (socket, domain, target, file)
)

type record struct {
	Op   string `json:"op"` // add | done
	Kind string `json:"kind"`
	Ref  string `json:"ref"`
}

// Journal is one run's record. Its methods are safe for concurrent use.
type Journal struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// Start creates the journal for runID under stateDir/runs.
func Start(stateDir, runID string) (*Journal, error) {
	dir := filepath.Join(stateDir, "runs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	p := filepath.Join(dir, runID+".journal")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &Journal{path: p, f: f}, nil
}

// Add records a resource before (or right as) it is created. It is synced
// to disk, so a crash right after the creation still leaves the record.
func (j *Journal) Add(kind, ref string) error { return j.write(record{"add", kind, ref}) }

// Done records that a resource was released.
func (j *Journal) Done(kind, ref string) error { return j.write(record{"done", kind, ref}) }

func (j *Journal) write(r record) error {
	if j == nil {
		return nil
	}
	b, _ := json.Marshal(r)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("journal closed")
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	return j.f.Sync()
}

// Finish removes the journal if everything it recorded was released; if not,
// it keeps it so the next run can release the rest.
func (j *Journal) Finish() error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	j.f.Close()
	j.f = nil
	open, err := outstanding(j.path)
	if err != nil {
		return err
	}
	if len(open) > 0 {
		return fmt.Errorf("%d resources not released; the next voltar command will retry (journal %s)", len(open), j.path)
	}
	return os.Remove(j.path)
}

// Handler releases one resource of a kind; releasing something already gone
// must succeed.
type Handler func(ctx context.Context, ref string) error

// Later wraps the error of a release that can wait: the resource costs
// nothing while it waits (an unfinished backup in a store that cannot be
// reached now). SweepJournals then keeps the journal for the next sweep and
// logs a warning instead of failing, so an unreachable store does not stop
// every command from running.
func Later(err error) error { return &laterError{err} }

type laterError struct{ err error }

func (e *laterError) Error() string { return e.err.Error() }
func (e *laterError) Unwrap() error { return e.err }

// Entry is a resource found in a dead run's journal.
type Entry struct{ Kind, Ref string }

// SweepJournals releases what dead runs recorded and did not release, newest
// resource first. The caller must hold the run lock, which proves every
// journal present belongs to a dead run. A journal is removed once all of
// its resources are released.
func SweepJournals(ctx context.Context, stateDir string, handlers map[string]Handler, log *slog.Logger) ([]Entry, error) {
	files, _ := filepath.Glob(filepath.Join(stateDir, "runs", "*.journal"))
	sort.Strings(files)
	var released []Entry
	var errs []error
	for _, p := range files {
		open, err := outstanding(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		failed := false
		var here []Entry
		for i := len(open) - 1; i >= 0; i-- {
			e := open[i]
			h := handlers[e.Kind]
			if h == nil {
				continue
			}
			if err := h(ctx, e.Ref); err != nil {
				failed = true
				var later *laterError
				if errors.As(err, &later) {
					log.Warn("leftover of a dead run kept for a later run", "run", runOf(p), "kind", e.Kind, "ref", e.Ref, "err", err)
					continue
				}
				errs = append(errs, fmt.Errorf("release %s %s left by run %s: %w", e.Kind, e.Ref, runOf(p), err))
				continue
			}
			here = append(here, e)
			log.Info("released leftover of a dead run", "run", runOf(p), "kind", e.Kind, "ref", e.Ref)
		}
		released = append(released, here...)
		if !failed {
			os.Remove(p)
		} else if err := markDone(p, here); err != nil {
			errs = append(errs, err)
		}
	}
	return released, errors.Join(errs...)
}

// markDone appends done records for entries released from a journal that
// is kept (something else in it is not released yet), so the next sweep
// does not release them again.
func markDone(path string, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	var b []byte
	for _, e := range entries {
		line, _ := json.Marshal(record{"done", e.Kind, e.Ref})
		b = append(append(b, line...), '\n')
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	return nil
}

func runOf(journal string) string {
	return strings.TrimSuffix(filepath.Base(journal), ".journal")
}

// outstanding returns the resources added and not done, in creation order.
func outstanding(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	defer f.Close()
	var order []Entry
	open := map[Entry]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r record
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue // a torn last line from a crash
		}
		e := Entry{r.Kind, r.Ref}
		switch r.Op {
		case "add":
			open[e]++
			order = append(order, e)
		case "done":
			open[e]--
		}
	}
	var out []Entry
	for i := len(order) - 1; i >= 0; i-- {
		e := order[i]
		if open[e] > 0 {
			open[e]--
			out = append([]Entry{e}, out...)
		}
	}
	return out, sc.Err()
}
