package lvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"voltar/internal/fail"
	"voltar/internal/lock"
	"voltar/internal/sysexec"
	"voltar/internal/units"
	"voltar/internal/volume"
)

// Snapshot kinds this package creates (volume.Snapshot.Kind).
const (
	KindThick = volume.KindThick
	KindThin  = volume.KindThin
)

// cleanupTimeout bounds removing a half-made snapshot after a failure,
// which runs even when ctx is already cancelled.
const cleanupTimeout = 2 * time.Minute

// SpaceError means a snapshot does not fit in the space it would take from.
type SpaceError struct {
	Volume string // vg/lv being snapshotted
	Need   int64  // bytes the snapshot may take
	Free   int64  // bytes free where it takes them from
	Where  string // "volume group VG" or "thin pool VG/POOL"
	Policy Policy // the snapshot size policy in force
	// Reserved of Free by snapshots of other volumes being made at the
	// same time (backup concurrency).
	Reserved int64
}

func (e *SpaceError) Error() string {
	if e.Reserved > 0 {
		return fmt.Sprintf("snapshot of %s needs %s but %s has %s free, %s of it for snapshots of other volumes backed up at the same time",
			e.Volume, units.Bytes(e.Need), e.Where, units.Bytes(e.Free), units.Bytes(e.Reserved))
	}
	return fmt.Sprintf("snapshot of %s needs %s but %s has %s free",
		e.Volume, units.Bytes(e.Need), e.Where, units.Bytes(e.Free))
}

// hinted is e with what to do about it as a fail.Hint, so that the
// report's JSON and mail carry the hint too, not only the message.
func (e *SpaceError) hinted() error {
	if e.Reserved > 0 {
		return fail.Hint(e, "make room in %s, lower concurrency so fewer snapshots exist at once, or lower snapshot_size (now %s) at the risk of an overflow", e.Where, e.Policy)
	}
	return fail.Hint(e, "make room in %s, or lower snapshot_size (now %s) at the risk of an overflow", e.Where, e.Policy)
}

// Preflight checks that a snapshot of v fits: a thick one (its full COW size
// under the policy) in the VG's free space, a thin one (the origin's mapped
// data, scaled by the policy) in its pool's free data space. It returns the
// bytes needed, or an error wrapping a *SpaceError. Snapshots made at the
// same time through this Snapshotter share that space: a successful
// preflight reserves the need until Create (thick) or Release (thin), and
// later preflights count it as taken.
func (s *Snapshotter) Preflight(ctx context.Context, v volume.Volume) (need int64, err error) {
	rows, err := s.lvsInVG(ctx, v.Group)
	if err != nil {
		return 0, fmt.Errorf("preflight %s: %w", v.ID(), err)
	}
	origin, err := findOrigin(rows, v)
	if err != nil {
		return 0, fmt.Errorf("preflight %s: %w", v.ID(), err)
	}
	pol := s.policy()
	if origin.thin() {
		pool, ok := find(rows, origin.Pool)
		if !ok {
			return 0, fmt.Errorf("preflight %s: thin pool %q not found", v.ID(), origin.Pool)
		}
		mappedPct, _ := percent(origin.DataPercent)
		need = pol.thinNeed(share(origin.size(), mappedPct))
		poolPct, _ := percent(pool.DataPercent)
		free := pool.size() - share(pool.size(), poolPct)
		where := "thin pool " + pool.id()
		if others, ok := s.reserve(v, where, need, free, true); !ok {
			return need, (&SpaceError{Volume: v.ID(), Need: need, Free: free, Where: where, Policy: pol, Reserved: others}).hinted()
		}
		return need, nil
	}
	g, err := s.vgInfo(ctx, v.Group)
	if err != nil {
		return 0, fmt.Errorf("preflight %s: %w", v.ID(), err)
	}
	need = pol.thickSize(origin.size(), parseBytes(g.ExtentSize))
	where := "volume group " + g.Name
	if others, ok := s.reserve(v, where, need, parseBytes(g.Free), false); !ok {
		return need, (&SpaceError{Volume: v.ID(), Need: need, Free: parseBytes(g.Free), Where: where, Policy: pol, Reserved: others}).hinted()
	}
	return need, nil
}

// share is pct percent of n, rounded up.
func share(n int64, pct float64) int64 {
	return int64(math.Ceil(float64(n) * pct / 100))
}

func findOrigin(rows []lv, v volume.Volume) (lv, error) {
	l, ok := find(rows, v.Name)
	if !ok {
		return lv{}, fmt.Errorf("logical volume %q %w in volume group %q", v.Name, ErrNotFound, v.Group)
	}
	if reason := unusable(l); reason != "" {
		return lv{}, errors.New(reason)
	}
	return l, nil
}

func (s *Snapshotter) vgInfo(ctx context.Context, name string) (vg, error) {
	rows, err := s.vgs(ctx, name)
	if err != nil {
		return vg{}, err
	}
	for _, g := range rows {
		if g.Name == name {
			return g, nil
		}
	}
	return vg{}, fmt.Errorf("volume group %q %w", name, ErrNotFound)
}

// Create snapshots v as "<lv>-voltar-<runID>", tagged "voltar" and
// "voltar-run-<runID>". A thick origin gets a COW of the policy's size; a
// thin origin a thin snapshot, activated despite LVM's activation-skip
// flag. Whatever was made is removed again if a step fails.
func (s *Snapshotter) Create(ctx context.Context, v volume.Volume, runID string) (snap *volume.Snapshot, err error) {
	// A thick snapshot's space is the VG's once lvcreate took it; a thin
	// one keeps its reservation until released (it grows as it is used).
	defer func() {
		if err != nil || snap.Kind != KindThin {
			s.unreserve(v.ID())
			return
		}
		s.mu.Lock()
		if s.snaps != nil {
			s.snaps[strings.TrimPrefix(snap.Path, "/dev/")] = v.ID()
		}
		s.mu.Unlock()
	}()
	if err := checkRunID(runID); err != nil {
		return nil, err
	}
	if s.LockDir != "" {
		l, err := lock.Volume(s.LockDir, v.Group, v.Name)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		// Held until Release: the snapshot is what must not be made twice.
		defer func() {
			if err != nil {
				l.Release()
				return
			}
			s.mu.Lock()
			if s.locks == nil {
				s.locks = map[string]*lock.Lock{}
			}
			s.locks[v.Group+"/"+snap.Name] = l
			s.mu.Unlock()
		}()
	}
	rows, err := s.lvsInVG(ctx, v.Group)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", v.ID(), err)
	}
	origin, err := findOrigin(rows, v)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", v.ID(), err)
	}
	name := snapshotName(v.Group, v.Name, runID)
	if _, ok := find(rows, name); ok {
		return nil, fmt.Errorf("snapshot %s: %s/%s already exists; remove it or use a new run ID", v.ID(), v.Group, name)
	}
	snap = &volume.Snapshot{Name: name, Path: "/dev/" + v.Group + "/" + name}
	args := []string{"--yes", "-s"}
	if origin.thin() {
		snap.Kind = KindThin
	} else {
		g, err := s.vgInfo(ctx, v.Group)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", v.ID(), err)
		}
		snap.Kind = KindThick
		snap.Size = s.policy().thickSize(origin.size(), parseBytes(g.ExtentSize))
		args = append(args, "-L", strconv.FormatInt(snap.Size, 10)+"b")
	}
	args = append(args, "-n", name, "--addtag", Tag, "--addtag", runTag(runID))
	if s.Scope != "" {
		args = append(args, "--addtag", scopeTag(s.Scope))
	}
	args = append(args, v.ID())
	if _, err := s.Runner.Run(ctx, "lvcreate", args...); err != nil {
		return nil, s.undo(ctx, v.Group, name, fmt.Errorf("snapshot %s: %w", v.ID(), err))
	}
	if snap.Kind == KindThin {
		// Thin snapshots are created with the activation-skip flag; -K
		// overrides it for this activation only.
		if _, err := s.Runner.Run(ctx, "lvchange", "--yes", "-ay", "-K", v.Group+"/"+name); err != nil {
			return nil, s.undo(ctx, v.Group, name, fmt.Errorf("snapshot %s: activate %s: %w", v.ID(), name, err))
		}
	}
	s.log().Debug("snapshot created", "volume", v.ID(), "snapshot", name, "kind", snap.Kind, "size", snap.Size)
	return snap, nil
}

// undo removes a half-made snapshot after err, even if ctx is cancelled.
func (s *Snapshotter) undo(ctx context.Context, vgName, name string, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if rerr := s.remove(ctx, vgName, name); rerr != nil {
		return errors.Join(err, fmt.Errorf("clean up: %w", rerr))
	}
	return err
}

// Release removes the snapshot; one that is already gone counts as removed,
// so it is safe to call twice. snap.Name may also be "vg/lv", as Leftovers
// returns them. It refuses LVs whose names are not voltar snapshot names.
func (s *Snapshotter) Release(ctx context.Context, snap *volume.Snapshot) error {
	vgName, name, err := snapshotLV(snap)
	if err != nil {
		return fmt.Errorf("release snapshot: %w", err)
	}
	defer s.releaseReservation(vgName + "/" + name)
	if !strings.Contains(name, "-voltar-") {
		return fmt.Errorf("release snapshot: %s/%s is not named like a voltar snapshot; not removing it", vgName, name)
	}
	if err := s.remove(ctx, vgName, name); err != nil {
		return fmt.Errorf("release snapshot %s/%s: %w", vgName, name, err)
	}
	s.mu.Lock()
	l := s.locks[vgName+"/"+name]
	delete(s.locks, vgName+"/"+name)
	s.mu.Unlock()
	l.Release()
	s.log().Debug("snapshot released", "snapshot", vgName+"/"+name)
	return nil
}

// releaseReservation gives back a thin snapshot's reservation once it is
// gone.
func (s *Snapshotter) releaseReservation(snap string) {
	s.mu.Lock()
	origin, ok := s.snaps[snap]
	delete(s.snaps, snap)
	s.mu.Unlock()
	if ok {
		s.unreserve(origin)
	}
}

// remove runs lvremove. If that fails, a listing of all VGs tells whether
// the LV is gone anyway (its VG may be gone too), instead of parsing stderr.
func (s *Snapshotter) remove(ctx context.Context, vgName, name string) error {
	_, err := s.Runner.Run(ctx, "lvremove", "-f", vgName+"/"+name)
	if err == nil {
		return nil
	}
	var ee *sysexec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	rows, lerr := s.lvs(ctx)
	if lerr != nil {
		return err
	}
	for _, l := range rows {
		if l.VG == vgName && l.Name == name {
			return err
		}
	}
	return nil
}

// Check reports how full a snapshot is. A thick snapshot that LVM marks
// invalid, or whose COW is 100% used, returns volume.ErrOverflow. A thin
// snapshot cannot overflow: its figure is the pool's data usage, for
// information (a full pool fails writes to the origin, not the snapshot).
func (s *Snapshotter) Check(ctx context.Context, snap *volume.Snapshot) (usedPct float64, err error) {
	vgName, name, err := snapshotLV(snap)
	if err != nil {
		return 0, fmt.Errorf("check snapshot: %w", err)
	}
	id := vgName + "/" + name
	rows, err := s.lvsInVG(ctx, vgName)
	if err != nil {
		return 0, fmt.Errorf("check snapshot %s: %w", id, err)
	}
	l, ok := find(rows, name)
	if !ok {
		return 0, fmt.Errorf("check snapshot %s: %w (removed while in use?)", id, ErrNotFound)
	}
	if l.thin() {
		pool, ok := find(rows, l.Pool)
		if !ok {
			return 0, fmt.Errorf("check snapshot %s: thin pool %q %w", id, l.Pool, ErrNotFound)
		}
		pct, _ := percent(pool.DataPercent)
		switch pool.attr(8) {
		case 'F':
			return pct, fmt.Errorf("check snapshot %s: thin pool %s has failed; what was read may be incomplete", id, pool.id())
		case 'D':
			s.log().Warn("thin pool is out of data space; writes to its volumes fail", "pool", pool.id(), "snapshot", id)
		}
		return pct, nil
	}
	if !l.snapshot() {
		return 0, fmt.Errorf("check snapshot %s: not a snapshot", id)
	}
	if l.invalid() {
		return 100, fmt.Errorf("snapshot %s: %w", id, volume.ErrOverflow)
	}
	pct, ok := percent(l.SnapPercent)
	if !ok {
		return 0, fmt.Errorf("check snapshot %s: no usage reported (lv_attr %s); is it active?", id, l.Attr)
	}
	if pct >= 100 {
		return pct, fmt.Errorf("snapshot %s: %w", id, volume.ErrOverflow)
	}
	return pct, nil
}

// Leftovers lists every LV tagged "voltar" in any VG, as "vg/lv": snapshots
// a run did not remove (crash, power loss), for the next run to sweep.
func (s *Snapshotter) Leftovers(ctx context.Context) ([]string, error) {
	rows, err := s.lvs(ctx)
	if err != nil {
		return nil, fmt.Errorf("find leftover snapshots: %w", err)
	}
	var ids []string
	for _, l := range rows {
		if !l.hasTag(Tag) || !s.inScope(l) {
			continue
		}
		if l.attr(5) == 'o' {
			// Open: a live process (another voltar?) is reading it.
			s.log().Warn("voltar snapshot is in use; not removing it", "lv", l.id())
			continue
		}
		ids = append(ids, l.id())
	}
	slices.Sort(ids)
	return ids, nil
}

var (
	_ volume.Sweeper     = (*Snapshotter)(nil)
	_ volume.Preflighter = (*Snapshotter)(nil)
	_ volume.Planner     = (*Snapshotter)(nil)
)

// Planned implements volume.Planner: the one name Create gives the
// snapshot of v (thick or thin alike). LVM snapshots are never writable
// copies of a part.
func (s *Snapshotter) Planned(v volume.Volume, runID, part string) []volume.Planned {
	if part != "" {
		return nil
	}
	return []volume.Planned{{Kind: KindThick, Ref: v.Group + "/" + snapshotName(v.Group, v.Name, runID)}}
}

// Kinds implements volume.Sweeper.
func (s *Snapshotter) Kinds() []volume.SnapshotKind {
	return []volume.SnapshotKind{KindThick, KindThin}
}

// RemoveLeftover implements volume.Sweeper: ref is "vg/lv".
func (s *Snapshotter) RemoveLeftover(ctx context.Context, ref string) error {
	return s.Release(ctx, &volume.Snapshot{Name: ref})
}

// Sweep implements volume.Sweeper: it removes the LVs Leftovers lists.
func (s *Snapshotter) Sweep(ctx context.Context) (int, error) {
	lvs, err := s.Leftovers(ctx)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	n := 0
	for _, lv := range lvs {
		if err := s.RemoveLeftover(ctx, lv); err != nil {
			errs = append(errs, fmt.Errorf("remove leftover snapshot %s: %w", lv, err))
			continue
		}
		n++
		s.log().Info("removed leftover snapshot of a dead run", "lv", lv)
	}
	return n, errors.Join(errs...)
}

// inScope: the LV carries this Snapshotter's scope tag, or no scope tag.
func (s *Snapshotter) inScope(l lv) bool {
	if s.Scope == "" {
		return true
	}
	for _, t := range strings.Split(l.Tags, ",") {
		if strings.HasPrefix(t, scopeTag("")) {
			return t == scopeTag(s.Scope)
		}
	}
	return true
}

func scopeTag(scope string) string { return Tag + "-scope-" + scope }

// snapshotLV finds the VG and LV of a snapshot from its Name ("vg/lv") or,
// for a bare LV name, its Path (/dev/vg/lv).
func snapshotLV(snap *volume.Snapshot) (vgName, name string, err error) {
	if snap == nil {
		return "", "", errors.New("nil snapshot")
	}
	if strings.Contains(snap.Name, "/") {
		return ParseSpec(snap.Name)
	}
	vgName, name, err = ParseSpec(snap.Path)
	if err != nil {
		return "", "", err
	}
	if snap.Name != "" && snap.Name != name {
		return "", "", fmt.Errorf("snapshot name %q does not match its path %q", snap.Name, snap.Path)
	}
	return vgName, name, nil
}

func runTag(runID string) string { return Tag + "-run-" + runID }

// checkRunID allows what LVM allows in both LV names and tags.
func checkRunID(runID string) error {
	if runID == "" {
		return errors.New("snapshot: empty run ID")
	}
	for _, r := range runID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '+') {
			return fmt.Errorf("snapshot: run ID %q: only letters, digits and -_.+ are allowed", runID)
		}
	}
	if len(runID) > 64 {
		return fmt.Errorf("snapshot: run ID %q is longer than 64 characters", runID)
	}
	return nil
}

// maxDMName is the longest device-mapper name (DM_NAME_LEN 128 with NUL).
const maxDMName = 127

// snapshotName is "<lv>-voltar-<runID>", with lv shortened (keeping a hash
// of it) when device-mapper's name for the snapshot's COW device,
// "<vg>-<name>-cow" with every '-' doubled, would be too long.
func snapshotName(vgName, lvName, runID string) string {
	suffix := "-voltar-" + runID
	name := lvName + suffix
	if dmLen(vgName)+1+dmLen(name)+len("-cow") <= maxDMName {
		return name
	}
	sum := sha256.Sum256([]byte(lvName))
	hash := "." + hex.EncodeToString(sum[:4])
	budget := maxDMName - dmLen(vgName) - 1 - len("-cow") - dmLen(suffix) - len(hash)
	prefix := ""
	for _, c := range []byte(lvName) {
		n := 1
		if c == '-' {
			n = 2
		}
		if budget < n {
			break
		}
		budget -= n
		prefix += string(c)
	}
	return prefix + hash + suffix
}

// dmLen is the length of s in a device-mapper name, where '-' is doubled.
func dmLen(s string) int { return len(s) + strings.Count(s, "-") }
