package report_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"voltar/internal/fail"
	"voltar/internal/report"
)

func TestText(t *testing.T) {
	for _, name := range sortedKeys() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := report.Text(&b, runs[name]()); err != nil {
				t.Fatal(err)
			}
			golden(t, "text/"+name+".golden", b.Bytes())
		})
	}
}

func TestJSON(t *testing.T) {
	for _, name := range sortedKeys() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := report.JSON(&b, runs[name]()); err != nil {
				t.Fatal(err)
			}
			if !json.Valid(b.Bytes()) {
				t.Fatalf("invalid JSON:\n%s", b.Bytes())
			}
			golden(t, "json/"+name+".golden.json", b.Bytes())
		})
	}
}

func TestJSONUnknownIsNull(t *testing.T) {
	var b bytes.Buffer
	if err := report.JSON(&b, runs["unknown-sizes"]()); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"store_total_bytes", "dest_used_bytes", "dest_total_bytes", "dest_used_percent"} {
		if v, ok := got[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
	v := got["volumes"].([]any)[0].(map[string]any)
	for _, k := range []string{"source_bytes", "files", "peak_cow_percent"} {
		if v[k] != nil {
			t.Errorf("volume %s = %v, want null", k, v[k])
		}
	}
}

func sortedKeys() []string {
	var names []string
	for n := range runs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func TestSubject(t *testing.T) {
	ok := func(id string) report.Volume { return report.Volume{ID: id, Status: report.StatusOK} }
	bad := func(id, status string) report.Volume { return report.Volume{ID: id, Status: status} }
	var twelve []report.Volume
	for i := range 12 {
		twelve = append(twelve, ok(fmt.Sprint("vg/v", i)))
	}
	failed2 := slices.Clone(twelve)
	failed2[3].Status, failed2[7].Status = report.StatusFailed, report.StatusPartial
	dumps := []report.Dump{{Name: "a", Status: report.StatusOK}, {Name: "b", Status: report.StatusOK}, {Name: "c", Status: report.StatusOK}}
	dumpFailed := slices.Clone(dumps)
	dumpFailed[1].Status = report.StatusFailed

	for _, c := range []struct {
		name   string
		run    report.Run
		want   string
		wantOK bool
	}{
		{"all ok", report.Run{Host: "host1", Volumes: twelve}, "[voltar] host1: 12/12 volumes OK", true},
		{"two failed", report.Run{Host: "host1", Volumes: failed2}, "[voltar] host1: FAILED 2/12 volumes", false},
		{"dumps ok", report.Run{Host: "host1", Volumes: twelve, Dumps: dumps}, "[voltar] host1: 12/12 volumes OK, 3/3 dumps OK", true},
		{"dump failed", report.Run{Host: "host1", Volumes: twelve, Dumps: dumpFailed}, "[voltar] host1: 12/12 volumes OK, FAILED 1/3 dumps", false},
		{"both failed", report.Run{Host: "host1", Volumes: failed2, Dumps: dumpFailed}, "[voltar] host1: FAILED 2/12 volumes, FAILED 1/3 dumps", false},
		{"skipped", report.Run{Host: "h", Volumes: []report.Volume{ok("a"), bad("b", report.StatusSkipped)}}, "[voltar] h: 1/2 volumes OK (1 skipped)", true},
		{"prune failed", report.Run{Host: "h", Volumes: []report.Volume{ok("a"), bad("b", report.StatusPruneFailed), bad("c", report.StatusSkipped)}},
			"[voltar] h: FAILED 1/3 volumes (1 stored, prune failed; 1 skipped)", false},
		{"prune and backup failed", report.Run{Host: "h", Volumes: []report.Volume{bad("a", report.StatusFailed), bad("b", report.StatusPruneFailed)}},
			"[voltar] h: FAILED 2/2 volumes (1 stored, prune failed)", false},
		{"dump prune failed", report.Run{Host: "h", Volumes: twelve, Dumps: []report.Dump{{Name: "a", Status: report.StatusPruneFailed}}},
			"[voltar] h: 12/12 volumes OK, FAILED 1/1 dumps (1 stored, prune failed)", false},
		{"unknown status fails", report.Run{Host: "h", Volumes: []report.Volume{bad("a", "weird")}}, "[voltar] h: FAILED 1/1 volumes", false},
		{"run error", report.Run{Host: "h", Errors: []report.Problem{{Message: "another voltar run holds the lock\nPID 12"}}},
			"[voltar] h: FAILED: another voltar run holds the lock", false},
		{"long run error", report.Run{Host: "h", Errors: []report.Problem{{Message: strings.Repeat("x", 100)}}},
			"[voltar] h: FAILED: " + strings.Repeat("x", 79) + "…", false},
		{"nothing", report.Run{Host: "h"}, "[voltar] h: 0/0 volumes OK", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := report.Subject(&c.run); got != c.want {
				t.Errorf("Subject = %q\n           want %q", got, c.want)
			}
			if got := c.run.OK(); got != c.wantOK {
				t.Errorf("OK() = %v, want %v", got, c.wantOK)
			}
		})
	}
}

func TestCounts(t *testing.T) {
	r := report.Run{Volumes: []report.Volume{
		{Status: report.StatusOK}, {Status: report.StatusOK}, {Status: report.StatusFailed},
		{Status: report.StatusPartial}, {Status: report.StatusSkipped}, {Status: ""},
	}}
	ok, failed, total := r.Counts()
	if ok != 2 || failed != 3 || total != 6 {
		t.Errorf("Counts() = %d, %d, %d; want 2, 3, 6", ok, failed, total)
	}
	// A stored backup whose prune failed still fails the run, and is
	// counted apart.
	r.Volumes = append(r.Volumes, report.Volume{Status: report.StatusPruneFailed})
	r.Dumps = []report.Dump{{Status: report.StatusPruneFailed}, {Status: report.StatusOK}}
	if ok, failed, total := r.Counts(); ok != 2 || failed != 4 || total != 7 {
		t.Errorf("Counts() = %d, %d, %d; want 2, 4, 7", ok, failed, total)
	}
	if v, d := r.PruneFailed(); v != 1 || d != 1 {
		t.Errorf("PruneFailed() = %d, %d; want 1, 1", v, d)
	}
}

func TestWrittenBytes(t *testing.T) {
	r := runs["with-dumps"]()
	if got, want := r.WrittenBytes(), 3*GiB+GiB/2+150*MiB; got != want {
		t.Errorf("WrittenBytes() = %d, want %d", got, want)
	}
}

func TestNewProblem(t *testing.T) {
	if report.NewProblem(nil) != nil {
		t.Error("NewProblem(nil) != nil")
	}
	err := fmt.Errorf("backup vg/a: %w", fail.Hint(errors.New("snapshot overflowed"), "raise snapshot_size"))
	p := report.NewProblem(err)
	if p.Message != "backup vg/a: snapshot overflowed" || !slices.Equal(p.Hints, []string{"raise snapshot_size"}) {
		t.Errorf("NewProblem = %+v", p)
	}
}

func TestTextRedactsStorePassword(t *testing.T) {
	r := base()
	r.Store = "s3://AKIAEXAMPLE:s3cr3t@rgw.example.net/backups"
	var text, js bytes.Buffer
	if err := report.Text(&text, r); err != nil {
		t.Fatal(err)
	}
	if err := report.JSON(&js, r); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"text": text.String(), "json": js.String()} {
		if strings.Contains(out, "s3cr3t") {
			t.Errorf("%s report contains the store password:\n%s", name, out)
		}
	}
}

// The Started and Finished lines show each time once in the host's zone,
// and in UTC too only when that zone is not UTC: a host set to UTC has
// time.Local, not time.UTC, in its times.
func TestTextStartedOnce(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Skip(err)
	}
	start := time.Date(2026, 11, 25, 1, 0, 1, 0, time.UTC)
	for _, c := range []struct {
		name string
		loc  *time.Location
		want string
	}{
		{"time.UTC", time.UTC, "  Started       2026-11-25 01:00:01 UTC\n"},
		{"local zone that is UTC", time.FixedZone("UTC", 0), "  Started       2026-11-25 01:00:01 UTC\n"},
		{"GMT in winter", london, "  Started       2026-11-25 01:00:01 GMT\n"},
		{"CET", cet, "  Started       2026-11-25 02:00:01 CET  (2026-11-25 01:00:01 UTC)\n"},
		{"BST in summer", london, "  Started       2026-07-25 02:00:01 BST  (2026-07-25 01:00:01 UTC)\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := base()
			r.Started = start.In(c.loc)
			if c.name == "BST in summer" {
				r.Started = start.AddDate(0, -4, 0).In(c.loc)
			}
			r.Finished = r.Started.Add(time.Minute)
			var b bytes.Buffer
			if err := report.Text(&b, r); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), c.want) {
				t.Errorf("report lacks %q:\n%s", c.want, b.String())
			}
		})
	}
}

// A bootloader warning of the backup reaches the text and JSON reports.
func TestVolumeWarnings(t *testing.T) {
	r := runs[sortedKeys()[0]]()
	if len(r.Volumes) == 0 {
		t.Skip("first sample run has no volumes")
	}
	const w = "p1: syslinux/extlinux (/boot/syslinux/ldlinux.sys) points at the blocks of ldlinux.sys, which a restore places anew; reinstall the bootloader after restoring"
	r.Volumes[0].Warnings = []string{w}
	var text, js bytes.Buffer
	if err := report.Text(&text, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "warning   p1: syslinux") || !strings.Contains(text.String(), "reinstall the bootloader") {
		t.Errorf("text report lacks the warning:\n%s", text.String())
	}
	if err := report.JSON(&js, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"warnings": [`) {
		t.Errorf("JSON report lacks the warning:\n%s", js.String())
	}
}
