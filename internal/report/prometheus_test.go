package report_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"voltar/internal/report"
)

// metrics parses a textfile back into name{label="value"} -> value.
func metrics(t *testing.T, path string) map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	out := map[string]float64{}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

func wantMetrics(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s missing", k)
		case g != w:
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
}

func wantAbsent(t *testing.T, got map[string]float64, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, ok := got[k]; ok {
			t.Errorf("%s = %v, want absent", k, v)
		}
	}
}

func ts(t time.Time) float64 { return float64(t.Unix()) }

func TestWritePrometheus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "voltar.prom")
	r := runs["one-failed-hints"]()
	r.Dumps = runs["with-dumps"]().Dumps
	if err := report.WritePrometheus(path, r); err != nil {
		t.Fatal(err)
	}
	got := metrics(t, path)
	a, b, c := r.Volumes[0], r.Volumes[1], r.Volumes[2]
	wantMetrics(t, got, map[string]float64{
		"voltar_run_start_timestamp_seconds":                                ts(r.Started),
		"voltar_run_end_timestamp_seconds":                                  ts(r.Finished),
		"voltar_run_duration_seconds":                                       336,
		"voltar_run_success":                                                0,
		"voltar_run_volumes{status=ok}":                                     2,
		"voltar_run_volumes{status=failed}":                                 1,
		"voltar_run_volumes{status=skipped}":                                0,
		"voltar_run_written_bytes":                                          float64(r.WrittenBytes()),
		"voltar_store_size_bytes":                                           float64(267 * GiB),
		"voltar_destination_used_bytes":                                     float64(350 * GiB),
		"voltar_destination_size_bytes":                                     float64(1000 * GiB),
		"voltar_build_info{version=1.0.0}":                                  1,
		"voltar_volume_last_success_timestamp_seconds{volume=" + a.ID + "}": ts(a.Finished),
		"voltar_volume_last_success_timestamp_seconds{volume=" + c.ID + "}": ts(c.Finished),
		"voltar_volume_backup_failed{volume=" + a.ID + "}":                  0,
		"voltar_volume_backup_failed{volume=" + b.ID + "}":                  1,
		"voltar_volume_backup_duration_seconds{volume=" + a.ID + "}":        81,
		"voltar_volume_backup_duration_seconds{volume=" + b.ID + "}":        123,
		"voltar_volume_backup_stored_bytes{volume=" + a.ID + "}":            float64(a.StoredBytes),
		"voltar_volume_snapshot_peak_cow_percent{volume=" + b.ID + "}":      100,
		"voltar_dump_last_success_timestamp_seconds{dump=db1}":              ts(r.Dumps[0].Finished),
		"voltar_dump_failed{dump=db1}":                                      0,
		"voltar_dump_failed{dump=wiki-mysql}":                               1,
		"voltar_dump_duration_seconds{dump=db1}":                            15,
		"voltar_dump_stored_bytes{dump=db1}":                                float64(150 * MiB),
	})
	// A failed backup stored nothing and never succeeded (no earlier file).
	wantAbsent(t, got,
		"voltar_volume_last_success_timestamp_seconds{volume="+b.ID+"}",
		"voltar_volume_backup_stored_bytes{volume="+b.ID+"}",
		"voltar_dump_last_success_timestamp_seconds{dump=wiki-mysql}",
		"voltar_dump_stored_bytes{dump=wiki-mysql}")

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 (node_exporter must read it)", fi.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only voltar.prom (temporary file left?)", len(entries))
	}
}

// TestWritePrometheusKeepsLastSuccess runs three nights: all good; one volume
// fails and another is gone from the config; the run aborts before it lists
// volumes.
func TestWritePrometheusKeepsLastSuccess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "voltar.prom")
	night := func(day int, statuses map[string]string, dumpStatus string) *report.Run {
		r := &report.Run{Host: "h", Started: at(day, 1, 0, 0), Finished: at(day, 1, 30, 0), StoreTotalBytes: -1, DestUsedBytes: -1, DestAvailBytes: -1, DestTotalBytes: -1}
		for _, id := range []string{"vg/a", "vg/b", "vg/c"} {
			st, ok := statuses[id]
			if !ok {
				continue
			}
			v := vol(id, at(day, 1, 0, 0), 10*time.Minute)
			v.Status = st
			if st != report.StatusOK {
				v.BackupID = ""
			}
			r.Volumes = append(r.Volumes, v)
		}
		r.Dumps = []report.Dump{{Name: "db", Status: dumpStatus, Started: at(day, 1, 20, 0), Finished: at(day, 1, 25, 0)}}
		return r
	}

	day1 := night(0, map[string]string{"vg/a": "ok", "vg/b": "ok", "vg/c": "ok"}, "ok")
	if err := report.WritePrometheus(path, day1); err != nil {
		t.Fatal(err)
	}
	okAt := at(0, 1, 10, 0)

	day2 := night(1, map[string]string{"vg/a": "ok", "vg/b": "failed"}, "failed")
	if err := report.WritePrometheus(path, day2); err != nil {
		t.Fatal(err)
	}
	got := metrics(t, path)
	wantMetrics(t, got, map[string]float64{
		"voltar_volume_last_success_timestamp_seconds{volume=vg/a}": ts(at(1, 1, 10, 0)),
		"voltar_volume_last_success_timestamp_seconds{volume=vg/b}": ts(okAt),
		"voltar_volume_backup_failed{volume=vg/b}":                  1,
		"voltar_dump_last_success_timestamp_seconds{dump=db}":       ts(at(0, 1, 25, 0)),
		"voltar_dump_failed{dump=db}":                               1,
		"voltar_run_success":                                        0,
	})
	wantAbsent(t, got, "voltar_volume_last_success_timestamp_seconds{volume=vg/c}", "voltar_volume_backup_failed{volume=vg/c}")

	day3 := &report.Run{Host: "h", Started: at(2, 1, 0, 0), Finished: at(2, 1, 0, 1),
		Errors: []report.Problem{{Message: "preflight: /BACKUPS is not a mount point"}}}
	if err := report.WritePrometheus(path, day3); err != nil {
		t.Fatal(err)
	}
	got = metrics(t, path)
	wantMetrics(t, got, map[string]float64{
		"voltar_volume_last_success_timestamp_seconds{volume=vg/a}": ts(at(1, 1, 10, 0)),
		"voltar_volume_last_success_timestamp_seconds{volume=vg/b}": ts(okAt),
		"voltar_dump_last_success_timestamp_seconds{dump=db}":       ts(at(0, 1, 25, 0)),
		"voltar_run_success":            0,
		"voltar_run_volumes{status=ok}": 0,
	})
	wantAbsent(t, got, "voltar_volume_backup_failed{volume=vg/a}", "voltar_volume_backup_duration_seconds{volume=vg/a}")
}

func TestWritePrometheusBrokenPrevious(t *testing.T) {
	path := filepath.Join(t.TempDir(), "voltar.prom")
	if err := os.WriteFile(path, []byte("this is { not a textfile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := report.WritePrometheus(path, runs["all-ok-pruned"]())
	if err == nil || !strings.Contains(err.Error(), "written") || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want one saying the file was written but previous values were lost", err)
	}
	got := metrics(t, path)
	wantMetrics(t, got, map[string]float64{"voltar_run_success": 1})
}

func TestWritePrometheusUnwritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "voltar.prom")
	err := report.WritePrometheus(path, runs["all-ok-pruned"]())
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want one naming %s", err, path)
	}
}

// A configured source that is missing fails like a volume, under the same
// label; a volume with backups that the run did not select is marked, with
// its newest backup as its last success, and makes no run fail.
func TestWritePrometheusMissingAndUnselected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "voltar.prom")
	r := runs["missing-and-unselected"]()
	if err := report.WritePrometheus(path, r); err != nil {
		t.Fatal(err)
	}
	got := metrics(t, path)
	u0, u1 := r.Unselected[0], r.Unselected[1]
	wantMetrics(t, got, map[string]float64{
		"voltar_run_success":                                                 0,
		"voltar_run_volumes{status=failed}":                                  2,
		"voltar_volume_backup_failed{volume=image/web2.img}":                 1,
		"voltar_volume_backup_failed{volume=cinder-volumes/*}":               1,
		"voltar_volume_unselected{volume=" + u0.ID + "}":                     1,
		"voltar_volume_unselected{volume=" + u1.ID + "}":                     1,
		"voltar_volume_last_success_timestamp_seconds{volume=" + u0.ID + "}": ts(u0.LastBackup),
		"voltar_volume_last_success_timestamp_seconds{volume=" + u1.ID + "}": ts(u1.LastBackup),
	})
	wantAbsent(t, got,
		"voltar_volume_unselected{volume="+r.Volumes[0].ID+"}",
		"voltar_volume_backup_failed{volume="+u0.ID+"}")

	// Nothing unselected: the series is absent, not 0.
	if err := report.WritePrometheus(path, runs["all-ok-pruned"]()); err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, metrics(t, path), "voltar_volume_unselected{volume="+u0.ID+"}")
}

// A stored backup whose prune failed moves the last success to itself and
// is told apart from a failed backup.
func TestWritePrometheusPruneFailed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "voltar.prom")
	r := runs["stored-prune-failed"]()
	a, b, d := r.Volumes[0], r.Volumes[1], r.Dumps[0]
	// The previous night's file: the new backup must replace its time.
	prev := "voltar_volume_last_success_timestamp_seconds{volume=\"" + a.ID + "\"} 1.7e+09\n" +
		"voltar_dump_last_success_timestamp_seconds{dump=\"db1\"} 1.7e+09\n"
	if err := os.WriteFile(path, []byte(prev), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := report.WritePrometheus(path, r); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, metrics(t, path), map[string]float64{
		"voltar_run_success": 0,
		"voltar_volume_last_success_timestamp_seconds{volume=" + a.ID + "}": ts(a.Finished),
		"voltar_volume_backup_failed{volume=" + a.ID + "}":                  0,
		"voltar_volume_prune_failed{volume=" + a.ID + "}":                   1,
		"voltar_volume_prune_failed{volume=" + b.ID + "}":                   0,
		"voltar_volume_backup_stored_bytes{volume=" + a.ID + "}":            float64(a.StoredBytes),
		"voltar_dump_last_success_timestamp_seconds{dump=db1}":              ts(d.Finished),
		"voltar_dump_failed{dump=db1}":                                      0,
		"voltar_dump_prune_failed{dump=db1}":                                1,
		"voltar_dump_stored_bytes{dump=db1}":                                float64(d.StoredBytes),
	})
}
