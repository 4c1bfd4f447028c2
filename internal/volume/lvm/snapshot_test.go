package lvm_test

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"voltar/internal/fail"
	"voltar/internal/volume"
	"voltar/internal/volume/lvm"
)

func vol(name string, size int64) volume.Volume {
	return volume.Volume{Kind: volume.KindLVM, Group: vgName, Name: name, Path: "/dev/nova-volumes/" + name, Size: size}
}

func mustPolicy(t *testing.T, s string) lvm.Policy {
	t.Helper()
	p, err := lvm.ParsePolicy(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPreflight(t *testing.T) {
	tests := []struct {
		name, policy, lvs, vgs string
		volume                 string
		need                   int64
		wantErr                string // SpaceError message, first line
	}{
		// cowMax(64 MiB) = 64 MiB + header and exception metadata, in 4 MiB extents.
		{name: "thick fits", lvs: "lvs-plain.json", vgs: "vgs-plain.json", volume: "volume-00000001", need: 68 << 20},
		{name: "thick 100%ORIGIN too big", lvs: "lvs-nearly-full.json", vgs: "vgs-nearly-full.json", volume: "volume-00000002", need: 132 << 20,
			wantErr: "snapshot of nova-volumes/volume-00000002 needs 132.0 MiB but volume group nova-volumes has 8.0 MiB free"},
		{name: "thick 20%ORIGIN too big", policy: "20%ORIGIN", lvs: "lvs-nearly-full.json", vgs: "vgs-nearly-full.json", volume: "volume-00000002", need: 28 << 20,
			wantErr: "snapshot of nova-volumes/volume-00000002 needs 28.0 MiB but volume group nova-volumes has 8.0 MiB free"},
		{name: "thick fixed size fits exactly", policy: "8M", lvs: "lvs-nearly-full.json", vgs: "vgs-nearly-full.json", volume: "volume-00000002", need: 8 << 20},
		{name: "thick fixed size rounded to extents", policy: "5M", lvs: "lvs-plain.json", vgs: "vgs-plain.json", volume: "volume-00000001", need: 8 << 20},
		{name: "thick fixed size capped at full copy", policy: "10G", lvs: "lvs-plain.json", vgs: "vgs-plain.json", volume: "volume-00000001", need: 68 << 20},
		// Thin: the origin maps 3.12% of 1 GiB; the pool has 87.5% of 256 MiB free.
		{name: "thin fits", lvs: "lvs-thin.json", volume: "volume-00000010", need: 33500745},
		{name: "thin 50%ORIGIN", policy: "50%ORIGIN", lvs: "lvs-thin.json", volume: "volume-00000010", need: 16750373},
		{name: "thin pool too full", lvs: "lvs-thin-pool-low.json", volume: "volume-00000010", need: 33500745,
			wantErr: "snapshot of nova-volumes/volume-00000010 needs 31.9 MiB but thin pool nova-volumes/thinpool has 24.0 MiB free"},
		{name: "thin fixed size under pool free", policy: "16M", lvs: "lvs-thin-pool-low.json", volume: "volume-00000010", need: 16 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, f := newSnapshotter(t)
			s.Policy = mustPolicy(t, tt.policy)
			f.on(lvsCmd(vgName), tt.lvs)
			want := []string{lvsCmd(vgName)}
			if tt.vgs != "" {
				f.on(vgsCmd(vgName), tt.vgs)
				want = append(want, vgsCmd(vgName))
			}
			need, err := s.Preflight(context.Background(), vol(tt.volume, 0))
			f.wantCalls(want...)
			if need != tt.need {
				t.Errorf("need = %d, want %d", need, tt.need)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var se *lvm.SpaceError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *SpaceError", err)
			}
			if first, _, _ := strings.Cut(err.Error(), "\n"); first != tt.wantErr {
				t.Errorf("err = %q\nwant  %q", first, tt.wantErr)
			}
			if h := fail.Hints(err); len(h) != 1 || !strings.HasPrefix(h[0], "make room in ") {
				t.Errorf("err = %q, want a hint", err)
			}
		})
	}
}

func TestPreflightRejects(t *testing.T) {
	s, f := newSnapshotter(t)
	f.on(lvsCmd(vgName), "lvs-plain.json")
	if _, err := s.Preflight(context.Background(), vol("volume-00000003", 0)); err == nil || !strings.Contains(err.Error(), "not active") {
		t.Errorf("Preflight(inactive) = %v", err)
	}
}

const (
	thickSnap = "volume-00000001-voltar-" + runID
	thinSnap  = "volume-00000010-voltar-" + runID
	tags      = " --addtag voltar --addtag voltar-run-" + runID
)

func TestCreateThick(t *testing.T) {
	for _, tt := range []struct {
		policy string
		size   int64
	}{{"", 68 << 20}, {"20%ORIGIN", 16 << 20}, {"10M", 12 << 20}} {
		t.Run("policy="+tt.policy, func(t *testing.T) {
			s, f := newSnapshotter(t)
			s.Policy = mustPolicy(t, tt.policy)
			lvcreate := "lvcreate --yes -s -L " + strconv.FormatInt(tt.size, 10) + "b -n " + thickSnap + tags + " nova-volumes/volume-00000001"
			f.on(lvsCmd(vgName), "lvs-plain.json").on(vgsCmd(vgName), "vgs-plain.json").on(lvcreate, "")
			snap, err := s.Create(context.Background(), vol("volume-00000001", 64<<20), runID)
			if err != nil {
				t.Fatal(err)
			}
			f.wantCalls(lvsCmd(vgName), vgsCmd(vgName), lvcreate)
			want := volume.Snapshot{Kind: lvm.KindThick, Name: thickSnap, Path: "/dev/nova-volumes/" + thickSnap, Size: tt.size}
			if !reflect.DeepEqual(*snap, want) {
				t.Errorf("snapshot = %+v, want %+v", *snap, want)
			}
		})
	}
}

func TestCreateThin(t *testing.T) {
	s, f := newSnapshotter(t)
	lvcreate := "lvcreate --yes -s -n " + thinSnap + tags + " nova-volumes/volume-00000010"
	lvchange := "lvchange --yes -ay -K nova-volumes/" + thinSnap
	f.on(lvsCmd(vgName), "lvs-thin.json").on(lvcreate, "").on(lvchange, "")
	snap, err := s.Create(context.Background(), vol("volume-00000010", 1<<30), runID)
	if err != nil {
		t.Fatal(err)
	}
	f.wantCalls(lvsCmd(vgName), lvcreate, lvchange)
	want := volume.Snapshot{Kind: lvm.KindThin, Name: thinSnap, Path: "/dev/nova-volumes/" + thinSnap}
	if !reflect.DeepEqual(*snap, want) {
		t.Errorf("snapshot = %+v, want %+v", *snap, want)
	}
}

func TestCreateThinActivationFails(t *testing.T) {
	s, f := newSnapshotter(t)
	lvcreate := "lvcreate --yes -s -n " + thinSnap + tags + " nova-volumes/volume-00000010"
	lvchange := "lvchange --yes -ay -K nova-volumes/" + thinSnap
	lvremove := "lvremove -f nova-volumes/" + thinSnap
	f.on(lvsCmd(vgName), "lvs-thin.json").on(lvcreate, "").fail(lvchange, "lvremove-gone").on(lvremove, "")
	// The run is cancelled while lvchange runs; the cleanup must still happen.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.cancelAfter, f.cancel = lvchange, cancel
	snap, err := s.Create(ctx, vol("volume-00000010", 1<<30), runID)
	if err == nil || snap != nil {
		t.Fatalf("Create = %v, %v; want an error", snap, err)
	}
	f.wantCalls(lvsCmd(vgName), lvcreate, lvchange, lvremove)
	if !strings.Contains(err.Error(), "snapshot nova-volumes/volume-00000010: activate "+thinSnap+": lvchange") {
		t.Errorf("err = %v", err)
	}
}

func TestCreateThickNoSpace(t *testing.T) {
	s, f := newSnapshotter(t)
	name := "volume-00000002-voltar-" + runID
	lvcreate := "lvcreate --yes -s -L 138412032b -n " + name + tags + " nova-volumes/volume-00000002"
	lvremove := "lvremove -f nova-volumes/" + name
	f.on(lvsCmd(vgName), "lvs-nearly-full.json").on(vgsCmd(vgName), "vgs-nearly-full.json").
		fail(lvcreate, "lvcreate-no-space").fail(lvremove, "lvremove-gone").on(lvsCmd(), "lvs-nearly-full.json")
	_, err := s.Create(context.Background(), vol("volume-00000002", 128<<20), runID)
	f.wantCalls(lvsCmd(vgName), vgsCmd(vgName), lvcreate, lvremove, lvsCmd())
	// Nothing was left behind, so the error is lvcreate's alone.
	if err == nil || !strings.Contains(err.Error(), "insufficient free space") || strings.Contains(err.Error(), "clean up") {
		t.Errorf("err = %v", err)
	}
}

func TestCreateRefuses(t *testing.T) {
	s, f := newSnapshotter(t)
	f.on(lvsCmd(vgName), "lvs-thick-fresh.json")
	_, err := s.Create(context.Background(), vol("volume-00000001", 64<<20), runID)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("Create over an existing snapshot: %v", err)
	}
	_, err = s.Create(context.Background(), vol("volume-00000002-snap", 0), runID)
	if err == nil || !strings.Contains(err.Error(), "is a snapshot of") {
		t.Errorf("Create of a snapshot: %v", err)
	}
	for _, id := range []string{"", "a b", "x/y", "run'1", strings.Repeat("a", 65)} {
		if _, err := s.Create(context.Background(), vol("volume-00000001", 64<<20), id); err == nil {
			t.Errorf("Create with run ID %q succeeded", id)
		}
	}
	f.wantCalls(lvsCmd(vgName), lvsCmd(vgName))
}

func TestRelease(t *testing.T) {
	s, f := newSnapshotter(t)
	lvremove := "lvremove -f nova-volumes/" + thickSnap
	f.on(lvremove, "").fail(lvremove, "lvremove-gone").on(lvsCmd(), "lvs-plain.json")
	snap := &volume.Snapshot{Kind: lvm.KindThick, Name: thickSnap, Path: "/dev/nova-volumes/" + thickSnap}
	if err := s.Release(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(context.Background(), snap); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	f.wantCalls(lvremove, lvremove, lvsCmd())
}

func TestReleaseFails(t *testing.T) {
	s, f := newSnapshotter(t)
	lvremove := "lvremove -f nova-volumes/" + thickSnap
	// lvremove fails and the LV is still there.
	f.fail(lvremove, "lvremove-gone").on(lvsCmd(), "lvs-all.json")
	err := s.Release(context.Background(), &volume.Snapshot{Name: "nova-volumes/" + thickSnap})
	if err == nil || !strings.Contains(err.Error(), "release snapshot nova-volumes/"+thickSnap+": lvremove") {
		t.Errorf("err = %v", err)
	}
	f.wantCalls(lvremove, lvsCmd())
}

func TestReleaseRefuses(t *testing.T) {
	s, f := newSnapshotter(t)
	for _, snap := range []*volume.Snapshot{
		nil,
		{Name: "volume-00000001", Path: "/dev/nova-volumes/volume-00000001"},
		{Name: "nova-volumes/volume-00000001"},
		{Name: thickSnap, Path: "/dev/nova-volumes/other-voltar-x"},
		{Name: thickSnap},
	} {
		if err := s.Release(context.Background(), snap); err == nil {
			t.Errorf("Release(%+v) succeeded", snap)
		}
	}
	f.wantCalls()
}

func TestCheck(t *testing.T) {
	thick := &volume.Snapshot{Kind: lvm.KindThick, Name: thickSnap, Path: "/dev/nova-volumes/" + thickSnap}
	thin := &volume.Snapshot{Kind: lvm.KindThin, Name: thinSnap, Path: "/dev/nova-volumes/" + thinSnap}
	tests := []struct {
		name, lvs string
		snap      *volume.Snapshot
		pct       float64
		overflow  bool
		wantErr   string
	}{
		{name: "thick fresh", lvs: "lvs-thick-fresh.json", snap: thick, pct: 0},
		{name: "thick partly used", lvs: "lvs-thick-used.json", snap: thick, pct: 25.15},
		{name: "thick overflowed", lvs: "lvs-thick-invalid.json", snap: thick, pct: 100, overflow: true},
		{name: "thin inactive", lvs: "lvs-thin-snap-inactive.json", snap: thin, pct: 12.5},
		{name: "thin active", lvs: "lvs-thin-snap-active.json", snap: thin, pct: 12.5},
		{name: "thin pool full", lvs: "lvs-thin-pool-full.json", snap: thin, pct: 100},
		{name: "gone", lvs: "lvs-plain.json", snap: thick, wantErr: "not found"},
		{name: "not a snapshot", lvs: "lvs-plain.json", snap: &volume.Snapshot{Name: "nova-volumes/scratch"}, wantErr: "not a snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, f := newSnapshotter(t)
			f.on(lvsCmd(vgName), tt.lvs)
			pct, err := s.Check(context.Background(), tt.snap)
			f.wantCalls(lvsCmd(vgName))
			switch {
			case tt.overflow:
				if !errors.Is(err, volume.ErrOverflow) {
					t.Fatalf("err = %v, want ErrOverflow", err)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if pct != tt.pct {
				t.Errorf("usedPct = %v, want %v", pct, tt.pct)
			}
		})
	}
}

func TestCheckOverflowMessage(t *testing.T) {
	s, f := newSnapshotter(t)
	f.on(lvsCmd(vgName), "lvs-thick-invalid.json")
	_, err := s.Check(context.Background(), &volume.Snapshot{Name: thickSnap, Path: "/dev/nova-volumes/" + thickSnap})
	want := "snapshot nova-volumes/" + thickSnap + ": snapshot overflowed; archive discarded; raise snapshot_size"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant  %s", err, want)
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in   string
		want lvm.Policy
		str  string
	}{
		{"", lvm.Policy{Percent: 100}, "100%ORIGIN"},
		{"100%ORIGIN", lvm.Policy{Percent: 100}, "100%ORIGIN"},
		{"20%ORIGIN", lvm.Policy{Percent: 20}, "20%ORIGIN"},
		{" 12.5%origin ", lvm.Policy{Percent: 12.5}, "12.5%ORIGIN"},
		{"10G", lvm.Policy{Bytes: 10 << 30}, "10G"},
		{"512M", lvm.Policy{Bytes: 512 << 20}, "512M"},
		{"512m", lvm.Policy{Bytes: 512 << 20}, "512M"},
		{"1.5T", lvm.Policy{Bytes: 3 << 39}, "1536G"},
		{"64KiB", lvm.Policy{Bytes: 64 << 10}, "64K"},
		{"10GiB", lvm.Policy{Bytes: 10 << 30}, "10G"},
		{"4097", lvm.Policy{Bytes: 4097}, "4097"},
		{"4096b", lvm.Policy{Bytes: 4096}, "4K"},
	}
	for _, tt := range tests {
		got, err := lvm.ParsePolicy(tt.in)
		if err != nil {
			t.Errorf("ParsePolicy(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParsePolicy(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if got.String() != tt.str {
			t.Errorf("ParsePolicy(%q).String() = %q, want %q", tt.in, got.String(), tt.str)
		}
		if again, err := lvm.ParsePolicy(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", tt.in, again, err)
		}
	}
	for _, bad := range []string{"0%ORIGIN", "101%ORIGIN", "-5%ORIGIN", "20%FREE", "20%VG", "%ORIGIN", "0", "-1G", "10X", "G", "1.2.3G", "ten"} {
		if p, err := lvm.ParsePolicy(bad); err == nil {
			t.Errorf("ParsePolicy(%q) = %+v, want an error", bad, p)
		}
	}
}

// Volumes backed up at the same time share the VG's free space: a
// preflight counts what the preflights of snapshots not yet made reserved,
// and says so when that is why the snapshot does not fit.
func TestPreflightCountsConcurrentSnapshots(t *testing.T) {
	s, f := newSnapshotter(t)
	s.Policy = mustPolicy(t, "8M") // the VG has exactly 8 MiB free
	f.on(lvsCmd(vgName), "lvs-nearly-full.json")
	f.on(vgsCmd(vgName), "vgs-nearly-full.json")
	if _, err := s.Preflight(context.Background(), vol("volume-00000002", 0)); err != nil {
		t.Fatalf("first preflight: %v", err)
	}
	_, err := s.Preflight(context.Background(), vol("volume-00000001", 0))
	var se *lvm.SpaceError
	if !errors.As(err, &se) || se.Reserved != 8<<20 || !strings.Contains(err.Error(), "other volumes backed up at the same time") {
		t.Fatalf("second preflight = %v, want a SpaceError counting the first's 8 MiB", err)
	}
	// The same volume again (a retry) replaces its own reservation.
	if _, err := s.Preflight(context.Background(), vol("volume-00000002", 0)); err != nil {
		t.Errorf("preflight of the same volume again: %v", err)
	}
}
