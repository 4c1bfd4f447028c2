package report

import (
	"encoding/json"
	"io"
	"time"
)

// JSONSchema is the version of the JSON report; it changes only when a field
// changes meaning or goes away.
const JSONSchema = 1

// The JSON report. Sizes and percentages that are unknown are null, never
// -1; times are RFC 3339 with the run's zone offset and absent when unknown.
// volumes_prune_failed (dumps_prune_failed) counts those of volumes_failed
// (dumps_failed) whose backup is stored and only the prune after it failed.
type jsonRun struct {
	Schema          int         `json:"schema"`
	Version         string      `json:"version,omitempty"`
	Host            string      `json:"host"`
	OK              bool        `json:"ok"`
	Started         time.Time   `json:"started,omitzero"`
	Finished        time.Time   `json:"finished,omitzero"`
	DurationSeconds *float64    `json:"duration_seconds"`
	Store           string      `json:"store"`
	Retention       string      `json:"retention"`
	VolumesOK       int         `json:"volumes_ok"`
	VolumesFailed   int         `json:"volumes_failed"`
	VolPruneFailed  int         `json:"volumes_prune_failed"`
	VolumesSkipped  int         `json:"volumes_skipped"`
	VolumesTotal    int         `json:"volumes_total"`
	DumpsOK         int         `json:"dumps_ok"`
	DumpsFailed     int         `json:"dumps_failed"`
	DumpPruneFailed int         `json:"dumps_prune_failed"`
	DumpsTotal      int         `json:"dumps_total"`
	WrittenBytes    int64       `json:"written_bytes"`
	StoreTotalBytes *int64      `json:"store_total_bytes"`
	DestUsedBytes   *int64      `json:"dest_used_bytes"`
	DestTotalBytes  *int64      `json:"dest_total_bytes"`
	DestUsedPercent *float64    `json:"dest_used_percent"`
	Errors          []jsonError `json:"errors"`
	Volumes         []jsonVol   `json:"volumes"`
	Dumps           []jsonDump  `json:"dumps"`
	// Unselected is absent when there are none.
	Unselected []jsonUnselected `json:"unselected,omitempty"`
}

// jsonUnselected is a volume with backups that the run did not select.
type jsonUnselected struct {
	ID           string    `json:"id"`
	LastBackup   time.Time `json:"last_backup"`
	LastBackupID string    `json:"last_backup_id"`
	Backups      int       `json:"backups"`
}

// jsonOutcome is what volume and dump rows share; embedded, its fields
// stand in the row's object where it is embedded.
type jsonOutcome struct {
	Status          string    `json:"status"`
	BackupID        string    `json:"backup_id,omitempty"`
	Started         time.Time `json:"started,omitzero"`
	Finished        time.Time `json:"finished,omitzero"`
	DurationSeconds *float64  `json:"duration_seconds"`
	StoredBytes     *int64    `json:"stored_bytes"`
}

func (o outcome) json() jsonOutcome {
	return jsonOutcome{o.status, o.backupID, o.started, o.finished, seconds(o.started, o.finished), known(o.storedBytes)}
}

type jsonVol struct {
	ID string `json:"id"`
	jsonOutcome
	SourceBytes    *int64     `json:"source_bytes"`
	Files          *int64     `json:"files"`
	PeakCOWPercent *float64   `json:"peak_cow_percent"`
	Consistency    string     `json:"consistency,omitempty"`
	Snapshot       string     `json:"snapshot,omitempty"`
	Level          int        `json:"level"`
	Parent         string     `json:"parent,omitempty"`
	Domain         string     `json:"domain,omitempty"`
	Filesystems    []jsonFS   `json:"filesystems"`
	Removed        []jsonRm   `json:"removed"`
	Error          *jsonError `json:"error,omitempty"`
	Warnings       []string   `json:"warnings,omitempty"`
}

type jsonFS struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Mode        string `json:"mode"`
	Reason      string `json:"reason,omitempty"`
	StoredBytes *int64 `json:"stored_bytes"`
	// NotEntered counts paths whose contents the archive lacks;
	// SubvolumesSkipped btrfs subvolumes (read-only snapshots) left out.
	NotEntered        int `json:"not_entered"`
	Subvolumes        int `json:"subvolumes"`
	SubvolumesSkipped int `json:"subvolumes_skipped"`
}

type jsonRm struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

type jsonDump struct {
	Name string `json:"name"`
	jsonOutcome
	Error *jsonError `json:"error,omitempty"`
}

type jsonError struct {
	Message string   `json:"message"`
	Hints   []string `json:"hints"`
}

// JSON writes the report for machines (the `report.json_file` and the mail
// attachment), indented, one object.
func JSON(w io.Writer, r *Run) error {
	vok, vfailed, vtotal := r.Counts()
	dok, dfailed, dtotal := r.DumpCounts()
	vpf, dpf := r.PruneFailed()
	j := jsonRun{
		Schema:          JSONSchema,
		Version:         r.Version,
		Host:            r.Host,
		OK:              r.OK(),
		Started:         r.Started,
		Finished:        r.Finished,
		DurationSeconds: seconds(r.Started, r.Finished),
		Store:           redact(r.Store),
		Retention:       r.Retention,
		VolumesOK:       vok,
		VolumesFailed:   vfailed,
		VolPruneFailed:  vpf,
		VolumesSkipped:  vtotal - vok - vfailed,
		VolumesTotal:    vtotal,
		DumpsOK:         dok,
		DumpsFailed:     dfailed,
		DumpPruneFailed: dpf,
		DumpsTotal:      dtotal,
		WrittenBytes:    r.WrittenBytes(),
		StoreTotalBytes: known(r.StoreTotalBytes),
		DestUsedBytes:   known(r.DestUsedBytes),
		DestTotalBytes:  known(r.DestTotalBytes),
		Errors:          []jsonError{},
		Volumes:         []jsonVol{},
		Dumps:           []jsonDump{},
	}
	if pct, ok := usedPercent(r.DestUsedBytes, r.DestAvailBytes); ok {
		j.DestUsedPercent = &pct
	}
	for _, e := range r.Errors {
		j.Errors = append(j.Errors, *jsonErr(&e))
	}
	for _, v := range r.Volumes {
		jv := jsonVol{
			ID:          v.ID,
			jsonOutcome: v.outcome().json(),
			SourceBytes: known(v.SourceBytes),
			Files:       known(v.Files),
			Filesystems: []jsonFS{},
			Removed:     []jsonRm{},
			Error:       jsonErr(v.Err),
			Warnings:    v.Warnings,
			Consistency: v.Consistency,
			Snapshot:    v.Snapshot,
			Level:       v.Level,
			Parent:      v.Parent,
			Domain:      v.Domain,
		}
		if v.PeakCOWPct >= 0 {
			jv.PeakCOWPercent = &v.PeakCOWPct
		}
		for _, fs := range v.Filesystems {
			jv.Filesystems = append(jv.Filesystems, jsonFS{fs.Name, fs.Type, fs.Mode, fs.Reason, known(fs.StoredBytes),
				fs.NotEntered, fs.Subvolumes, fs.SkippedSubvolumes})
		}
		for _, rm := range v.Removed {
			jv.Removed = append(jv.Removed, jsonRm(rm))
		}
		j.Volumes = append(j.Volumes, jv)
	}
	for _, d := range r.Dumps {
		j.Dumps = append(j.Dumps, jsonDump{Name: d.Name, jsonOutcome: d.outcome().json(), Error: jsonErr(d.Err)})
	}
	for _, u := range r.Unselected {
		j.Unselected = append(j.Unselected, jsonUnselected{u.ID, u.LastBackup, u.BackupID, u.Backups})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(j)
}

func known(n int64) *int64 {
	if n < 0 {
		return nil
	}
	return &n
}

func seconds(start, end time.Time) *float64 {
	d, ok := duration(start, end)
	if !ok {
		return nil
	}
	s := d.Seconds()
	return &s
}

func jsonErr(p *Problem) *jsonError {
	if p == nil {
		return nil
	}
	hints := p.Hints
	if hints == nil {
		hints = []string{}
	}
	return &jsonError{Message: p.Message, Hints: hints}
}
