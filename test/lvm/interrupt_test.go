//go:build uml

package lvm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"voltar/internal/disk"
	"voltar/internal/testutil"
)

// busyVolume makes a volume whose archive takes a while at zstd level 19:
// an ext4 on the whole LV with 24 MiB of incompressible data.
func busyVolume(t *testing.T, vg, lv string) (staging string) {
	t.Helper()
	dev := lvcreate(t, vg, lv, "-L", "64M")
	mkfs(t, "ext4", dev, "busy")
	staging = t.TempDir()
	for i := range 2 {
		writeFile(t, staging, fmt.Sprintf("data/d%d.bin", i), 12<<20)
	}
	copyTree(t, staging, mount(t, dev))
	return staging
}

// kill -9 while voltar archives leaves the snapshot (tagged voltar and
// voltar-run-<run>), a loop device tagged voltar:, a mount under
// runtime_dir, the run's journal and an unfinished backup folder. The next
// voltar command, even `voltar volumes`, releases all of it before doing
// anything else, and the next backup succeeds.
func TestKill9(t *testing.T) {
	v := newVoltar(t, config{Level: 19})
	const lv = "volume-00000041"
	staging := busyVolume(t, v.vg, lv)

	p := v.start("backup", v.vg+"/"+lv)
	mnt, runID := v.waitMount(p)
	v.waitArchiving(p)
	p.signal(syscall.SIGKILL)
	if r := p.wait(); r.code != -1 {
		t.Fatalf("voltar after SIGKILL: %s", r)
	}

	// What the dead run left.
	snap := lv + "-voltar-" + runID
	snaps := snapshotsOf(t, v.vg, lv)
	if len(snaps) != 1 || snaps[0].Name != snap || !snaps[0].hasTag("voltar") || !snaps[0].hasTag("voltar-run-"+runID) {
		t.Fatalf("after kill -9: snapshots of %s are %+v, want %s tagged voltar,voltar-run-%s", lv, snaps, snap, runID)
	}
	if ms, _ := disk.MountsUnder(v.runtime); !slices.Equal(ms, []string{mnt}) {
		t.Errorf("after kill -9: mounts %v, want %s", ms, mnt)
	}
	if n := len(voltarLoops(t)); n != 1 {
		t.Errorf("after kill -9: %d voltar loop devices, want 1", n)
	}
	if js, _ := filepath.Glob(filepath.Join(v.state, "runs", runID+".journal")); len(js) != 1 {
		t.Errorf("after kill -9: no journal of run %s", runID)
	}
	if ds := v.backupDirs(lv); len(ds) != 1 {
		t.Errorf("after kill -9: backup folders %v, want the unfinished one", ds)
	} else if _, err := os.Stat(filepath.Join(ds[0], "manifest.json")); err == nil {
		t.Errorf("after kill -9: %s has a manifest", ds[0])
	}

	// The next command, a read-only one, sweeps first: nothing of the dead
	// run is listed, and all of it is gone afterwards.
	r := v.mustRun(0, "volumes")
	for _, want := range []string{
		`msg="released leftover of a dead run" run=` + runID + " kind=mount ref=" + mnt + "\n",
		`msg="released leftover of a dead run" run=` + runID + " kind=loop ref=/dev/loop",
		`msg="released leftover of a dead run" run=` + runID + " kind=partial ref=",
		`msg="released leftover of a dead run" run=` + runID + " kind=lv ref=" + v.vg + "/" + snap + "\n",
		`msg="released leftovers of dead runs" count=4`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("voltar volumes did not log %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stdout, snap) {
		t.Errorf("voltar volumes listed the dead run's snapshot: it did not sweep first\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, v.vg+"/"+lv) {
		t.Errorf("voltar volumes does not list %s:\n%s", lv, r.stdout)
	}
	v.assertClean()
	if ds := v.backupDirs(lv); len(ds) != 0 {
		t.Errorf("the dead run's unfinished backup folder is still there: %v", ds)
	}

	// And the next backup succeeds (at the default level, to be quick).
	v.setConfig(config{})
	v.mustRun(0, "backup", v.vg+"/"+lv)
	v.assertClean()
	folder, _ := v.onlyBackup(lv)
	testutil.CompareTrees(t, staging, extract(t, folder, "fs.tar.zst"), nil)
}

// SIGTERM while voltar archives: it releases everything (mount, loop
// device, snapshot, the unfinished backup folder, its journal) and exits
// 130.
func TestSIGTERM(t *testing.T) {
	v := newVoltar(t, config{Level: 19})
	const lv = "volume-00000042"
	busyVolume(t, v.vg, lv)

	p := v.start("backup", v.vg+"/"+lv)
	v.waitMount(p)
	v.waitArchiving(p)
	p.signal(syscall.SIGTERM)
	r := p.wait()
	if r.code != 130 {
		t.Fatalf("voltar after SIGTERM: want exit 130, got %s", r)
	}
	const msg = "voltar: interrupted; everything voltar had mounted, mapped or snapshotted was released"
	if !strings.Contains(r.stderr, msg) {
		t.Errorf("stderr does not say %q:\n%s", msg, r.stderr)
	}
	if !strings.Contains(r.stderr, `msg="snapshot removed"`) {
		t.Errorf("stderr does not log the snapshot's removal:\n%s", r.stderr)
	}
	v.assertClean()
	if left := v.storeFiles(); len(left) > 0 {
		t.Errorf("the interrupted backup left files in the store: %v", left)
	}
}
