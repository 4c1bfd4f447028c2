package domain

import (
	"context"
	"errors"

	"voltar/internal/volume"
)

// member is the Snapshotter one disk's backup.Volume uses: Create waits
// for the set (see set.coordinate); everything else is the disk's own
// snapshotter's.
type member struct {
	inner volume.Snapshotter
	set   *set
	i     int
}

var (
	_ volume.Snapshotter = (*member)(nil)
	_ volume.Planner     = (*member)(nil)
	_ volume.Preflighter = (*member)(nil)
	_ volume.Replayer    = (*member)(nil)
)

func (m *member) Create(ctx context.Context, v volume.Volume, runID string) (*volume.Snapshot, error) {
	reply := make(chan taken, 1)
	select {
	case m.set.arrive <- arrival{i: m.i, reply: reply}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	// The coordinator always answers an arrival (it may be releasing a
	// snapshot of this disk already made, so no early return on ctx).
	t := <-reply
	return t.snap, t.err
}

// Release releases the snapshot; a disk read below an external
// snapshot's overlay then has its overlay committed back.
func (m *member) Release(ctx context.Context, s *volume.Snapshot) error {
	return m.set.release(ctx, m.i, s)
}

// own is the snapshot m.inner made for s (s itself but for a disk read
// below an overlay).
func (m *member) own(s *volume.Snapshot) *volume.Snapshot {
	if v := m.set.views[m.i]; v != nil {
		if in, ok := v.innerOf(s); ok {
			return in
		}
	}
	return s
}

func (m *member) Check(ctx context.Context, s *volume.Snapshot) (float64, error) {
	return m.inner.Check(ctx, m.own(s))
}

func (m *member) Planned(v volume.Volume, runID, part string) []volume.Planned {
	if p, ok := m.inner.(volume.Planner); ok {
		return p.Planned(v, runID, part)
	}
	return nil
}

func (m *member) Preflight(ctx context.Context, v volume.Volume) (int64, error) {
	if p, ok := m.inner.(volume.Preflighter); ok {
		return p.Preflight(ctx, v)
	}
	return 0, nil
}

func (m *member) Writable(ctx context.Context, v volume.Volume, s *volume.Snapshot, runID, part string, off, size int64) (*volume.Snapshot, int64, error) {
	if r, ok := m.inner.(volume.Replayer); ok {
		return r.Writable(ctx, v, m.own(s), runID, part, off, size)
	}
	return nil, 0, errors.New("this disk's snapshots are never read-only")
}
