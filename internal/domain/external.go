package domain

// A running domain's disk whose image cannot be cloned with a reflink
// gets its point in time from libvirt instead: an external disk-only
// snapshot, taken within the set's instant, moves the guest's writes into
// a qcow2 overlay in the scratch directory, and the image below it stays
// as it was at that instant. The disk's own snapshotter reads the image
// in place, as an offline image; when the disk is archived, the overlay
// is committed back (an active block commit and a pivot) and removed.
// The overlay is journaled before it is made (cleanup.Overlay), so the
// next command's sweep commits back what a killed run left
// (CommitLeftover).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"voltar/internal/cleanup"
	"voltar/internal/fail"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
)

// OverlayPrefix starts the file name of every overlay voltar has libvirt
// make. It is not an image clone's prefix: the image sweeper removes
// clones by name, and an overlay a guest still writes into must never be
// removed.
const OverlayPrefix = ".voltar-overlay-"

// commitTimeout bounds the commit of one overlay back into its image:
// the overlay holds what the guest wrote while the disk was archived.
const commitTimeout = 30 * time.Minute

// Overlayer makes and merges libvirt's external snapshots: Client.
type Overlayer interface {
	// SnapshotDisks moves each disk of overlays (target -> file) of the
	// running domain onto a new qcow2 overlay file, atomically.
	SnapshotDisks(ctx context.Context, domain string, overlays map[string]string) error
	// DiskSource is the file the disk target reads now, and whether the
	// domain runs.
	DiskSource(ctx context.Context, domain, target string) (string, bool, error)
	// Commit merges the disk's overlay into the image below it and
	// pivots the disk back onto that image.
	Commit(ctx context.Context, domain, target string) error
	SocketPath() string
}

var _ Overlayer = (*Client)(nil)

// OverlayRef is the journal's record of an overlay (cleanup.Overlay).
type OverlayRef struct {
	Socket string `json:"socket"`
	Domain string `json:"domain"`
	UUID   string `json:"uuid,omitempty"`
	Target string `json:"target"`
	// File is the overlay; Image the disk's file below it.
	File  string `json:"file"`
	Image string `json:"image"`
}

// String is the journal entry's ref.
func (r OverlayRef) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// OverlayPath is where the overlay of the domain's disk target goes for
// run runID of the installation with scope: the scratch directory.
func OverlayPath(scratch, scope, runID, domain, target string) string {
	return filepath.Join(scratch, OverlayPrefix+scope+"-"+runID+"-"+unsafeName.ReplaceAllString(domain, "_")+"-"+unsafeName.ReplaceAllString(target, "_")+".qcow2")
}

// ErrOverlayInUse: the domain still writes into the overlay (its commit
// failed); the overlay and its journal entry are kept.
var ErrOverlayInUse = errors.New("the domain still runs on the overlay")

// settle ends an overlay: when the domain's disk runs on it, it is
// committed back and the disk pivoted onto its image; then, once no
// domain uses it, the file is removed. An overlay never made, or made
// and committed already, is only removed. It fails with ErrOverlayInUse
// when the disk still runs on it, and never removes it then.
func settle(ctx context.Context, c Overlayer, r OverlayRef, log *slog.Logger) error {
	if !strings.HasPrefix(filepath.Base(r.File), OverlayPrefix) {
		return fmt.Errorf("refusing to remove %s: not a voltar overlay", r.File)
	}
	src, running, err := c.DiskSource(ctx, r.Domain, r.Target)
	switch {
	case err != nil && NotRunning(err):
		// The domain is gone: nothing uses the overlay, but it holds
		// what the guest wrote since the snapshot. Left for a human.
		if _, serr := os.Stat(r.File); serr == nil {
			log.Warn("domain gone: its disk's overlay is left in place; it holds the guest's writes since the snapshot",
				"disk", r.Target, "overlay", r.File,
				"hint", fmt.Sprintf("merge it with `qemu-img commit %s` (into %s) if the domain is to run again, or remove it", r.File, r.Image))
		}
		return nil
	case err != nil:
		return fmt.Errorf("disk %s of domain %s: %w", r.Target, r.Domain, err)
	}
	if src == r.File {
		if !running {
			return fail.Hint(fmt.Errorf("disk %s of domain %s: %w %s, and the domain is shut off: it cannot be committed back now", r.Target, r.Domain, ErrOverlayInUse, r.File),
				"start the domain and run any voltar command (it commits the overlay back), or by hand: `qemu-img commit %s`, then point the disk back at %s (virsh edit %s)", r.File, r.Image, r.Domain)
		}
		cctx, cancel := context.WithTimeout(ctx, commitTimeout)
		err := c.Commit(cctx, r.Domain, r.Target)
		cancel()
		if src2, _, err2 := c.DiskSource(ctx, r.Domain, r.Target); err2 != nil || src2 == r.File {
			return fail.Hint(fmt.Errorf("disk %s of domain %s: %w %s: commit back: %w", r.Target, r.Domain, ErrOverlayInUse, r.File, errors.Join(err, err2)),
				"the guest is fine and writes into the overlay; commit it back by hand with `virsh blockcommit %s %s --active --pivot --wait` (the next voltar command retries), then remove %s", r.Domain, r.Target, r.File)
		}
		log.Info("overlay committed back", "disk", r.Target, "image", r.Image)
	}
	if err := os.Remove(r.File); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove overlay %s: %w", r.File, err)
	}
	return nil
}

// view is one disk's external snapshot in a set: its overlay, the
// snapshot its own snapshotter made of the image below it (inner), and
// the one backup got (outer, of kind external).
type view struct {
	ref   OverlayRef
	inner volume.Snapshotter

	mu      sync.Mutex
	snap    *volume.Snapshot // inner's
	outer   *volume.Snapshot
	settled bool
	// handed: its disk's backup got the snapshot, and settles the
	// overlay when it releases it.
	handed bool
}

// settle ends the view's overlay once; a failure (the domain still runs
// on it) keeps its journal entry for the next command's sweep.
func (v *view) settle(ctx context.Context, c Overlayer, j *cleanup.Journal, log *slog.Logger) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.settled {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout+time.Minute)
	defer cancel()
	if err := settle(ctx, c, v.ref, log); err != nil {
		log.Error("overlay not committed back: the domain writes into it", "disk", v.ref.Target, "overlay", v.ref.File, "err", err)
		return err
	}
	v.settled = true
	if j != nil {
		j.Done(cleanup.Overlay, v.ref.String())
	}
	return nil
}

// wrap is what backup gets for the view's inner snapshot: the same
// device, of kind external, named by the overlay.
func (v *view) wrap(inner *volume.Snapshot) *volume.Snapshot {
	out := *inner
	out.Kind, out.Name = volume.KindExternal, v.ref.File
	v.mu.Lock()
	v.snap, v.outer = inner, &out
	v.mu.Unlock()
	return &out
}

// innerOf is the inner snapshot of s, when s is the view's outer one.
func (v *view) innerOf(s *volume.Snapshot) (*volume.Snapshot, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s == nil || s != v.outer {
		return nil, false
	}
	return v.snap, true
}

// release releases the inner snapshot (the image read in place: a
// qcow2 image's storage daemon stops, which the commit needs) and then
// settles the overlay.
func (v *view) release(ctx context.Context, s *volume.Snapshot, c Overlayer, j *cleanup.Journal, log *slog.Logger) error {
	inner, ok := v.innerOf(s)
	if !ok {
		return v.inner.Release(ctx, s)
	}
	err := v.inner.Release(ctx, inner)
	return errors.Join(err, v.settle(ctx, c, j, log))
}

// CommitLeftover is the sweep's handler of cleanup.Overlay: an overlay
// a killed run left is committed back into its image (the domain's disk
// pivoted back onto it) and removed. A commit that fails keeps the entry
// for a later command, with a warning saying what to run by hand.
// Before the commit, release (when not nil) lets go of whatever of the
// dead run still reads the image (a qcow2 image's storage daemon: QEMU
// cannot write into an image another process holds, and the journal
// names the daemon's export before the overlay, so it would be stopped
// only after the commit).
func CommitLeftover(log *slog.Logger, release func(ctx context.Context, image string) error) cleanup.Handler {
	return func(ctx context.Context, ref string) error {
		var r OverlayRef
		if err := json.Unmarshal([]byte(ref), &r); err != nil || r.Domain == "" || r.File == "" {
			return fmt.Errorf("overlay %q: not a domain's overlay", ref)
		}
		if release != nil && r.Image != "" {
			if err := release(ctx, r.Image); err != nil {
				return fmt.Errorf("overlay %s of domain %s: release what reads %s: %w", r.File, r.Domain, r.Image, err)
			}
		}
		c := &Client{Socket: r.Socket}
		defer c.Close()
		log := log.With("domain", r.Domain)
		if err := settle(ctx, c, r, log); err != nil {
			if errors.Is(err, ErrOverlayInUse) {
				return cleanup.Later(err)
			}
			if errors.Is(err, ErrUnavailable) {
				return cleanup.Later(fmt.Errorf("overlay %s of domain %s: %w", r.File, r.Domain, err))
			}
			return err
		}
		log.Warn("committed back the overlay of a killed run", "disk", r.Target, "overlay", r.File)
		return nil
	}
}

// plan picks the disks whose point in time is an external snapshot (the
// domain runs, an Overlayer is set, and the image's filesystem cannot
// reflink) and journals their overlays.
func (s *set) plan(ws []arrival) error {
	o := s.o
	if o.Overlays == nil {
		return nil
	}
	reflinks := o.Reflinks
	if reflinks == nil {
		reflinks = image.CanReflink
	}
	for _, a := range ws {
		m := s.members[a.i]
		if m.Volume.Kind != volume.KindImage || m.Volume.Offline || reflinks(filepath.Dir(m.Volume.Path)) {
			continue
		}
		ref := OverlayRef{Socket: o.Overlays.SocketPath(), Domain: o.Domain, UUID: o.UUID, Target: m.Target,
			File: OverlayPath(o.Scratch, o.Scope, o.RunID, o.Domain, m.Target), Image: m.Volume.Path}
		if o.Journal != nil {
			if err := o.Journal.Add(cleanup.Overlay, ref.String()); err != nil {
				return fmt.Errorf("domain %s: journal the overlay of %s: %w", o.Domain, m.Target, err)
			}
		}
		s.views[a.i] = &view{ref: ref, inner: m.Options.Snapshotter}
		s.log.Info("image cannot be cloned with a reflink: its point in time is an external snapshot through libvirt",
			"disk", m.Target, "image", m.Volume.Path, "overlay", ref.File)
	}
	return nil
}

// overlay makes the external snapshot of every disk with a view, in one
// atomic call, inside the set's instant.
func (s *set) overlay(ctx context.Context) error {
	o := s.o
	files := map[string]string{}
	for _, v := range s.views {
		if v != nil {
			files[v.ref.Target] = v.ref.File
		}
	}
	if len(files) == 0 {
		return nil
	}
	if err := os.MkdirAll(o.Scratch, 0o700); err != nil {
		return fail.Hint(fmt.Errorf("scratch directory: %w", err), "set scratch_dir to a writable directory")
	}
	start := time.Now()
	if err := o.Overlays.SnapshotDisks(ctx, o.Domain, files); err != nil {
		return fail.Hint(fmt.Errorf("domain %s: external snapshot: %w", o.Domain, err),
			"put the domain's images on a filesystem with reflinks (xfs, btrfs); or check that libvirt can snapshot the domain (`virsh snapshot-create-as %s --disk-only --atomic --no-metadata`) and that QEMU may create files in scratch_dir (%s)", o.Domain, o.Scratch)
	}
	s.log.Info("external snapshot made: the guest writes into overlays", "disks", len(files), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// readInPlace makes the snapshot of every disk with a view: its image,
// stable now below the overlay, read in place by the disk's own
// snapshotter (as an offline image: a raw one as it is, a qcow2 one
// under a throwaway overlay of its own), handed to backup as kind
// external.
func (s *set) readInPlace(ctx context.Context, ws []arrival, got []taken, extErr error) {
	var wg sync.WaitGroup
	for k, a := range ws {
		v := s.views[a.i]
		if v == nil {
			continue
		}
		if extErr != nil {
			got[k] = taken{err: extErr}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := s.members[a.i]
			off := m.Volume
			off.Offline = true
			snap, err := v.inner.Create(ctx, off, s.o.RunID)
			if err != nil {
				got[k] = taken{err: fmt.Errorf("read %s below its overlay: %w", m.Volume.Path, err)}
				return
			}
			got[k] = taken{snap: v.wrap(snap)}
		}()
	}
	wg.Wait()
	if o := s.o; extErr == nil && o.Inject != nil && slices.ContainsFunc(s.views, func(v *view) bool { return v != nil }) {
		if err := o.Inject(StageOverlaid); err != nil {
			err = fmt.Errorf("domain %s: %s: %w", o.Domain, StageOverlaid, err)
			for k, a := range ws {
				if v := s.views[a.i]; v != nil && got[k].snap != nil {
					inner, _ := v.innerOf(got[k].snap)
					got[k] = taken{err: errors.Join(err, v.inner.Release(context.WithoutCancel(ctx), inner))}
				}
			}
		}
	}
}

// release releases member i's snapshot s: through its view when it has
// one (the overlay is committed back then), else with its snapshotter.
func (s *set) release(ctx context.Context, i int, snap *volume.Snapshot) error {
	if v := s.views[i]; v != nil {
		return v.release(ctx, snap, s.o.Overlays, s.o.Journal, s.log)
	}
	return s.members[i].Options.Snapshotter.Release(ctx, snap)
}

// settleUnhanded settles the overlays no disk's backup got: the set
// failed, or their image could not be read.
func (s *set) settleUnhanded(ctx context.Context) {
	for _, v := range s.views {
		if v == nil {
			continue
		}
		v.mu.Lock()
		handed := v.handed
		v.mu.Unlock()
		if !handed {
			s.settleErr = errors.Join(s.settleErr, v.settle(ctx, s.o.Overlays, s.o.Journal, s.log))
		}
	}
}
