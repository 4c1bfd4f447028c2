//go:build uml

// Tests against real LVM. They only run inside the User-Mode Linux guest
// (the host has no device-mapper, and must never have its LVM touched):
//
//	test/uml/go-test.sh ./internal/volume/lvm -test.v -test.run UML

package lvm_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"voltar/internal/lock"
	"voltar/internal/sysexec"
	"voltar/internal/testutil"
	"voltar/internal/volume"
	"voltar/internal/volume/lvm"
)

// umlVG returns the guest's volume group, or skips (fails under
// VOLTAR_TEST_REQUIRE_ALL=1) outside the guest.
func umlVG(t *testing.T) string {
	t.Helper()
	if os.Getenv("VOLTAR_UML") != "1" || os.Getenv("VOLTAR_UML_VG") == "" {
		testutil.Unavailable(t, "test needs real LVM in the UML guest: test/uml/go-test.sh ./internal/volume/lvm")
	}
	testutil.RequireTools(t, "lvcreate", "lvs")
	return os.Getenv("VOLTAR_UML_VG")
}

// newLV creates an LV (lvcreate ARGS... -n NAME VG) that is removed after the test.
func newLV(t *testing.T, vg, name string, args ...string) {
	t.Helper()
	testutil.Run(t, "lvcreate", append([]string{"-q", "--yes", "-n", name}, append(args, vg)...)...)
	t.Cleanup(func() { try(t, "lvremove", "-f", vg+"/"+name) })
}

// try runs a command and reports a failure without stopping the test.
func try(t *testing.T, name string, args ...string) {
	if _, err := (sysexec.Exec{}).Run(context.Background(), name, args...); err != nil {
		t.Errorf("%v", err)
	}
}

// fill writes n MiB of byte b at offset off MiB of a block device.
func fill(t *testing.T, dev string, off, n int, b byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{b}, 1<<20)
	for i := range n {
		if _, err := f.WriteAt(buf, int64(off+i)<<20); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// wantBytes checks that the first MiB of dev is all b.
func wantBytes(t *testing.T, dev string, b byte) {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatalf("read %s: %v", dev, err)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{b}, len(buf))) {
		t.Errorf("%s does not hold the data from snapshot time (%#x)", dev, b)
	}
}

func leftovers(t *testing.T, s *lvm.Snapshotter) []string {
	t.Helper()
	ids, err := s.Leftovers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// snapshotLifecycle takes a snapshot of vg/name, overwrites the origin, and
// checks the snapshot still shows the old data, then releases it twice.
func snapshotLifecycle(t *testing.T, s *lvm.Snapshotter, vg, name, runID string, kind volume.SnapshotKind) {
	ctx := context.Background()
	v, err := s.Resolve(ctx, "/dev/"+vg+"/"+name)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, v.Path, 0, 4, 0xaa)
	need, err := s.Preflight(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Create(ctx, v, runID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Release(context.Background(), snap) })
	t.Logf("%s snapshot %s: preflight need %d, size %d", kind, snap.Path, need, snap.Size)
	if snap.Kind != kind {
		t.Errorf("Kind = %q, want %q", snap.Kind, kind)
	}
	if !slices.Contains(leftovers(t, s), vg+"/"+snap.Name) {
		t.Errorf("Leftovers does not list %s/%s", vg, snap.Name)
	}
	fill(t, v.Path, 0, 4, 0x55)
	wantBytes(t, snap.Path, 0xaa)
	pct, err := s.Check(ctx, snap)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("usage after writing 4 MiB to the origin: %.2f%%", pct)
	if err := s.Release(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, snap); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if _, err := os.Stat(snap.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after Release (%v)", snap.Path, err)
	}
	if ids := leftovers(t, s); slices.Contains(ids, vg+"/"+snap.Name) {
		t.Errorf("Leftovers after Release = %v", ids)
	}
}

func TestUMLThick(t *testing.T) {
	vg := umlVG(t)
	newLV(t, vg, "volume-umlthick", "-L", "64M")
	s := &lvm.Snapshotter{Runner: sysexec.Exec{}}
	snapshotLifecycle(t, s, vg, "volume-umlthick", "20261125T013000Z-thick", lvm.KindThick)

	// 100%ORIGIN: the size LVM itself picks for -l 100%ORIGIN.
	v, err := s.Resolve(context.Background(), vg+"/volume-umlthick")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Create(context.Background(), v, "full")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release(context.Background(), snap)
	testutil.Run(t, "lvcreate", "-q", "--yes", "-s", "-l", "100%ORIGIN", "-n", "lvm-own-full", vg+"/volume-umlthick")
	defer try(t, "lvremove", "-f", vg+"/lvm-own-full")
	if got := strings.TrimSpace(testutil.Run(t, "lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", vg+"/lvm-own-full")); got != "71303168" || snap.Size != 71303168 {
		t.Errorf("100%%ORIGIN: voltar %d, LVM %s", snap.Size, got)
	}
}

func TestUMLThickOverflow(t *testing.T) {
	vg := umlVG(t)
	newLV(t, vg, "volume-umloverflow", "-L", "64M")
	s := &lvm.Snapshotter{Runner: sysexec.Exec{}, Policy: lvm.Policy{Bytes: 8 << 20}}
	ctx := context.Background()
	v, err := s.Resolve(ctx, vg+"/volume-umloverflow")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Create(ctx, v, "overflow")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release(ctx, snap)
	if snap.Size != 8<<20 {
		t.Errorf("Size = %d, want 8 MiB", snap.Size)
	}
	fill(t, v.Path, 0, 4, 1)
	if pct, err := s.Check(ctx, snap); err != nil || pct <= 0 || pct >= 100 {
		t.Errorf("Check after 4 MiB = %v, %v; want partly used", pct, err)
	}
	fill(t, v.Path, 4, 16, 2)
	if _, err := s.Check(ctx, snap); !errors.Is(err, volume.ErrOverflow) {
		t.Errorf("Check after 20 MiB into an 8 MiB snapshot = %v, want ErrOverflow", err)
	}
	if err := s.Release(ctx, snap); err != nil {
		t.Errorf("Release of an invalid snapshot: %v", err)
	}
}

func TestUMLThin(t *testing.T) {
	vg := umlVG(t)
	newLV(t, vg, "umlpool", "-L", "128M", "-T")
	newLV(t, vg, "volume-umlthin", "-V", "1G", "--thinpool", "umlpool")
	s := &lvm.Snapshotter{Runner: sysexec.Exec{}}
	snapshotLifecycle(t, s, vg, "volume-umlthin", "20261125T013000Z-thin", lvm.KindThin)
}

func TestUMLList(t *testing.T) {
	vg := umlVG(t)
	newLV(t, vg, "volume-umllist", "-L", "8M")
	newLV(t, vg, "other-umllist", "-L", "8M")
	s := &lvm.Snapshotter{Runner: sysexec.Exec{}}
	cs, err := s.List(context.Background(), []string{vg}, lvm.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range cs {
		got[c.Volume.Name] = c.Reason
		if c.Volume.Name == "volume-umllist" && (!c.Selected || c.Volume.Size != 8<<20) {
			t.Errorf("volume-umllist: %+v", c)
		}
	}
	if got["other-umllist"] != "name does not match volume-*" {
		t.Errorf("other-umllist reason = %q", got["other-umllist"])
	}
}

// A failed lvcreate (no space) leaves nothing behind.
func TestUMLCreateNoSpace(t *testing.T) {
	vg := umlVG(t)
	newLV(t, vg, "volume-umlnospace", "-L", "64M")
	newLV(t, vg, "umlfiller", "-l", "100%FREE")
	s := &lvm.Snapshotter{Runner: sysexec.Exec{}}
	ctx := context.Background()
	v, err := s.Resolve(ctx, vg+"/volume-umlnospace")
	if err != nil {
		t.Fatal(err)
	}
	var se *lvm.SpaceError
	if _, err := s.Preflight(ctx, v); !errors.As(err, &se) {
		t.Errorf("Preflight = %v, want *SpaceError", err)
	} else {
		t.Logf("Preflight: %v", err)
	}
	snap, err := s.Create(ctx, v, "nospace")
	if err == nil {
		s.Release(ctx, snap)
		t.Fatal("Create succeeded in a full VG")
	}
	t.Logf("Create: %v", err)
	for _, id := range leftovers(t, s) {
		if strings.Contains(id, "volume-umlnospace") {
			t.Errorf("left behind: %s", id)
		}
	}
}

// Two installations (different runtime_dir, so different Scope and run
// lock) never snapshot one LV at once: the per-LV lock in LockDir is the
// same for both. The second Create fails naming the holder and makes no
// LV; after the first Release it succeeds. Another process holding the
// lock file (flock(1)) is refused the same way.
func TestUMLLockAcrossInstallations(t *testing.T) {
	vg := umlVG(t)
	testutil.RequireTools(t, "flock")
	newLV(t, vg, "volume-umllock", "-L", "16M")
	dir := t.TempDir()
	a := &lvm.Snapshotter{Runner: sysexec.Exec{}, Scope: "aaaa", LockDir: dir}
	b := &lvm.Snapshotter{Runner: sysexec.Exec{}, Scope: "bbbb", LockDir: dir}
	ctx := context.Background()
	v, err := a.Resolve(ctx, vg+"/volume-umllock")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := a.Create(ctx, v, "20261125T013000Z-a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Release(context.Background(), snap) })
	_, err = b.Create(ctx, v, "20261125T013000Z-b")
	if !errors.Is(err, lock.ErrVolumeBusy) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second installation's Create = %v, want ErrVolumeBusy naming the holder", err)
	}
	t.Logf("second installation: %v", err)
	if out := testutil.Run(t, "lvs", "--noheadings", "-o", "lv_name", vg); strings.Contains(out, "volume-umllock-voltar-20261125T013000Z-b") {
		t.Errorf("the refused Create made a snapshot:\n%s", out)
	}
	if err := a.Release(ctx, snap); err != nil {
		t.Fatal(err)
	}
	snapB, err := b.Create(ctx, v, "20261125T013000Z-b")
	if err != nil {
		t.Fatalf("Create after the first was released: %v", err)
	}
	if err := b.Release(ctx, snapB); err != nil {
		t.Fatal(err)
	}

	// Another process holds it.
	hold := exec.Command("flock", filepath.Join(dir, "voltar-lv-"+strings.ReplaceAll(vg, "-", "--")+"-volume--umllock"), "sleep", "30")
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Process.Kill(); hold.Wait() })
	for range 50 {
		if _, err := a.Create(ctx, v, "20261125T013000Z-c"); errors.Is(err, lock.ErrVolumeBusy) {
			return
		} else if err == nil {
			a.Release(ctx, &volume.Snapshot{Name: vg + "/volume-umllock-voltar-20261125T013000Z-c"})
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Error("Create succeeded while another process held the LV's lock")
}
