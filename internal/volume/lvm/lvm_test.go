package lvm_test

import (
	"context"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"voltar/internal/volume"
	"voltar/internal/volume/lvm"
)

var uuidRE = regexp.MustCompile(`^[0-9A-Za-z]{6}(-[0-9A-Za-z]{4}){5}-[0-9A-Za-z]{6}$`)

func TestResolve(t *testing.T) {
	tests := []struct {
		spec, lvs string
		want      volume.Volume // UUID checked by pattern
		wantErr   string
	}{
		{spec: "nova-volumes/volume-00000001", lvs: "lvs-plain.json", want: volume.Volume{
			Kind: volume.KindLVM, Group: vgName, Name: "volume-00000001",
			Path: "/dev/nova-volumes/volume-00000001", Size: 64 << 20,
		}},
		{spec: "/dev/nova-volumes/volume-00000002", lvs: "lvs-thick-fresh.json", want: volume.Volume{
			Kind: volume.KindLVM, Group: vgName, Name: "volume-00000002",
			Path: "/dev/nova-volumes/volume-00000002", Size: 128 << 20,
		}},
		{spec: "nova-volumes/volume-00000010", lvs: "lvs-thin.json", want: volume.Volume{
			Kind: volume.KindLVM, Group: vgName, Name: "volume-00000010",
			Path: "/dev/nova-volumes/volume-00000010", Size: 1 << 30,
		}},
		{spec: "nova-volumes/volume-00000002-snap", lvs: "lvs-plain.json",
			wantErr: "resolve nova-volumes/volume-00000002-snap: nova-volumes/volume-00000002-snap is a snapshot of nova-volumes/volume-00000002; back up the origin instead"},
		{spec: "nova-volumes/volume-00000003", lvs: "lvs-plain.json",
			wantErr: "nova-volumes/volume-00000003 is not active; activate it with `lvchange -ay nova-volumes/volume-00000003`"},
		{spec: "nova-volumes/thinpool", lvs: "lvs-thin.json",
			wantErr: "nova-volumes/thinpool is a thin pool, not a volume"},
		{spec: "nova-volumes/volume-00000001-voltar-" + runID, lvs: "lvs-thick-fresh.json",
			wantErr: "is a voltar snapshot (leftover of an earlier run"},
		{spec: "nova-volumes/volume-00000099", lvs: "lvs-plain.json",
			wantErr: `resolve nova-volumes/volume-00000099: logical volume "volume-00000099" not found in volume group "nova-volumes"`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, f := newSnapshotter(t)
			f.on(lvsCmd(vgName), tt.lvs)
			got, err := s.Resolve(context.Background(), tt.spec)
			f.wantCalls(lvsCmd(vgName))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve(%q) error = %v, want it to contain %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !uuidRE.MatchString(got.UUID) {
				t.Errorf("UUID = %q, want an LVM UUID", got.UUID)
			}
			got.UUID = ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Resolve(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestResolveNoSuchVG(t *testing.T) {
	s, f := newSnapshotter(t)
	f.fail(lvsCmd("no-such-vg"), "lvs-no-vg").on(vgsCmd(), "vgs-all.json")
	_, err := s.Resolve(context.Background(), "/dev/no-such-vg/volume-1")
	f.wantCalls(lvsCmd("no-such-vg"), vgsCmd())
	if !errors.Is(err, lvm.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	want := `resolve /dev/no-such-vg/volume-1: volume group "no-such-vg" not found (volume groups here: nova-volumes)`
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}
}

func TestResolveBadSpec(t *testing.T) {
	for _, spec := range []string{"volume-1", "/dev/mapper/nova--volumes-volume--1", "vg/", "/dev/vg/lv/x", ""} {
		s, f := newSnapshotter(t)
		if _, err := s.Resolve(context.Background(), spec); !errors.Is(err, lvm.ErrNotVolume) {
			t.Errorf("Resolve(%q) = %v, want ErrNotVolume (the argument is wrong)", spec, err)
		}
		f.wantCalls()
	}
}

// lvs failing for an existing VG is LVM's failure, not a wrong argument:
// it matches neither ErrNotFound nor ErrNotVolume (so it is not a usage
// error, exit 2).
func TestResolveLVMFails(t *testing.T) {
	s, f := newSnapshotter(t)
	f.fail(lvsCmd(vgName), "lvcreate-no-space").on(vgsCmd(), "vgs-all.json")
	_, err := s.Resolve(context.Background(), vgName+"/volume-00000001")
	if err == nil || errors.Is(err, lvm.ErrNotFound) || errors.Is(err, lvm.ErrNotVolume) {
		t.Fatalf("err = %v, want LVM's own failure", err)
	}
}

type cand struct {
	id       string
	selected bool
	reason   string
}

func candidates(cs []lvm.Candidate) []cand {
	var out []cand
	for _, c := range cs {
		out = append(out, cand{c.Volume.ID(), c.Selected, c.Reason})
	}
	return out
}

func TestList(t *testing.T) {
	s, f := newSnapshotter(t)
	f.on(lvsCmd(), "lvs-all.json")
	got, err := s.List(context.Background(), nil, lvm.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	f.wantCalls(lvsCmd())
	want := []cand{
		{"nova-volumes/scratch", false, "name does not match volume-*"},
		{"nova-volumes/thinpool", false, "thin pool"},
		{"nova-volumes/volume-00000001", true, ""},
		{"nova-volumes/volume-00000001-voltar-" + runID, false, "voltar snapshot (leftover)"},
		{"nova-volumes/volume-00000002", true, ""},
		{"nova-volumes/volume-00000002-snap", false, "snapshot of volume-00000002"},
		{"nova-volumes/volume-00000003", false, "inactive"},
		{"nova-volumes/volume-00000010", true, ""},
		{"nova-volumes/volume-00000010-voltar-" + runID, false, "voltar snapshot (leftover)"},
	}
	if g := candidates(got); !slices.Equal(g, want) {
		t.Errorf("List:\n got %v\nwant %v", g, want)
	}
	for _, c := range got {
		if c.Volume.ID() == "nova-volumes/volume-00000010" && (c.Volume.Size != 1<<30 || c.Volume.Path != "/dev/nova-volumes/volume-00000010") {
			t.Errorf("volume-00000010 = %+v", c.Volume)
		}
	}
}

// Include selects by LV name or vg/lv; exclude then drops what include
// selected and says which pattern did, while what include did not select
// keeps its own reason.
func TestListFilter(t *testing.T) {
	const no = "name does not match volume-0000000[13], nova-volumes/scr*"
	for _, tc := range []struct {
		name   string
		filter lvm.Filter
		want   []cand
	}{
		{"include", lvm.Filter{Include: []string{"volume-0000000[13]", "nova-volumes/scr*"}}, []cand{
			{"nova-volumes/scratch", true, ""},
			{"nova-volumes/volume-00000001", true, ""},
			{"nova-volumes/volume-00000002", false, no},
			{"nova-volumes/volume-00000002-snap", false, "snapshot of volume-00000002"},
			{"nova-volumes/volume-00000003", false, "inactive"},
		}},
		{"exclude", lvm.Filter{Exclude: []string{"scr*", "*-00000001"}}, []cand{
			{"nova-volumes/scratch", false, "name does not match volume-*"},
			{"nova-volumes/volume-00000001", false, "excluded by lvm.exclude *-00000001"},
			{"nova-volumes/volume-00000002", true, ""},
			{"nova-volumes/volume-00000002-snap", false, "snapshot of volume-00000002"},
			{"nova-volumes/volume-00000003", false, "inactive"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := newSnapshotter(t)
			f.on(lvsCmd(vgName), "lvs-plain.json")
			got, err := s.List(context.Background(), []string{vgName}, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			f.wantCalls(lvsCmd(vgName))
			if g := candidates(got); !slices.Equal(g, tc.want) {
				t.Errorf("List:\n got %v\nwant %v", g, tc.want)
			}
		})
	}
}

func TestListErrors(t *testing.T) {
	s, f := newSnapshotter(t)
	if _, err := s.List(context.Background(), nil, lvm.Filter{Include: []string{"volume-["}}); err == nil {
		t.Error("bad pattern accepted")
	}
	f.fail(lvsCmd("no-such-vg"), "lvs-no-vg").on(vgsCmd(), "vgs-all.json")
	if _, err := s.List(context.Background(), []string{"no-such-vg"}, lvm.Filter{}); !errors.Is(err, lvm.ErrNotFound) {
		t.Errorf("List(no-such-vg) error = %v, want ErrNotFound", err)
	}
}

func TestLeftovers(t *testing.T) {
	s, f := newSnapshotter(t)
	f.on(lvsCmd(), "lvs-all.json")
	got, err := s.Leftovers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.wantCalls(lvsCmd())
	want := []string{"nova-volumes/volume-00000001-voltar-" + runID, "nova-volumes/volume-00000010-voltar-" + runID}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Leftovers = %v, want %v", got, want)
	}

	s, f = newSnapshotter(t)
	f.on(lvsCmd(), "lvs-plain.json")
	if got, err := s.Leftovers(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("Leftovers without any = %v, %v", got, err)
	}
}

// Leftovers of another voltar (another runtime directory: another scope)
// and snapshots someone has open are not swept.
func TestLeftoversScopeAndOpen(t *testing.T) {
	data := string(testdata(t, "lvs-all.json"))
	data = strings.Replace(data, `"voltar,voltar-run-20261125T013000Z-ab12"`, `"voltar,voltar-run-20261125T013000Z-ab12,voltar-scope-other"`, 1)
	s, f := newSnapshotter(t)
	s.Scope = "mine"
	f.resp[lvsCmd()] = []response{{stdout: []byte(data)}}
	got, err := s.Leftovers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := "nova-volumes/volume-00000010-voltar-" + runID; strings.Join(got, " ") != want {
		t.Errorf("Leftovers with scope = %v, want only %s (the other is another scope's)", got, want)
	}
	// The same snapshot, now open ('o' in lv_attr[5]), is left alone.
	data = strings.Replace(data, `"Vwi-a-tz-k"`, `"Vwi-aotz-k"`, 1)
	f.resp[lvsCmd()] = []response{{stdout: []byte(data)}}
	if got, err := s.Leftovers(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("Leftovers with the snapshot open = %v, %v; want none", got, err)
	}
}
