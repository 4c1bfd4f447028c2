// Package lvm snapshots LVM logical volumes: thick snapshots (lvcreate -s -L)
// of linear LVs and thin snapshots of thin LVs. It talks to LVM only through
// lvs/vgs JSON reports and lvcreate/lvchange/lvremove, run by an injected
// sysexec.Runner, and refers to LVs as VG/LV, never by /dev/mapper names.
//
// Every snapshot carries the LVM tags "voltar" and "voltar-run-<runID>" and
// is named "<lv>-voltar-<runID>", so Leftovers finds it after a crash.
package lvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/bmatcuk/doublestar/v4"

	"voltar/internal/lock"
	"voltar/internal/sysexec"
	"voltar/internal/volume"
)

// Tag marks every LV voltar creates.
const Tag = "voltar"

// DefaultInclude selects volumes by LV name when no patterns are given.
var DefaultInclude = []string{"volume-*"}

// ErrNotFound wraps errors for a volume group or LV that does not exist.
var ErrNotFound = errors.New("not found")

// ErrNotVolume wraps errors for a name that is not one of a volume voltar
// backs up: malformed, a snapshot, a pool, inactive. Like ErrNotFound it is
// the caller's to fix; any other Resolve error is LVM failing.
var ErrNotVolume = errors.New("not a volume to back up")

// notVolume is an error that says why and matches ErrNotVolume.
type notVolume struct{ msg string }

func (e *notVolume) Error() string { return e.msg }
func (e *notVolume) Unwrap() error { return ErrNotVolume }

func notVolumef(format string, args ...any) error {
	return &notVolume{fmt.Sprintf(format, args...)}
}

// Snapshotter makes LVM snapshots. The zero Policy means DefaultPolicy.
type Snapshotter struct {
	Runner sysexec.Runner
	Policy Policy
	Logger *slog.Logger
	// Scope, when set, is added to every snapshot as the tag
	// voltar-scope-<Scope>, and Leftovers returns only snapshots of this
	// scope (or of none): one voltar's sweep stays off the snapshots of
	// another that uses a different runtime directory and lock.
	Scope string
	// LockDir, when set, holds a lock per LV (lock.Volume) from Create to
	// Release, which every installation sees whatever its Scope: two
	// voltars never snapshot one LV at once. cmd/voltar sets
	// lock.DefaultVolumeDir.
	LockDir string

	// Space reserved by preflights of snapshots being made at the same
	// time (concurrent volumes of one run share one Snapshotter): a thick
	// snapshot's until lvcreate took it from the VG, a thin one's (whose
	// need is what it may grow to) until it is released.
	mu       sync.Mutex
	reserved map[string]int64       // by "volume group VG" / "thin pool VG/POOL"
	held     map[string]reservation // by the origin's vg/lv
	snaps    map[string]string      // snapshot vg/lv -> origin vg/lv (thin)
	locks    map[string]*lock.Lock  // snapshot vg/lv -> its origin's lock
}

type reservation struct {
	where string
	need  int64
	thin  bool
}

// reserve takes need bytes of where's free bytes for v, unless what
// concurrent snapshots reserved leaves too little; it returns those.
func (s *Snapshotter) reserve(v volume.Volume, where string, need, free int64, thin bool) (reservedByOthers int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reserved == nil {
		s.reserved, s.held, s.snaps = map[string]int64{}, map[string]reservation{}, map[string]string{}
	}
	if old, ok := s.held[v.ID()]; ok { // a second preflight of the same volume
		s.reserved[old.where] -= old.need
		delete(s.held, v.ID())
	}
	others := s.reserved[where]
	if need > free-others {
		return others, false
	}
	s.reserved[where] += need
	s.held[v.ID()] = reservation{where, need, thin}
	return others, true
}

// unreserve gives back what the preflight of origin (vg/lv) reserved.
func (s *Snapshotter) unreserve(origin string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.held[origin]; ok {
		s.reserved[r.where] -= r.need
		delete(s.held, origin)
	}
}

var _ volume.Snapshotter = (*Snapshotter)(nil)

func (s *Snapshotter) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (s *Snapshotter) policy() Policy {
	if s.Policy == (Policy{}) {
		return DefaultPolicy
	}
	return s.Policy
}

// ParseSpec splits "vg/lv" or "/dev/vg/lv" into VG and LV names.
func ParseSpec(spec string) (vgName, lvName string, err error) {
	rest := spec
	if strings.HasPrefix(rest, "/dev/mapper/") {
		return "", "", notVolumef("%q: name the LV as VG/LV or /dev/VG/LV, not by its device-mapper name", spec)
	}
	rest = strings.TrimPrefix(rest, "/dev/")
	vgName, lvName, ok := strings.Cut(rest, "/")
	if !ok || vgName == "" || lvName == "" || strings.Contains(lvName, "/") {
		return "", "", notVolumef("%q: want VG/LV or /dev/VG/LV", spec)
	}
	return vgName, lvName, nil
}

// Resolve finds the volume spec names ("vg/lv" or "/dev/vg/lv") and checks
// that it can be backed up: it exists, is active, and is neither a snapshot
// nor a pool.
func (s *Snapshotter) Resolve(ctx context.Context, spec string) (volume.Volume, error) {
	vgName, lvName, err := ParseSpec(spec)
	if err != nil {
		return volume.Volume{}, err
	}
	rows, err := s.lvsInVG(ctx, vgName)
	if err != nil {
		return volume.Volume{}, fmt.Errorf("resolve %s: %w", spec, err)
	}
	l, ok := find(rows, lvName)
	if !ok {
		return volume.Volume{}, fmt.Errorf("resolve %s: logical volume %q %w in volume group %q", spec, lvName, ErrNotFound, vgName)
	}
	if reason := unusable(l); reason != "" {
		return volume.Volume{}, notVolumef("resolve %s: %s", spec, reason)
	}
	return toVolume(l), nil
}

// unusable says why an LV cannot be backed up as a volume, or "".
func unusable(l lv) string {
	switch {
	case l.hasTag(Tag):
		return fmt.Sprintf("%s is a voltar snapshot (leftover of an earlier run; `voltar run` removes it)", l.id())
	case l.pool():
		return fmt.Sprintf("%s is a %s, not a volume; back up the volumes in it", l.id(), poolKind(l))
	case l.snapshot():
		return fmt.Sprintf("%s is a snapshot of %s/%s; back up the origin instead", l.id(), l.VG, l.Origin)
	case !l.active():
		return fmt.Sprintf("%s is not active; activate it with `lvchange -ay %s`", l.id(), l.id())
	}
	return ""
}

func poolKind(l lv) string {
	if l.Segtype == "" || !strings.HasSuffix(l.Segtype, "-pool") {
		return "pool"
	}
	return strings.TrimSuffix(l.Segtype, "-pool") + " pool"
}

func toVolume(l lv) volume.Volume {
	return volume.Volume{
		Kind:  volume.KindLVM,
		Group: l.VG,
		Name:  l.Name,
		Path:  "/dev/" + l.VG + "/" + l.Name,
		Size:  l.size(),
		UUID:  l.UUID,
	}
}

// Candidate is one LV that List considered, and why it was not selected.
type Candidate struct {
	Volume   volume.Volume
	Selected bool
	Reason   string // empty when selected
}

// Filter selects LVs by name. Include holds glob patterns (path.Match) for
// LV names, or for "vg/lv" when a pattern contains a slash; empty means
// DefaultInclude. Exclude holds doublestar patterns for LV names that
// drop an LV Include selected.
type Filter struct {
	Include []string
	Exclude []string
}

// List reports every LV in the named VGs (all VGs when vgs is empty) and
// whether a run would back it up under f. Snapshots, pools, inactive LVs
// and voltar's own snapshots are never selected.
func (s *Snapshotter) List(ctx context.Context, vgs []string, f Filter) ([]Candidate, error) {
	include := f.Include
	if len(include) == 0 {
		include = DefaultInclude
	}
	for _, p := range include {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("volume filter %q: %w", p, err)
		}
	}
	var rows []lv
	for _, g := range vgs {
		r, err := s.lvsInVG(ctx, g)
		if err != nil {
			return nil, fmt.Errorf("list volumes: %w", err)
		}
		rows = append(rows, r...)
	}
	if len(vgs) == 0 {
		var err error
		if rows, err = s.lvs(ctx); err != nil {
			return nil, fmt.Errorf("list volumes: %w", err)
		}
	}
	out := make([]Candidate, 0, len(rows))
	for _, l := range rows {
		c := Candidate{Volume: toVolume(l), Reason: reason(l, include)}
		if c.Reason == "" {
			c.Reason = excluded(l, f.Exclude)
		}
		c.Selected = c.Reason == ""
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Candidate) int { return strings.Compare(a.Volume.ID(), b.Volume.ID()) })
	return out, nil
}

// excluded names the first pattern of exclude that drops l, or "". The
// reason names the config key, as `voltar volumes` shows it to the one
// who wrote that key.
func excluded(l lv, exclude []string) string {
	for _, p := range exclude {
		if ok, _ := doublestar.Match(p, l.Name); ok {
			return "excluded by lvm.exclude " + p
		}
	}
	return ""
}

// reason says why List does not select l, or "".
func reason(l lv, include []string) string {
	switch {
	case l.hasTag(Tag):
		return "voltar snapshot (leftover)"
	case l.pool():
		return poolKind(l)
	case l.snapshot():
		return "snapshot of " + l.Origin
	case !matches(l, include):
		return "name does not match " + strings.Join(include, ", ")
	case !l.active():
		return "inactive"
	}
	return ""
}

func matches(l lv, include []string) bool {
	for _, p := range include {
		name := l.Name
		if strings.Contains(p, "/") {
			name = l.id()
		}
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
