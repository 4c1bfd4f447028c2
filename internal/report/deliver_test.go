package report_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/report"
)

// Deliver writes every output it is given, the files atomically and
// private; what it cannot write it names by its config key, and the other
// outputs are written all the same.
func TestDeliver(t *testing.T) {
	dir := t.TempDir()
	var text bytes.Buffer
	out := report.Outputs{
		Text:               &text,
		JSONFile:           filepath.Join(dir, "missing-dir", "report.json"),
		PrometheusTextfile: filepath.Join(dir, "voltar.prom"),
	}
	err := report.Deliver(context.Background(), base(), out)
	if err == nil || !strings.Contains(err.Error(), "report.json_file") {
		t.Errorf("Deliver = %v, want the JSON file's error", err)
	}
	if !strings.Contains(text.String(), "nova-vol1: 0/0 volumes OK") {
		t.Errorf("text report:\n%s", text.String())
	}
	if _, err := os.Stat(out.PrometheusTextfile); err != nil {
		t.Errorf("the textfile was not written after the JSON file failed: %v", err)
	}

	out.JSONFile = filepath.Join(dir, "report.json")
	if err := report.Deliver(context.Background(), base(), out); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out.JSONFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("JSON report: %v, %v; want mode 0600", fi, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
