//go:build uml

package lvm_test

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// candidate is one entry of `voltar volumes --json`.
type candidate struct {
	Volume   string `json:"volume"`
	Kind     string `json:"kind"`
	Size     int64  `json:"size"`
	Selected bool   `json:"selected"`
	Reason   string `json:"reason"`
}

// `voltar volumes` lists every LV of the configured VG: volume-* LVs are
// backed up; snapshots, other names, inactive LVs, thin pools and excluded
// names are not, each with its reason. A voltar snapshot left by a dead run
// is removed before the listing, so it is not even listed.
func TestVolumes(t *testing.T) {
	v := newVoltar(t, config{Exclude: []string{"volume-*14"}})
	vg := v.vg
	step := stepper(t)
	lvcreate(t, vg, "volume-00000011", "-L", "8M")
	lvcreate(t, vg, "volume-00000011-snap", "-s", "-L", "4M", vg+"/volume-00000011")
	lvcreate(t, vg, "backup-disk", "-L", "8M")
	lvcreate(t, vg, "volume-00000012", "-L", "8M", "-an", "-Zn")
	lvcreate(t, vg, "pool13", "-L", "16M", "-T")
	lvcreate(t, vg, "volume-00000013", "-V", "64M", "--thinpool", "pool13")
	lvcreate(t, vg, "volume-00000014", "-L", "8M")
	// A dead run's snapshot, found by its tag alone (no journal).
	const dead = "volume-00000011-voltar-20260101T000000Z-dead00"
	lvcreate(t, vg, dead, "-s", "-L", "4M", "--addtag", "voltar", "--addtag", "voltar-run-20260101T000000Z-dead00", vg+"/volume-00000011")

	step("lvcreate")
	r := v.mustRun(0, "volumes", "--json")
	step("voltar volumes --json")
	if !strings.Contains(r.stderr, "removed leftover snapshot of a dead run") || !strings.Contains(r.stderr, vg+"/"+dead) {
		t.Errorf("voltar volumes did not report removing %s:\n%s", dead, r.stderr)
	}
	var got []candidate
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("voltar volumes --json: %v\n%s", err, r.stdout)
	}
	want := map[string]string{ // volume -> reason; "" = backed up
		"volume-00000011":      "",
		"volume-00000013":      "",
		"volume-00000011-snap": "snapshot of volume-00000011",
		"backup-disk":          "name does not match volume-*",
		"volume-00000012":      "inactive",
		"pool13":               "thin pool",
		"volume-00000014":      "excluded by lvm.exclude volume-*14",
	}
	seen := map[string]bool{}
	for _, c := range got {
		name, ok := strings.CutPrefix(c.Volume, vg+"/")
		if !ok || c.Kind != "lvm" {
			t.Errorf("unexpected entry %+v", c)
			continue
		}
		seen[name] = true
		reason, ok := want[name]
		switch {
		case !ok:
			t.Errorf("listed %s (%+v), which should not exist", name, c)
		case c.Selected != (reason == "") || c.Reason != reason:
			t.Errorf("%s: selected %v, reason %q; want selected %v, reason %q", name, c.Selected, c.Reason, reason == "", reason)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if !seen[name] {
			t.Errorf("%s is not listed", name)
		}
	}
	if !slices.ContainsFunc(got, func(c candidate) bool { return c.Volume == vg+"/volume-00000013" && c.Size == 64*mib }) {
		t.Errorf("volume-00000013 not listed with its virtual size 64 MiB: %+v", got)
	}
	v.assertClean()

	// The table for people: one line per LV, with the reason.
	step("checks")
	r = v.mustRun(0, "volumes")
	step("voltar volumes")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != len(want)+1 || !regexp.MustCompile(`^VOLUME +KIND +SIZE +BACKED UP +ISOLATION +WHY NOT$`).MatchString(lines[0]) {
		t.Fatalf("voltar volumes:\n%s", r.stdout)
	}
	for name, reason := range want {
		yes := "yes"
		if reason != "" {
			yes = "no"
		}
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(vg+"/"+name) + ` +lvm +\S+( \S+)? +` + yes + ` +kernel +` + regexp.QuoteMeta(reason) + `$`)
		if !re.MatchString(r.stdout) {
			t.Errorf("no line for %s (%s %q) in:\n%s", name, yes, reason, r.stdout)
		}
	}
}
