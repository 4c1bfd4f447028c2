package report

import (
	"bufio"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"voltar/internal/units"
)

// Text writes the report a person reads, in a mail or on a terminal: plain
// text, at most about 80 columns apart from long IDs, aligned for a
// fixed-width font and still readable without one.
func Text(w io.Writer, r *Run) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	p("%s\n\n", strings.TrimPrefix(Subject(r), "[voltar] "))
	p("  Host          %s\n", r.Host)
	p("  Started       %s\n", stamp(r.Started))
	p("  Finished      %s\n", stamp(r.Finished))
	p("  Total time    %s\n", durationText(r.Started, r.Finished))
	p("  Store         %s\n", redact(r.Store))
	p("  Retention     %s\n", orDash(r.Retention))
	if r.Version != "" {
		p("  voltar        %s\n", r.Version)
	}

	if len(r.Errors) > 0 {
		p("\nRun errors\n")
		for _, e := range r.Errors {
			problem(bw, "  ", e)
		}
	}

	if len(r.Volumes) > 0 {
		p("\nVolumes\n")
		t := table{right: []bool{false, false, true, true, true, true, true}}
		t.add("STATUS", "VOLUME", "DURATION", "STORED", "SOURCE", "FILES", "PEAK COW")
		for _, v := range r.Volumes {
			done := stored(v.Status) || v.Status == StatusPartial
			size, source, files, cow := "-", "-", "-", "-"
			if done {
				size = bytesCell(v.StoredBytes)
				source = bytesCell(v.SourceBytes)
				files = countCell(v.Files)
			}
			if v.PeakCOWPct >= 0 && v.Status != StatusSkipped {
				cow = strconv.FormatFloat(v.PeakCOWPct, 'f', 1, 64) + "%"
			}
			t.add(statusText(v.Status), v.ID, durationCell(v.Started, v.Finished), size, source, files, cow)
		}
		t.write(bw, "  ")
		for _, v := range r.Volumes {
			volumeDetails(bw, v)
		}
	}

	if len(r.Dumps) > 0 {
		p("\nDatabase dumps\n")
		t := table{right: []bool{false, false, true, true, false}}
		t.add("STATUS", "DUMP", "DURATION", "STORED", "BACKUP")
		for _, d := range r.Dumps {
			size := "-"
			if stored(d.Status) {
				size = bytesCell(d.StoredBytes)
			}
			t.add(statusText(d.Status), d.Name, durationCell(d.Started, d.Finished), size, orDash(d.BackupID))
		}
		t.write(bw, "  ")
		for _, d := range r.Dumps {
			if d.Err != nil {
				p("\n%s  %s\n", d.Name, statusText(d.Status))
				problem(bw, "  ", *d.Err)
			}
		}
	}

	unselected(bw, r.Unselected)

	ok, nfailed, total := r.Counts()
	vpf, dpf := r.PruneFailed()
	p("\nTotals\n")
	p("  Volumes       %d ok, %d failed%s", ok, nfailed, pruneNote(vpf))
	if skipped := total - ok - nfailed; skipped > 0 {
		p(", %d skipped", skipped)
	}
	p(" of %d\n", total)
	if ok, nfailed, total := r.DumpCounts(); total > 0 {
		p("  Dumps         %d ok, %d failed%s of %d\n", ok, nfailed, pruneNote(dpf), total)
	}
	p("  Written       %s this run\n", units.Bytes(r.WrittenBytes()))
	p("  Store total   %s", units.Bytes(r.StoreTotalBytes))
	if r.StoreTotalBytes >= 0 {
		p(" (all backups of %s)", r.Host)
	}
	p("\n")
	if pct, ok := usedPercent(r.DestUsedBytes, r.DestAvailBytes); ok {
		p("  Destination   %.1f%% used (%s of %s)\n", pct, units.Bytes(r.DestUsedBytes), units.Bytes(r.DestTotalBytes))
	} else {
		p("  Destination   unknown\n")
	}
	p("  Total time    %s\n", durationText(r.Started, r.Finished))
	return bw.Flush()
}

// volumeDetails writes what the table has no room for: the backup, what
// retention removed, errors, and filesystems not archived as files.
func volumeDetails(w io.Writer, v Volume) {
	var special []FS
	for _, fs := range v.Filesystems {
		if fs.Mode != ModeFiles || fs.NotEntered > 0 || fs.SkippedSubvolumes > 0 {
			special = append(special, fs)
		}
	}
	if v.BackupID == "" && len(v.Removed) == 0 && v.Err == nil && len(special) == 0 && len(v.Warnings) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s  %s\n", v.ID, statusText(v.Status))
	if v.BackupID != "" {
		fmt.Fprintf(w, "  backup    %s\n", v.BackupID)
	}
	if v.Level > 0 {
		fmt.Fprintf(w, "  level     incremental %d, on %s\n", v.Level, v.Parent)
	}
	if v.Consistency != "" {
		what := consistencyText(v.Consistency)
		if v.Snapshot == "external" {
			what += "; taken as an external snapshot through libvirt (the image could not be cloned), its overlay committed back"
		}
		fmt.Fprintf(w, "  snapshot  %s\n", continued(what, "            "))
	}
	if v.Domain != "" {
		fmt.Fprintf(w, "  domain    %s (taken together)\n", v.Domain)
	}
	for _, fs := range special {
		what := fs.Name
		if fs.Type != "" {
			what += " (" + fs.Type + ")"
		}
		mode := fs.Mode
		if fs.Mode == ModeRaw {
			mode = "raw copy"
			what += ", " + units.Bytes(fs.StoredBytes)
		}
		if fs.Reason != "" {
			what += ": " + fs.Reason
		}
		if fs.Mode == ModeFiles {
			var notes []string
			if fs.Subvolumes > 0 {
				notes = append(notes, fmt.Sprintf("%d subvolumes, %d skipped (read-only snapshots)", fs.Subvolumes, fs.SkippedSubvolumes))
			}
			if fs.NotEntered > 0 {
				notes = append(notes, fmt.Sprintf("%d %s not entered (listed in the manifest)", fs.NotEntered, plural(fs.NotEntered, "path", "paths")))
			}
			what += ": " + strings.Join(notes, "; ")
		}
		fmt.Fprintf(w, "  %-9s %s\n", mode, continued(what, "            "))
	}
	for _, msg := range v.Warnings {
		fmt.Fprintf(w, "  %-9s %s\n", "warning", continued(msg, "            "))
	}
	for _, rm := range v.Removed {
		fmt.Fprintf(w, "  removed   %s", rm.ID)
		if rm.Reason != "" {
			fmt.Fprintf(w, "  (%s)", continued(rm.Reason, "            "))
		}
		fmt.Fprintln(w)
	}
	if v.Err != nil {
		problem(w, "  ", *v.Err)
	}
}

// unselected lists the volumes that have backups but were not selected:
// not failures, but the one place a backup that stopped shows up.
func unselected(w io.Writer, us []Unselected) {
	if len(us) == 0 {
		return
	}
	fmt.Fprintf(w, "\nNot selected any more (backups in the store, none this run)\n")
	t := table{right: []bool{false, false, true}}
	t.add("VOLUME", "LAST BACKUP", "BACKUPS")
	for _, u := range us {
		t.add(u.ID, stamp(u.LastBackup), strconv.Itoa(u.Backups))
	}
	t.write(w, "  ")
	fmt.Fprintf(w, "  hint:     a volume still in use: select it again (lvm.volume_groups, lvm.include,\n")
	fmt.Fprintf(w, "            lvm.exclude, images:); one retired on purpose: remove its backups\n")
	fmt.Fprintf(w, "            once they are no longer needed, and it leaves this list\n")
}

// problem writes an error and its hints, continuation lines indented.
func problem(w io.Writer, indent string, p Problem) {
	more := indent + "          "
	fmt.Fprintf(w, "%serror     %s\n", indent, continued(p.Message, more))
	for _, h := range p.Hints {
		fmt.Fprintf(w, "%shint:     %s\n", indent, continued(h, more))
	}
}

// continued indents the lines after the first of a multi-line s.
func continued(s, indent string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+indent)
}

// pruneNote says how many of the failed rows are stored backups whose
// prune failed.
func pruneNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d stored, prune failed)", n)
}

func statusText(s string) string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusPruneFailed:
		return "PRUNE FAILED"
	case "":
		return "UNKNOWN"
	}
	return strings.ToUpper(s)
}

// stamp writes t in its own zone (the host's) and, when that is not UTC,
// in UTC too. A host whose zone is UTC has time.Local, not time.UTC, in its
// times: the offset, not the location, says whether both read the same.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	const layout = "2006-01-02 15:04:05 MST"
	if _, offset := t.Zone(); offset == 0 {
		return t.Format(layout)
	}
	return t.Format(layout) + "  (" + t.UTC().Format(layout) + ")"
}

func durationText(start, end time.Time) string {
	if d, ok := duration(start, end); ok {
		return units.Duration(d)
	}
	return "unknown"
}

func durationCell(start, end time.Time) string {
	if d, ok := duration(start, end); ok {
		return units.Duration(d)
	}
	return "-"
}

func bytesCell(n int64) string {
	if n < 0 {
		return "?"
	}
	return units.Bytes(n)
}

// countCell writes n with thousands separators: 1,234,567.
func countCell(n int64) string {
	if n < 0 {
		return "?"
	}
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// redact hides a password in a store URL; stores should carry none, but a
// report goes out by mail.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

// table aligns columns; right marks right-aligned ones.
type table struct {
	rows  [][]string
	right []bool
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer, indent string) {
	var width []int
	for _, row := range t.rows {
		for i, c := range row {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range t.rows {
		var b strings.Builder
		b.WriteString(indent)
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < len(t.right) && t.right[i] {
				b.WriteString(pad + c)
			} else if i < len(row)-1 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// consistencyText says what a backup's snapshot holds.
func consistencyText(c string) string {
	switch c {
	case "hooked":
		return "hooked: taken between the pre_snapshot and post_snapshot hooks"
	case "crash":
		return "crash-consistent: the volume was in use, nothing quiesced it"
	case "offline":
		return "offline: the image was not in use"
	case "frozen":
		return "frozen: the guest's filesystems were frozen (qemu-guest-agent) while it was taken"
	}
	return c
}
