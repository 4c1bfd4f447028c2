//go:build uml

package lvm_test

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"voltar/internal/units"
)

// preflightCase is one snapshot_size policy against the space left.
type preflightCase struct {
	policy string
	// need is the snapshot size (thick) or pool space (thin) the policy
	// asks for, as voltar prints it; "" when the test works it out.
	need string
	ok   bool
	// size is the thick snapshot's size in the manifest when ok.
	size int64
}

// Thick: snapshot_size is checked against the VG's free space before
// lvcreate runs. 100%ORIGIN of a 64 MiB volume is 68 MiB (the data plus
// LVM's exception tables, in whole 4 MiB extents), 20%ORIGIN of that is
// 16 MiB after rounding up to an extent, and an absolute size is rounded up
// to an extent. With 40 MiB free, the ones that do not fit fail the volume
// with what they need, and the VG's metadata is untouched: no snapshot was
// ever made.
func TestPreflightThick(t *testing.T) {
	vg, _ := guest(t)
	const lv = "volume-00000021"
	dev := lvcreate(t, vg, lv, "-L", "64M")
	mkfs(t, "ext4", dev, "pre")
	leaveFree(t, vg, 40*mib)
	for _, c := range []preflightCase{
		{policy: "100%ORIGIN", need: "68.0 MiB"},
		{policy: "20%ORIGIN", ok: true, size: 16 * mib},
		{policy: "48M", need: "48.0 MiB"},
		{policy: "10M", ok: true, size: 12 * mib},
	} {
		t.Run(c.policy, func(t *testing.T) {
			v := newVoltar(t, config{SnapshotSize: c.policy})
			preflight(t, v, lv, c, "volume group "+vg, "40.0 MiB")
		})
	}
}

// Thin: a thin snapshot takes no space when made, but may come to claim
// every block it shares with the origin, so the origin's mapped data,
// scaled by snapshot_size, must fit in the pool's free data space.
func TestPreflightThin(t *testing.T) {
	vg, _ := guest(t)
	const lv = "volume-00000022"
	lvcreate(t, vg, "pool22", "-L", "64M", "-T")
	dev := lvcreate(t, vg, lv, "-V", "128M", "--thinpool", "pool22")
	mkfs(t, "ext4", dev, "thin")
	func() {
		mnt := mount(t, dev)
		writeFile(t, mnt, "data.bin", 32<<20)
	}()
	where := "thin pool " + vg + "/pool22"
	for _, c := range []preflightCase{
		{policy: "100%ORIGIN"},
		{policy: "20%ORIGIN", ok: true},
		{policy: "40M", need: "40.0 MiB"},
	} {
		t.Run(c.policy, func(t *testing.T) {
			// What voltar sees: the origin's mapped data and the pool's free
			// data space, from data_percent. Each backup's snapshot has come
			// and gone, so the figures are read anew.
			origin, pool := thinUsage(t, vg, lv), thinUsage(t, vg, "pool22")
			mapped := share(origin.size, origin.pct)
			free := pool.size - share(pool.size, pool.pct)
			if mapped <= free || mapped/5 > free {
				t.Fatalf("origin maps %d bytes, pool has %d free: want free between 20%% and 100%% of mapped", mapped, free)
			}
			if c.need == "" {
				c.need = units.Bytes(mapped)
			}
			v := newVoltar(t, config{SnapshotSize: c.policy})
			preflight(t, v, lv, c, where, units.Bytes(free))
		})
	}
}

// preflight backs up lv under one policy and checks the outcome.
func preflight(t *testing.T, v *voltar, lv string, c preflightCase, where, free string) {
	t.Helper()
	seqno := vgField(t, v.vg, "vg_seqno")
	r := v.run("backup", v.vg+"/"+lv)
	if c.ok {
		if r.code != 0 {
			t.Fatalf("backup under snapshot_size %s: %s", c.policy, r)
		}
		_, m := v.onlyBackup(lv)
		kind := "thick"
		if strings.HasPrefix(where, "thin pool") {
			kind = "thin"
		}
		if m.Snapshot.Kind != kind || c.size != 0 && m.Snapshot.Size != c.size {
			t.Errorf("snapshot %+v, want %s of %d bytes (%s)", m.Snapshot, kind, c.size, c.policy)
		}
		v.assertClean()
		return
	}
	if r.code != 1 {
		t.Fatalf("backup under snapshot_size %s: want exit 1, got %s", c.policy, r)
	}
	t.Logf("voltar said: %s", errorLine(r.stderr))
	// The message says what is needed, where it is short, and what to do.
	for _, want := range []string{
		fmt.Sprintf("voltar: preflight %s/%s: snapshot of %s/%s needs %s but %s has %s free\n", v.vg, lv, v.vg, lv, c.need, where, free),
		fmt.Sprintf("hint: make room in %s, or lower snapshot_size (now %s)", where, c.policy),
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	// lvcreate and lvremove each commit new VG metadata; an unchanged
	// sequence number proves no snapshot existed, even for a moment.
	if got := vgField(t, v.vg, "vg_seqno"); got != seqno {
		t.Errorf("VG metadata changed (seqno %d -> %d): something was created", seqno, got)
	}
	if ds := v.backupDirs("*"); len(ds) > 0 {
		t.Errorf("failed preflight left backup folders: %v", ds)
	}
	v.assertClean()
}

type usage struct {
	size int64
	pct  float64
}

// thinUsage reads an LV's size and data_percent.
func thinUsage(t *testing.T, vg, lv string) usage {
	t.Helper()
	out, err := exec.Command("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size,data_percent", vg+"/"+lv).Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) != 2 {
		t.Fatalf("lvs %s/%s: %v %q", vg, lv, err, out)
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	pct, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("lvs %s/%s: %q", vg, lv, out)
	}
	return usage{size, pct}
}

// share is pct percent of n, rounded up, as voltar computes it.
func share(n int64, pct float64) int64 {
	s := float64(n) * pct / 100
	if float64(int64(s)) < s {
		return int64(s) + 1
	}
	return int64(s)
}
