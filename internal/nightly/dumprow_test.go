package nightly

import (
	"errors"
	"testing"

	"voltar/internal/dump"
	"voltar/internal/manifest"
	"voltar/internal/report"
)

// A dump's row says ok with its backup's ID, failed or skipped with the
// error (moved here with the conversion, from dump's concurrency test).
func TestDumpRow(t *testing.T) {
	m := &manifest.Manifest{ID: "dumps/db1/2026-11-25T013000Z",
		Filesystems: []manifest.Filesystem{{Name: "dump", StoredBytes: 42}}, PublishedBytes: 42 + 900}
	for _, tc := range []struct {
		res    dump.Result
		status string
	}{
		{dump.Result{Name: "a", Manifest: m}, report.StatusOK},
		{dump.Result{Name: "b", Err: errors.New("exit 2")}, report.StatusFailed},
		{dump.Result{Name: "c", Err: errors.New("not attempted"), Skipped: true}, report.StatusSkipped},
	} {
		row := DumpRow(tc.res)
		if row.Name != tc.res.Name || row.Status != tc.status {
			t.Errorf("%s: row %+v, want status %s", tc.res.Name, row, tc.status)
		}
		if tc.status == report.StatusOK && (row.BackupID != m.ID || row.StoredBytes != 42+900 || row.Err != nil) {
			t.Errorf("%s: row %+v", tc.res.Name, row)
		}
		if tc.status != report.StatusOK && (row.Err == nil || row.StoredBytes != -1) {
			t.Errorf("%s: row %+v", tc.res.Name, row)
		}
	}
}
