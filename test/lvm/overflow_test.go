//go:build uml

package lvm_test

import (
	"strings"
	"testing"
)

// A thick snapshot too small for what the origin's users write during the
// backup (snapshot_size 8M, 32 MiB written while voltar archives): the
// kernel invalidates the snapshot, and voltar must fail the volume with
// "snapshot overflowed", publish nothing, and still remove the snapshot.
func TestOverflow(t *testing.T) {
	v := newVoltar(t, config{SnapshotSize: "8M", Level: 19})
	step := stepper(t)
	const lv = "volume-00000031"
	dev := lvcreate(t, v.vg, lv, "-L", "128M")
	mkfs(t, "ext4", dev, "busy")
	mnt := mount(t, dev)
	// Incompressible data at zstd level 19: archiving takes long enough
	// for the writes below to land while voltar reads.
	for i := range 6 {
		writeFile(t, mnt, "data/d"+string(rune('0'+i))+".bin", 12<<20)
	}
	step("volume with 72 MiB of data")

	p := v.start("backup", v.vg+"/"+lv)
	_, runID := v.waitMount(p)
	step("voltar mounted the snapshot")
	snaps := snapshotsOf(t, v.vg, lv)
	if len(snaps) != 1 || snaps[0].size() != 8*mib {
		t.Fatalf("snapshots of %s: %+v, want one of 8 MiB", lv, snaps)
	}
	// 32 MiB of new data in the origin: every chunk written is copied to
	// the 8 MiB COW first.
	writeFile(t, mnt, "overwrite.bin", 32<<20)
	step("wrote 32 MiB to the origin")
	if s := snapshotsOf(t, v.vg, lv); len(s) == 1 && attr(s[0], 4) != 'I' && !p.exited() {
		t.Logf("snapshot %s after the writes: attr %s (want I, invalid)", s[0].Name, s[0].Attr)
	}

	r := p.wait()
	step("backup ended")
	if r.code != 1 {
		t.Fatalf("backup with an overflowing snapshot: want exit 1, got %s", r)
	}
	// The error names the snapshot and the cause, not the EIO that reading
	// an invalidated snapshot gives.
	msg := errorLine(r.stderr)
	t.Logf("voltar said: %s", msg)
	const want = "snapshot overflowed; archive discarded; raise snapshot_size"
	if !strings.Contains(msg, want) || !strings.Contains(msg, lv+"-voltar-"+runID) {
		t.Errorf("the error does not say %q about %s-voltar-%s:\n%s", want, lv, runID, r.stderr)
	}
	// Nothing published: no manifest, no archive, not even a temporary file.
	if left := v.storeFiles(); len(left) > 0 {
		t.Errorf("the failed backup left files in the store: %v", left)
	}
	v.assertClean()
}
