//go:build uml

package lvm_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"voltar/internal/disk"
	"voltar/internal/testutil"
)

// lvcreate runs `lvcreate -n NAME ARGS... VG` (without VG when ARGS name
// an origin VG/LV). The LVs a test creates are removed when it ends, after
// anything voltar left on them, in one lvremove (LVM commands are slow in
// UML).
func lvcreate(t *testing.T, vg, name string, args ...string) string {
	t.Helper()
	args = append([]string{"-q", "-q", "--yes", "-n", name}, args...)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, vg+"/") }) {
		args = append(args, vg)
	}
	testutil.Run(t, "lvcreate", args...)
	createdMu.Lock()
	defer createdMu.Unlock()
	if created[t] == nil {
		t.Cleanup(func() { removeLVs(t, vg) })
	}
	created[t] = append(created[t], name)
	return "/dev/" + vg + "/" + name
}

var (
	createdMu sync.Mutex
	created   = map[*testing.T][]string{} // LVs each test made
)

func removeLVs(t *testing.T, vg string) {
	createdMu.Lock()
	names := created[t]
	delete(created, t)
	createdMu.Unlock()
	rescue(t, vg)
	args := []string{"-q", "-q", "-f"}
	for _, l := range listLVs(t, vg) {
		if slices.Contains(names, l.Name) { // not those removed already
			args = append(args, vg+"/"+l.Name)
		}
	}
	if len(args) == 3 {
		return
	}
	if out, err := exec.Command("lvremove", args...).CombinedOutput(); err != nil {
		t.Errorf("lvremove %v: %v\n%s", args[3:], err, out)
	}
}

// rescue releases whatever a failed scenario left, so that later tests
// start clean: voltar's mounts under /tmp, its loop devices and its
// snapshots. The scenarios check for leftovers themselves; this only keeps
// one failure from cascading.
func rescue(t *testing.T, vg string) {
	ms, _ := disk.MountsUnder(os.TempDir())
	for i := len(ms) - 1; i >= 0; i-- {
		if strings.Contains(ms[i], "/run/") {
			if err := disk.Unmount(ms[i]); err != nil {
				t.Logf("rescue: unmount %s: %v", ms[i], err)
			}
		}
	}
	loops, _ := disk.ListLoops()
	for _, l := range loops {
		if strings.HasPrefix(l.Tag, "voltar:") {
			if err := disk.DetachLoop(l.Path); err != nil {
				t.Logf("rescue: detach %s: %v", l.Path, err)
			}
		}
	}
	for _, l := range listLVs(t, vg) {
		if l.hasTag("voltar") {
			exec.Command("lvremove", "-q", "-q", "-f", vg+"/"+l.Name).Run()
		}
	}
}

// lvRow is one row of `lvs --reportformat json`.
type lvRow struct {
	Name   string `json:"lv_name"`
	Attr   string `json:"lv_attr"`
	Tags   string `json:"lv_tags"`
	Origin string `json:"origin"`
	Pool   string `json:"pool_lv"`
	Size   string `json:"lv_size"`
	Active string `json:"lv_active"`
}

func (l lvRow) hasTag(tag string) bool { return slices.Contains(strings.Split(l.Tags, ","), tag) }

// attr returns character i of lv_attr.
func attr(l lvRow, i int) byte {
	if i < len(l.Attr) {
		return l.Attr[i]
	}
	return 0
}

func (l lvRow) size() int64 { n, _ := strconv.ParseInt(l.Size, 10, 64); return n }

// listLVs lists the (visible) LVs of vg.
func listLVs(t *testing.T, vg string) []lvRow {
	t.Helper()
	out, err := exec.Command("lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "lv_name,lv_attr,lv_tags,origin,pool_lv,lv_size,lv_active", vg).Output()
	if err != nil {
		t.Fatalf("lvs %s: %v", vg, err)
	}
	var rep struct {
		Report []struct {
			LV []lvRow `json:"lv"`
		} `json:"report"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("lvs JSON: %v\n%s", err, out)
	}
	var rows []lvRow
	for _, r := range rep.Report {
		rows = append(rows, r.LV...)
	}
	return rows
}

// snapshotsOf returns the LVs whose origin is lv.
func snapshotsOf(t *testing.T, vg, lv string) []lvRow {
	t.Helper()
	var out []lvRow
	for _, l := range listLVs(t, vg) {
		if l.Origin == lv {
			out = append(out, l)
		}
	}
	return out
}

// vgField reads one numeric field of vg (vg_free, vg_seqno, ...).
func vgField(t *testing.T, vg, field string) int64 {
	t.Helper()
	out := testutil.Run(t, "vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", field, vg)
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("vgs -o %s %s: %q", field, vg, out)
	}
	return n
}

// leaveFree fills vg with an LV "filler" so that exactly free bytes stay free.
func leaveFree(t *testing.T, vg string, free int64) {
	t.Helper()
	have := vgField(t, vg, "vg_free")
	if have < free {
		t.Fatalf("%s has %d bytes free, want at least %d", vg, have, free)
	}
	lvcreate(t, vg, "filler", "-L", strconv.FormatInt(have-free, 10)+"b")
	if got := vgField(t, vg, "vg_free"); got != free {
		t.Fatalf("%s: %d bytes free after the filler, want %d", vg, got, free)
	}
}

// assertClean checks that nothing voltar makes is left: no LV tagged voltar
// or named like a voltar snapshot, no loop device tagged voltar:, no mount
// under the runtime directory, no journal of an unfinished run, and no
// backup folder without a manifest.

// voltarLoops lists the loop devices tagged by a voltar.
func voltarLoops(t *testing.T) []disk.LoopInfo {
	t.Helper()
	loops, err := disk.ListLoops()
	if err != nil {
		t.Fatal(err)
	}
	var out []disk.LoopInfo
	for _, l := range loops {
		if strings.HasPrefix(l.Tag, "voltar:") {
			out = append(out, l)
		}
	}
	return out
}
