// Package restore brings a backup back: into a directory (ToDir), or as the
// whole volume, partition table and filesystems re-made, into an image file
// (ToImage) or onto a block device (ToDevice).
//
// Every archive is verified while it streams: store.Get -> SHA-256 ->
// [age] -> decompressor -> tar -> files. Because the whole archive cannot be checked
// before its first file is written, a mismatch at the end fails the restore
// with a *PartialError saying how much was already written, and where.
package restore

import (
	"errors"
	"fmt"
	"log/slog"

	"voltar/internal/crypt"
	"voltar/internal/units"
)

// Options tune a restore.
type Options struct {
	// Partition restores only this filesystem ("p1", "fs"); "" restores
	// all. ToDir only.
	Partition string
	// Overwrite lets ToDir write into a non-empty directory: entries of the
	// archive replace files of the same name, directories are merged.
	// Without it the target must be empty (lost+found aside) or missing.
	Overwrite bool
	// Logger gets a warning per refused or failed entry; nil discards.
	Logger *slog.Logger
	// MountDir holds the private directories where ToImage and ToDevice
	// mount the filesystems they re-make; "" is os.TempDir(). The CLI may
	// pass voltar's runtime directory so a crash sweep finds leftovers.
	MountDir string
	// LoopTag tags the loop devices ToImage and ToDevice attach
	// (disk.AttachLoop); "" is "voltar:restore-<pid>", which the backup
	// sweep of a concurrent run does not touch.
	LoopTag string
	// Identities decrypt encrypted (*.age) archives. Without them the
	// restore of an encrypted backup is refused before anything is
	// written (a usage error); with keys that do not fit, too.
	Identities *crypt.Identities
	// Progress, when set, is called as each filesystem's file archive
	// starts restoring, with its name ("p1", "fs") and the bytes of file
	// data it holds; the Tracker it returns is told how far the restore
	// got (the CLI draws a bar on a terminal).
	Progress func(name string, total int64) Tracker
	// Format is the image format ToImage writes: "" or FormatRaw, or
	// FormatQcow2 (through qemu-img and qemu-storage-daemon).
	Format string
	// ExportScope marks the storage daemon a qcow2 restore runs (its
	// export id), so the sweep of this installation finds it after a crash.
	ExportScope string
}

// Tracker follows the restore of one filesystem.
type Tracker interface {
	// Update reports the file bytes and files restored so far.
	Update(bytes, files int64)
	// Done ends it: ok when the archive was restored and verified.
	Done(ok bool)
}

type noTracker struct{}

func (noTracker) Update(int64, int64) {}
func (noTracker) Done(bool)           {}

func (o Options) track(name string, total int64) Tracker {
	if o.Progress == nil {
		return noTracker{}
	}
	return o.Progress(name, total)
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Skipped is an archive entry that was not restored, and why.
type Skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// FSResult is what was restored of one filesystem's archive.
type FSResult struct {
	Name    string `json:"name"`    // p1, fs, ...
	Archive string `json:"archive"` // p1.tar.zst
	Dir     string `json:"dir"`     // where its tree was written
	Entries int64  `json:"entries"`
	Files   int64  `json:"files"`
	Bytes   int64  `json:"bytes"` // regular-file bytes (holes included)
	Dirs    int64  `json:"dirs"`
	// Symlinks, Hardlinks, Devices and Fifos count the other entry types.
	Symlinks  int64 `json:"symlinks"`
	Hardlinks int64 `json:"hardlinks"`
	Devices   int64 `json:"devices"`
	Fifos     int64 `json:"fifos"`
	// SHA256 of the stored archive as read; Verified is true when it
	// matched SHA256SUMS and the manifest.
	SHA256   string `json:"sha256"`
	Verified bool   `json:"verified"`
	// Refused entries would have escaped the target or written through a
	// symlink; Failed ones could not be created. Both list at most 1000
	// names; the counts are exact.
	Refused      []Skipped `json:"refused"`
	RefusedCount int64     `json:"refused_count"`
	Failed       []Skipped `json:"failed"`
	FailedCount  int64     `json:"failed_count"`
	// Warnings are metadata that could not be set, aggregated:
	// "set xattr security.selinux: operation not supported (./etc and 41 more)".
	Warnings []string `json:"warnings"`
	// Made is set by ToImage/ToDevice: the filesystem was re-created.
	Made *Made `json:"made,omitempty"`
}

// Made describes a filesystem re-created by ToImage or ToDevice.
type Made struct {
	Type   string `json:"type"`
	UUID   string `json:"uuid"`
	Label  string `json:"label"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	// Raw: the partition's stored bytes were written back, no mkfs.
	Raw bool `json:"raw,omitempty"`
}

// What names the content for people: its type, or "unknown content".
func (m *Made) What() string {
	if m.Type == "" {
		return "unknown content"
	}
	return m.Type
}

// Result is what a restore did. It is filled as far as the restore got,
// also when it returns an error.
type Result struct {
	ID          string     `json:"id"`
	Target      string     `json:"target"`
	Table       string     `json:"partition_table,omitempty"` // ToImage/ToDevice: what was written
	Filesystems []FSResult `json:"filesystems"`
	Warnings    []string   `json:"warnings"` // about the backup as a whole
	// Stopped is why the restore stopped before its end; "" when it
	// finished (entries refused or failed on the way included).
	Stopped string `json:"stopped,omitempty"`
}

// stopped records in r why a restore ended with err, if it stopped.
func (r *Result) stopped(err error) {
	if err != nil && !errors.Is(err, ErrSkippedEntries) {
		r.Stopped = err.Error()
	}
}

// Totals sums the counts of every filesystem.
func (r *Result) Totals() FSResult {
	var t FSResult
	for _, f := range r.Filesystems {
		t.Entries += f.Entries
		t.Files += f.Files
		t.Bytes += f.Bytes
		t.Dirs += f.Dirs
		t.Symlinks += f.Symlinks
		t.Hardlinks += f.Hardlinks
		t.Devices += f.Devices
		t.Fifos += f.Fifos
		t.RefusedCount += f.RefusedCount
		t.FailedCount += f.FailedCount
	}
	return t
}

// ErrChecksum is matched (errors.Is) when an archive's SHA-256 is not the
// recorded one.
var ErrChecksum = errors.New("checksum mismatch")

// ErrSkippedEntries is matched when a restore finished but refused or
// failed some entries (listed in the Result); the CLI exits 1.
var ErrSkippedEntries = errors.New("entries not restored")

// PartialError is a restore that failed after writing: the archive turned
// out corrupt (ErrChecksum) or unreadable, or the target failed. What was
// written must not be trusted.
type PartialError struct {
	Archive string // p1.tar.zst
	Dir     string // where its files were written
	Files   int64
	Bytes   int64
	Err     error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%s: %v; %d files (%s) already written under %s must not be trusted",
		e.Archive, e.Err, e.Files, units.Bytes(e.Bytes), e.Dir)
}

func (e *PartialError) Unwrap() error { return e.Err }

// Leftover implements fail.Leftover: an interrupted restore names what it
// left half done.
func (e *PartialError) Leftover() string {
	return fmt.Sprintf("restore stopped in %s: %d files (%s) already written under %s must not be trusted; restore again (--force) or remove them",
		e.Archive, e.Files, units.Bytes(e.Bytes), e.Dir)
}
