//go:build uml

package lvm_test

import (
	"strings"
	"syscall"
	"testing"
)

// Two installations (each its own runtime_dir, so its own run lock and
// scope) back up one LV at the same time: the second fails that volume
// (exit 1) naming the first, makes no snapshot, and leaves the first's
// alone; once the first is done, the second succeeds.
func TestTwoInstallationsOneLV(t *testing.T) {
	a := newVoltar(t, config{Level: 19})
	b := newVoltar(t, config{})
	const lv = "volume-00000051"
	busyVolume(t, a.vg, lv)

	p := a.start("backup", a.vg+"/"+lv)
	_, runID := a.waitMount(p)
	p.signal(syscall.SIGSTOP) // holds its snapshot, and the LV's lock
	r := b.mustRun(1, "backup", b.vg+"/"+lv)
	if msg := errorLine(r.stderr); !strings.Contains(msg, "being backed up by another voltar (pid ") || !strings.Contains(msg, "/run/lock/voltar-lv-") {
		t.Errorf("second installation: %s", r)
	}
	if snaps := snapshotsOf(t, a.vg, lv); len(snaps) != 1 || snaps[0].Name != lv+"-voltar-"+runID {
		t.Errorf("snapshots while both ran: %+v, want only the first installation's", snaps)
	}
	p.signal(syscall.SIGCONT)
	if r := p.wait(); r.code != 0 {
		t.Fatalf("first installation: %s", r)
	}
	a.assertClean()
	b.mustRun(0, "backup", b.vg+"/"+lv)
	b.assertClean()
	if n := len(b.backupDirs(lv)); n != 1 {
		t.Errorf("second installation has %d backups of %s, want 1", n, lv)
	}
}
