package report

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric names in the textfile. Alert on them, e.g.
//
//	time() - voltar_volume_last_success_timestamp_seconds > 36*3600
//	voltar_run_success == 0
const (
	metricVolumeLastSuccess = "voltar_volume_last_success_timestamp_seconds"
	metricDumpLastSuccess   = "voltar_dump_last_success_timestamp_seconds"
)

// WritePrometheus writes the run's metrics to path, a *.prom file in
// node_exporter's textfile collector directory, atomically (a temporary file
// in the same directory, renamed over path), so the collector never reads a
// half-written file.
//
// The textfile is the whole state node_exporter sees: a series missing from
// it is gone. So that `time() - voltar_volume_last_success_timestamp_seconds`
// keeps growing while a volume fails night after night, the previous file's
// last-success timestamps are read back and kept for every volume and dump
// that did not succeed this run. Volumes that are no longer part of the run
// are dropped, except after a run-level error (the run may not have got as
// far as listing them), when every previous timestamp is kept. A previous
// file that cannot be parsed is replaced; the error says so.
func WritePrometheus(path string, r *Run) error {
	prevVol, prevDump, prevErr := previousSuccess(path)

	reg := prometheus.NewRegistry()
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		reg.MustRegister(g)
		return g
	}
	vec := func(name, help string, label string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{label})
		reg.MustRegister(g)
		return g
	}

	if !r.Started.IsZero() {
		gauge("voltar_run_start_timestamp_seconds", "When the last voltar run started.").Set(unix(r.Started))
	}
	if !r.Finished.IsZero() {
		gauge("voltar_run_end_timestamp_seconds", "When the last voltar run ended.").Set(unix(r.Finished))
	}
	if d, ok := duration(r.Started, r.Finished); ok {
		gauge("voltar_run_duration_seconds", "How long the last voltar run took.").Set(d.Seconds())
	}
	gauge("voltar_run_success", "1 if the last run had no failed volume, dump or run-level error.").Set(bool01(r.OK()))
	ok, nfailed, total := r.Counts()
	vols := vec("voltar_run_volumes", "Volumes of the last run by outcome.", "status")
	vols.WithLabelValues(StatusOK).Set(float64(ok))
	vols.WithLabelValues(StatusFailed).Set(float64(nfailed))
	vols.WithLabelValues(StatusSkipped).Set(float64(total - ok - nfailed))
	gauge("voltar_run_written_bytes", "Bytes the last run added to the store.").Set(float64(r.WrittenBytes()))
	if r.StoreTotalBytes >= 0 {
		gauge("voltar_store_size_bytes", "Size of all of this host's backups in the store after pruning.").Set(float64(r.StoreTotalBytes))
	}
	if r.DestUsedBytes >= 0 && r.DestTotalBytes > 0 {
		gauge("voltar_destination_used_bytes", "Used bytes of the filesystem holding the store.").Set(float64(r.DestUsedBytes))
		gauge("voltar_destination_size_bytes", "Size of the filesystem holding the store.").Set(float64(r.DestTotalBytes))
		if r.DestAvailBytes >= 0 {
			gauge("voltar_destination_available_bytes", "Bytes of the filesystem holding the store free for unprivileged writers, as df shows them.").Set(float64(r.DestAvailBytes))
		}
	}
	if r.Version != "" {
		info := vec("voltar_build_info", "voltar's version, always 1.", "version")
		info.WithLabelValues(r.Version).Set(1)
	}

	lastOK := vec(metricVolumeLastSuccess, "When the volume's last successful backup finished.", "volume")
	dur := vec("voltar_volume_backup_duration_seconds", "How long the volume's backup took in the last run.", "volume")
	stored := vec("voltar_volume_backup_stored_bytes", "Bytes the volume's backup stored in the last run.", "volume")
	failedV := vec("voltar_volume_backup_failed", "1 if the volume's backup failed or was partial in the last run.", "volume")
	cow := vec("voltar_volume_snapshot_peak_cow_percent", "Peak COW usage of the volume's thick snapshot in the last run.", "volume")
	seen := map[string]bool{}
	for _, v := range r.Volumes {
		seen[v.ID] = true
		switch {
		case v.Status == StatusOK:
			lastOK.WithLabelValues(v.ID).Set(unix(orTime(v.Finished, r.Finished)))
		case hasKey(prevVol, v.ID):
			lastOK.WithLabelValues(v.ID).Set(prevVol[v.ID])
		}
		failedV.WithLabelValues(v.ID).Set(bool01(failed(v.Status)))
		if v.Status == StatusSkipped {
			continue
		}
		if d, ok := duration(v.Started, v.Finished); ok {
			dur.WithLabelValues(v.ID).Set(d.Seconds())
		}
		if v.BackupID != "" && v.StoredBytes >= 0 {
			stored.WithLabelValues(v.ID).Set(float64(v.StoredBytes))
		}
		if v.PeakCOWPct >= 0 {
			cow.WithLabelValues(v.ID).Set(v.PeakCOWPct)
		}
	}

	lastDump := vec(metricDumpLastSuccess, "When the database dump last succeeded.", "dump")
	durD := vec("voltar_dump_duration_seconds", "How long the dump took in the last run.", "dump")
	storedD := vec("voltar_dump_stored_bytes", "Bytes the dump stored in the last run.", "dump")
	failedD := vec("voltar_dump_failed", "1 if the dump failed in the last run.", "dump")
	seenDump := map[string]bool{}
	for _, d := range r.Dumps {
		seenDump[d.Name] = true
		switch {
		case d.Status == StatusOK:
			lastDump.WithLabelValues(d.Name).Set(unix(orTime(d.Finished, r.Finished)))
		case hasKey(prevDump, d.Name):
			lastDump.WithLabelValues(d.Name).Set(prevDump[d.Name])
		}
		failedD.WithLabelValues(d.Name).Set(bool01(failed(d.Status)))
		if d.Status == StatusSkipped {
			continue
		}
		if dd, ok := duration(d.Started, d.Finished); ok {
			durD.WithLabelValues(d.Name).Set(dd.Seconds())
		}
		if d.BackupID != "" && d.StoredBytes >= 0 {
			storedD.WithLabelValues(d.Name).Set(float64(d.StoredBytes))
		}
	}

	if len(r.Errors) > 0 {
		for id, ts := range prevVol {
			if !seen[id] {
				lastOK.WithLabelValues(id).Set(ts)
			}
		}
		for name, ts := range prevDump {
			if !seenDump[name] {
				lastDump.WithLabelValues(name).Set(ts)
			}
		}
	}

	if err := prometheus.WriteToTextfile(path, reg); err != nil {
		return fmt.Errorf("write prometheus textfile %s: %w", path, err)
	}
	if prevErr != nil {
		return fmt.Errorf("prometheus textfile %s written, but its previous last-success times were lost: %w", path, prevErr)
	}
	return nil
}

// previousSuccess reads the last-success timestamps per volume and per dump
// from an earlier textfile at path; a missing file is no error.
func previousSuccess(path string) (vols, dumps map[string]float64, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(f)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", path, err)
	}
	pick := func(name, label string) map[string]float64 {
		out := map[string]float64{}
		mf := families[name]
		if mf == nil {
			return out
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && m.GetGauge() != nil {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
		return out
	}
	return pick(metricVolumeLastSuccess, "volume"), pick(metricDumpLastSuccess, "dump"), nil
}

func hasKey(m map[string]float64, k string) bool {
	_, ok := m[k]
	return ok
}

func unix(t time.Time) float64 { return float64(t.Unix()) + float64(t.Nanosecond())/1e9 }

func orTime(t, fallback time.Time) time.Time {
	if t.IsZero() {
		return fallback
	}
	return t
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
