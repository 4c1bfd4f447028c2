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
//	voltar_volume_unselected == 1
const (
	metricVolumeLastSuccess = "voltar_volume_last_success_timestamp_seconds"
	metricDumpLastSuccess   = "voltar_dump_last_success_timestamp_seconds"
	metricVolumeUnselected  = "voltar_volume_unselected"
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
// far as listing them), when every previous timestamp is kept, and except
// Run.Unselected: a volume with backups in the store that the run did not
// select keeps its last-success time (its newest backup's) and is marked
// voltar_volume_unselected 1, so a backup that stopped keeps alerting. A previous
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
	vols := vec("voltar_run_volumes", "Volumes of the last run by outcome; failed includes those stored whose prune failed (voltar_volume_prune_failed).", "status")
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

	volRows := newRowMetrics(vec, "volume", "voltar_volume_backup_", "the volume's backup", prevVol,
		metricVolumeLastSuccess, "When the volume's last successful backup finished.",
		"1 if the volume's backup failed or was partial in the last run.",
		"voltar_volume_prune_failed", "1 if the volume's new backup is stored but pruning its old backups failed in the last run.")
	cow := vec("voltar_volume_snapshot_peak_cow_percent", "Peak COW usage of the volume's thick snapshot in the last run.", "volume")
	for _, v := range r.Volumes {
		if volRows.set(v.outcome(), r.Finished) && v.PeakCOWPct >= 0 {
			cow.WithLabelValues(v.ID).Set(v.PeakCOWPct)
		}
	}
	dumpRows := newRowMetrics(vec, "dump", "voltar_dump_", "the dump", prevDump,
		metricDumpLastSuccess, "When the database dump last succeeded.",
		"1 if the dump failed in the last run.",
		"voltar_dump_prune_failed", "1 if the dump is stored but pruning its old dumps failed in the last run.")
	for _, d := range r.Dumps {
		dumpRows.set(d.outcome(), r.Finished)
	}
	// An unselected volume keeps its series, so that the stale-backup
	// alert sees its last backup age and an alert can name it; its last
	// success comes from the store, not from the previous file.
	unsel := vec(metricVolumeUnselected, "1 for a volume with backups in the store that the last run did not select.", "volume")
	for _, u := range r.Unselected {
		if volRows.seen[u.ID] {
			continue
		}
		volRows.seen[u.ID] = true
		unsel.WithLabelValues(u.ID).Set(1)
		if !u.LastBackup.IsZero() {
			volRows.lastOK.WithLabelValues(u.ID).Set(unix(u.LastBackup))
		}
	}
	if len(r.Errors) > 0 {
		volRows.keepUnseen()
		dumpRows.keepUnseen()
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

// rowMetrics are the series each volume or dump of a run has, by its name.
type rowMetrics struct {
	lastOK, dur, stored, failed *prometheus.GaugeVec
	pruneFailed                 *prometheus.GaugeVec
	prev                        map[string]float64 // last-success times of the previous file
	seen                        map[string]bool
}

// newRowMetrics registers the series of the rows labelled label: its
// last success (lastOK, help lastOKHelp), and prefix+duration_seconds,
// stored_bytes and failed (help failedHelp), and pruneFailed, what naming
// the row in help texts. prev holds the previous file's last-success times.
func newRowMetrics(vec func(name, help, label string) *prometheus.GaugeVec, label, prefix, what string,
	prev map[string]float64, lastOK, lastOKHelp, failedHelp, pruneFailed, pruneFailedHelp string) rowMetrics {
	return rowMetrics{
		lastOK:      vec(lastOK, lastOKHelp, label),
		dur:         vec(prefix+"duration_seconds", "How long "+what+" took in the last run.", label),
		stored:      vec(prefix+"stored_bytes", "Bytes "+what+" stored in the last run.", label),
		failed:      vec(prefix+"failed", failedHelp, label),
		pruneFailed: vec(pruneFailed, pruneFailedHelp, label),
		prev:        prev, seen: map[string]bool{},
	}
}

// set records one row of a run that finished at runEnd; it reports
// whether the row was attempted (not skipped).
func (m rowMetrics) set(o outcome, runEnd time.Time) bool {
	m.seen[o.name] = true
	switch {
	case stored(o.status):
		m.lastOK.WithLabelValues(o.name).Set(unix(orTime(o.finished, runEnd)))
	case hasKey(m.prev, o.name):
		m.lastOK.WithLabelValues(o.name).Set(m.prev[o.name])
	}
	// A failed prune did not fail the backup: each has its own series, so
	// that the backup's age and failure alerts stay true to the backup.
	prune := o.status == StatusPruneFailed
	m.failed.WithLabelValues(o.name).Set(bool01(failed(o.status) && !prune))
	m.pruneFailed.WithLabelValues(o.name).Set(bool01(prune))
	if o.status == StatusSkipped {
		return false
	}
	if d, ok := duration(o.started, o.finished); ok {
		m.dur.WithLabelValues(o.name).Set(d.Seconds())
	}
	if o.backupID != "" && o.storedBytes >= 0 {
		m.stored.WithLabelValues(o.name).Set(float64(o.storedBytes))
	}
	return true
}

// keepUnseen keeps the previous last-success time of every row this run
// did not list.
func (m rowMetrics) keepUnseen() {
	for name, ts := range m.prev {
		if !m.seen[name] {
			m.lastOK.WithLabelValues(name).Set(ts)
		}
	}
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
