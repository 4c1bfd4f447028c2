package report_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"voltar/internal/report"
)

// The report says what each backup's snapshot holds: hooked,
// crash-consistent or offline.
func TestConsistency(t *testing.T) {
	now := time.Date(2026, 12, 6, 1, 30, 0, 0, time.UTC)
	r := &report.Run{Host: "h1", Started: now, Finished: now.Add(time.Minute), Volumes: []report.Volume{
		{ID: "image/db1.qcow2", Status: report.StatusOK, BackupID: "image/db1.qcow2/2026-12-06T013000Z", Started: now, Finished: now,
			StoredBytes: 1, SourceBytes: 1, Files: 1, PeakCOWPct: -1, Consistency: "hooked"},
		{ID: "vg0/volume-1", Status: report.StatusOK, BackupID: "vg0/volume-1/2026-12-06T013000Z", Started: now, Finished: now,
			StoredBytes: 1, SourceBytes: 1, Files: 1, PeakCOWPct: -1, Consistency: "crash"},
	}}
	var text, js bytes.Buffer
	if err := report.Text(&text, r); err != nil {
		t.Fatal(err)
	}
	if err := report.JSON(&js, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"snapshot  hooked: taken between the pre_snapshot and post_snapshot hooks", "snapshot  crash-consistent"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, &text)
		}
	}
	for _, want := range []string{`"consistency": "hooked"`, `"consistency": "crash"`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON report lacks %s:\n%s", want, &js)
		}
	}
}

// The report says which backups are increments and what they build on.
func TestLevel(t *testing.T) {
	now := time.Date(2026, 12, 6, 1, 30, 0, 0, time.UTC)
	r := &report.Run{Host: "h1", Started: now, Finished: now.Add(time.Minute), Volumes: []report.Volume{
		{ID: "vg0/volume-1", Status: report.StatusOK, BackupID: "vg0/volume-1/2026-12-06T013000Z", Started: now, Finished: now,
			StoredBytes: 1, SourceBytes: 1, Files: 1, PeakCOWPct: -1, Level: 3, Parent: "vg0/volume-1/2026-12-05T013000Z"},
	}}
	var text, js bytes.Buffer
	if err := report.Text(&text, r); err != nil {
		t.Fatal(err)
	}
	if err := report.JSON(&js, r); err != nil {
		t.Fatal(err)
	}
	if want := "level     incremental 3, on vg0/volume-1/2026-12-05T013000Z"; !strings.Contains(text.String(), want) {
		t.Errorf("text report lacks %q:\n%s", want, &text)
	}
	if want := `"parent": "vg0/volume-1/2026-12-05T013000Z"`; !strings.Contains(js.String(), want) || !strings.Contains(js.String(), `"level": 3`) {
		t.Errorf("JSON report lacks level and %s:\n%s", want, &js)
	}
}
