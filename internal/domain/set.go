// Package domain backs up a libvirt domain: every disk of the guest
// snapshotted at one instant, with the guest's filesystems frozen through
// qemu-guest-agent when it answers, then each disk archived as the backup
// of its own volume by the one-volume pipeline (internal/backup).
//
// The instant is made inside backup's own sequence: each disk's backup
// runs backup.Volume with a Snapshotter (member) whose Create waits until
// every disk of the domain reached its Create; the last one to arrive
// freezes the guest, creates every disk's snapshot with the disk's own
// snapshotter (lvm, image, qcow2), thaws, and hands each its snapshot. So
// journaling, hooks, preflight and release stay backup's, unchanged.
package domain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"voltar/internal/backup"
	"voltar/internal/cleanup"
	"voltar/internal/fail"
	"voltar/internal/manifest"
	"voltar/internal/volume"
)

// DefaultFreezeTimeout bounds a guest freeze when the config does not.
const DefaultFreezeTimeout = 10 * time.Second

// thawTimeout bounds a thaw: libvirt serializes agent commands, so a thaw
// after a freeze that timed out first waits for that one to end.
const thawTimeout = 30 * time.Second

// StageFrozen is passed to Options.Inject while the guest is frozen,
// before the snapshots are made.
const StageFrozen = "frozen"

// StageOverlaid is passed to Options.Inject once the external snapshot
// is made (its overlays exist), the guest thawed and the images opened
// below the overlays, before they are handed to the disks' backups.
const StageOverlaid = "overlaid"

// Member is one disk of the domain to back up.
type Member struct {
	Target string // the disk's name in the guest: vda
	Volume volume.Volume
	// Options are the disk's backup options; their Snapshotter is the
	// disk's own (lvm, image, qcow2).
	Options backup.Options
}

// Freezer freezes and thaws a domain's guest: Client, through libvirt.
type Freezer interface {
	// Freeze freezes the guest's filesystems and returns how many.
	Freeze(ctx context.Context, domain string) (int, error)
	// Thaw thaws them and returns how many.
	Thaw(ctx context.Context, domain string) (int, error)
	// SocketPath is libvirt's socket, recorded in the journal's freeze
	// entry for the sweep (ThawLeftover).
	SocketPath() string
}

var _ Freezer = (*Client)(nil)

// Options configure the backup of one domain.
type Options struct {
	Client Freezer
	Domain string
	UUID   string
	// FreezeTimeout bounds the freeze (0: DefaultFreezeTimeout).
	FreezeTimeout time.Duration
	// Running: the domain runs, so its guest is frozen for the
	// snapshots; a domain that is shut off is not (its disks are not in
	// use: consistency offline).
	Running bool
	// RequireFreeze fails the domain when its guest cannot be frozen,
	// instead of backing it up crash-consistent.
	RequireFreeze bool
	RunID         string
	Journal       *cleanup.Journal
	Logger        *slog.Logger
	// Overlays, when set, takes the point in time of a running domain's
	// image disks that cannot be cloned with a reflink: an external
	// snapshot through libvirt (external.go), its overlays in Scratch,
	// named with Scope. Nil: such a disk's own snapshotter decides (a raw
	// image is copied, a live qcow2 image refused).
	Overlays Overlayer
	Scratch  string
	Scope    string
	// Reflinks says whether the filesystem of dir can clone files
	// (nil: image.CanReflink).
	Reflinks func(dir string) bool
	// Inject, when set, is called at StageFrozen and at StageOverlaid
	// and may return an error to simulate a failure there. For tests.
	Inject func(stage string) error
}

// Result is the outcome of one disk: its manifest when the backup is
// stored, and what went wrong (both may be set: stored, but the thaw or
// the release failed).
type Result struct {
	Target   string
	Volume   volume.Volume
	Manifest *manifest.Manifest
	Err      error
}

// Backup backs up the domain's disks as one set and returns one Result
// per member, in order.
func Backup(ctx context.Context, members []Member, o Options) []Result {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.FreezeTimeout <= 0 {
		o.FreezeTimeout = DefaultFreezeTimeout
	}
	log := o.Logger.With("domain", o.Domain)
	s := &set{o: o, log: log, members: members,
		arrive: make(chan arrival), finished: make(chan int, len(members))}
	s.views = make([]*view, len(members))
	s.info = &volume.Set{ID: o.RunID + "/" + o.Domain, Domain: o.Domain, UUID: o.UUID}
	for _, m := range members {
		s.info.Disks = append(s.info.Disks, volume.SetDisk{Target: m.Target, Volume: m.Volume.ID()})
	}
	results := make([]Result, len(members))
	// ended[i] closes when disk i's backup returned: disk i+1 reads its
	// snapshot only then (backup.Options.Turn; its post_snapshot hook ran
	// already), so a domain's disks are archived one after the other, in
	// the one slot of concurrency the domain takes.
	ended := make([]chan struct{}, len(members))
	for i := range ended {
		ended[i] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for i, m := range members {
		bo := m.Options
		bo.Snapshotter = &member{inner: m.Options.Snapshotter, set: s, i: i}
		if i > 0 {
			prev := ended[i-1]
			bo.Turn = func(ctx context.Context) error {
				// Not on ctx: the previous disk's backup ends soon
				// after a cancel anyway, and this one's next stage
				// sees it.
				<-prev
				return nil
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			man, err := backup.Volume(ctx, m.Volume, bo)
			results[i] = Result{Target: m.Target, Volume: m.Volume, Manifest: man, Err: err}
			close(ended[i])
			s.finished <- i
		}()
	}
	coordinated := make(chan struct{})
	go func() { s.coordinate(ctx); close(coordinated) }()
	wg.Wait()
	<-coordinated
	if err := errors.Join(s.thawErr, s.settleErr); err != nil {
		for i := range results {
			results[i].Err = errors.Join(results[i].Err, err)
		}
	}
	return results
}

// arrival is a member's Create waiting for the set to be taken.
type arrival struct {
	i     int
	reply chan taken
}

// taken is what a member's Create returns.
type taken struct {
	snap *volume.Snapshot
	err  error
}

// set is the state of one domain's backup.
type set struct {
	o        Options
	log      *slog.Logger
	members  []Member
	info     *volume.Set
	arrive   chan arrival
	finished chan int
	// thawErr: the guest may still be frozen; every disk's result says so.
	thawErr error
	// views, by member: the disks whose point in time is an external
	// snapshot (nil for the others).
	views []*view
	// settleErr: an overlay no disk's backup got could not be committed
	// back (the guest runs on it); every disk's result says so.
	settleErr error
}

// errSibling fails the disks of a set one of whose disks failed before
// or at its snapshot: they were not taken at one instant with it.
type errSibling struct {
	target string
	err    error
}

func (e *errSibling) Error() string {
	return fmt.Sprintf("not backed up: disk %s of the same domain failed (%v), and a domain's disks are taken together or not at all", e.target, e.err)
}

// coordinate waits until every member reached its Create, takes the set,
// and answers each; when a member ends before it arrived, the set cannot
// be taken and every Create fails.
func (s *set) coordinate(ctx context.Context) {
	n := len(s.members)
	var waiting []arrival
	done := map[int]bool{}
	var abort error
	for len(done) < n {
		select {
		case a := <-s.arrive:
			if abort != nil {
				a.reply <- taken{err: abort}
				continue
			}
			waiting = append(waiting, a)
			if len(waiting) == n {
				s.take(ctx, waiting)
				waiting = nil
				abort = errors.New("the set was taken already") // no second arrival
			}
		case i := <-s.finished:
			done[i] = true
			if abort == nil {
				abort = fail.Hint(&errSibling{target: s.members[i].Target, err: errors.New("it stopped before its snapshot")},
					"see the error of disk %s", s.members[i].Target)
				for _, a := range waiting {
					a.reply <- taken{err: abort}
				}
				waiting = nil
			}
		}
	}
}

// take freezes the guest, snapshots every disk, thaws, and answers
// every arrival.
func (s *set) take(ctx context.Context, ws []arrival) {
	o, log := s.o, s.log
	all := func(err error) {
		for _, a := range ws {
			a.reply <- taken{err: err}
		}
	}
	// Journaled before the freeze: a run killed while the guest is
	// frozen leaves the entry, and the next command's sweep thaws it.
	ref := FreezeRef{Socket: o.Client.SocketPath(), Domain: o.Domain, UUID: o.UUID}.String()
	if o.Journal != nil {
		if err := o.Journal.Add(cleanup.Freeze, ref); err != nil {
			all(fmt.Errorf("domain %s: journal the freeze: %w", o.Domain, err))
			return
		}
	}
	if !o.Running {
		s.answer(ctx, ws, s.snapshots(ctx, ws), manifest.ConsistencyOffline)
		return
	}
	// Journaled before they are made, each overlay: a run killed after
	// the external snapshot leaves the guest writing into it, and the
	// next command's sweep commits it back. An overlay not handed to
	// its disk's backup is settled here, after the thaw (deferred
	// first, so it runs last).
	if err := s.plan(ws); err != nil {
		all(err)
		return
	}
	defer s.settleUnhanded(ctx)
	thawed := false
	thaw := func() {
		if thawed {
			return
		}
		thawed = true
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), thawTimeout)
		defer cancel()
		n, err := o.Client.Thaw(tctx, o.Domain)
		switch {
		case err == nil:
			log.Info("guest thawed", "filesystems", n)
		case NoAgent(err) || NotRunning(err):
			// Nothing answers that could be frozen.
			log.Info("guest not thawed: nothing to thaw", "why", err)
		default:
			s.thawErr = fail.Hint(fmt.Errorf("domain %s: thaw: %w; the guest's filesystems may still be frozen", o.Domain, err),
				"thaw it by hand (virsh domfsthaw %s); the next voltar command retries", o.Domain)
			log.Error("guest not thawed", "err", err)
			return // the journal entry stays for the next sweep
		}
		if o.Journal != nil {
			o.Journal.Done(cleanup.Freeze, ref)
		}
	}
	defer thaw() // whatever happens after the freeze was attempted

	start := time.Now()
	fctx, cancel := context.WithTimeout(ctx, o.FreezeTimeout)
	n, err := o.Client.Freeze(fctx, o.Domain)
	timedOut := errors.Is(fctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	cancel()
	if ctx.Err() != nil {
		all(fmt.Errorf("domain %s: %w", o.Domain, context.Cause(ctx)))
		return
	}
	var notFrozen error
	switch {
	case err == nil && n > 0:
		log.Info("guest frozen", "filesystems", n, "took", time.Since(start).Round(time.Millisecond))
	case err == nil:
		notFrozen = errors.New("the guest agent froze no filesystem")
	case timedOut:
		notFrozen = fmt.Errorf("the freeze did not finish within freeze_timeout (%s)", o.FreezeTimeout)
	case NoAgent(err):
		notFrozen = fmt.Errorf("no guest agent answers: %w", err)
	default:
		notFrozen = fmt.Errorf("freeze: %w", err)
	}
	if notFrozen != nil {
		if o.RequireFreeze {
			all(fail.Hint(fmt.Errorf("domain %s: require_freeze is set, but the guest cannot be frozen: %w", o.Domain, notFrozen),
				"run qemu-guest-agent in the guest, with a virtio-serial channel named org.qemu.guest_agent.0 in the domain (`virsh domfsfreeze %s` must work); or set require_freeze: false to accept crash-consistent backups", o.Domain))
			return
		}
		log.Warn("guest not frozen: its disks are backed up crash-consistent", "err", notFrozen)
	}
	if o.Inject != nil && notFrozen == nil {
		if err := o.Inject(StageFrozen); err != nil {
			all(fmt.Errorf("domain %s: %s: %w", o.Domain, StageFrozen, err))
			return
		}
	}

	consistency := ""
	if notFrozen == nil {
		consistency = manifest.ConsistencyFrozen
	}
	extErr := s.overlay(ctx)
	got := s.snapshots(ctx, ws)
	thaw()
	if notFrozen == nil {
		log.Info("disks snapshotted while frozen", "disks", len(ws), "frozen_for", time.Since(start).Round(time.Millisecond))
	}
	s.readInPlace(ctx, ws, got, extErr)
	s.answer(ctx, ws, got, consistency)
}

// snapshots creates every arrival's snapshot, all at once (a disk with
// an external snapshot's comes later, readInPlace).
func (s *set) snapshots(ctx context.Context, ws []arrival) []taken {
	o := s.o
	got := make([]taken, len(ws))
	var wg sync.WaitGroup
	for k, a := range ws {
		if s.views[a.i] != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := s.members[a.i]
			snap, err := m.Options.Snapshotter.Create(ctx, m.Volume, o.RunID)
			got[k] = taken{snap: snap, err: err}
		}()
	}
	wg.Wait()
	return got
}

// answer hands every arrival its snapshot, or, when any failed, an error
// (what was made is released: the set is taken whole or not at all).
func (s *set) answer(ctx context.Context, ws []arrival, got []taken, consistency string) {
	failed := -1
	for k, t := range got {
		if t.err != nil {
			failed = k
			break
		}
	}
	if failed >= 0 {
		// The set is not whole: give back what was made, fail every disk.
		ft := s.members[ws[failed].i].Target
		for k, t := range got {
			a := ws[k]
			if t.err != nil {
				a.reply <- taken{err: t.err}
				continue
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), thawTimeout)
			rerr := s.release(rctx, a.i, t.snap)
			cancel()
			a.reply <- taken{err: errors.Join(fail.Hint(&errSibling{target: ft, err: got[failed].err}, "see the error of disk %s", ft), rerr)}
		}
		return
	}
	for k, t := range got {
		a := ws[k]
		info := *s.info
		info.Disk = s.members[a.i].Target
		t.snap.Set = &info
		t.snap.Consistency = consistency
		if v := s.views[a.i]; v != nil {
			v.mu.Lock()
			v.handed = true
			v.mu.Unlock()
		}
		a.reply <- t
	}
}

// FreezeRef is the journal's record of a guest that may be frozen.
type FreezeRef struct {
	Socket string `json:"socket"`
	Domain string `json:"domain"`
	UUID   string `json:"uuid,omitempty"`
}

// String is the journal entry's ref.
func (f FreezeRef) String() string {
	b, _ := json.Marshal(f)
	return string(b)
}
