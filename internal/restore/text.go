package restore

import (
	"fmt"
	"io"
	"strings"

	"voltar/internal/units"
)

// WriteText prints a restore result for humans:
//
//	restored nova-volumes/volume-1/2026-11-25T013000Z to /srv/restore
//	  p1 (ext4 re-made, UUID 0f3c...) -> /srv/restore/p1: 120345 files, 3.4 GiB, 9021 dirs, 310 symlinks, 12 hard links, 4 devices, 1 fifos; sha256 verified
//	  p1: refused ../evil: path contains ".."
//	  p1: warning: set xattr security.selinux: operation not supported (./etc and 41 more)
//
// It prints what was done also for a failed restore; the error says why.
func WriteText(w io.Writer, r Result) error {
	var b strings.Builder
	t := r.Totals()
	switch {
	case r.Stopped != "" && t.Entries == 0 && t.Bytes == 0:
		fmt.Fprintf(&b, "nothing restored from %s to %s", r.ID, r.Target)
	case r.Stopped != "":
		fmt.Fprintf(&b, "restore of %s to %s stopped part way", r.ID, r.Target)
	default:
		fmt.Fprintf(&b, "restored %s to %s", r.ID, r.Target)
	}
	if r.Table != "" {
		fmt.Fprintf(&b, " (partition table %s)", r.Table)
	}
	b.WriteString("\n")
	for _, msg := range r.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", msg)
	}
	for _, f := range r.Filesystems {
		fmt.Fprintf(&b, "  %s", f.Name)
		switch {
		case f.Made != nil && f.Made.Raw:
			fmt.Fprintf(&b, " (%s, raw bytes written back", f.Made.What())
		case f.Made != nil:
			fmt.Fprintf(&b, " (%s re-made", f.Made.Type)
		}
		if f.Made != nil {
			if f.Made.UUID != "" {
				fmt.Fprintf(&b, ", UUID %s", f.Made.UUID)
			}
			if f.Made.Label != "" {
				fmt.Fprintf(&b, ", label %q", f.Made.Label)
			}
			b.WriteString(")")
		}
		if f.Dir != "" {
			fmt.Fprintf(&b, " -> %s", f.Dir)
		}
		switch {
		case f.Archive != "" && f.Made != nil && f.Made.Raw:
			fmt.Fprintf(&b, ": %s written", units.Bytes(f.Bytes))
		case f.Archive != "":
			fmt.Fprintf(&b, ": %d files, %s, %d dirs, %d symlinks, %d hard links, %d devices, %d fifos",
				f.Files, units.Bytes(f.Bytes), f.Dirs, f.Symlinks, f.Hardlinks, f.Devices, f.Fifos)
		}
		if f.Archive != "" {
			if f.Verified {
				b.WriteString("; sha256 verified")
			} else {
				b.WriteString("; NOT verified")
			}
		}
		b.WriteString("\n")
		for _, s := range f.Refused {
			fmt.Fprintf(&b, "  %s: refused %s: %s\n", f.Name, s.Name, s.Reason)
		}
		if n := f.RefusedCount - int64(len(f.Refused)); n > 0 {
			fmt.Fprintf(&b, "  %s: %d more refused\n", f.Name, n)
		}
		for _, s := range f.Failed {
			fmt.Fprintf(&b, "  %s: failed %s: %s\n", f.Name, s.Name, s.Reason)
		}
		if n := f.FailedCount - int64(len(f.Failed)); n > 0 {
			fmt.Fprintf(&b, "  %s: %d more failed\n", f.Name, n)
		}
		for _, msg := range f.Warnings {
			fmt.Fprintf(&b, "  %s: warning: %s\n", f.Name, msg)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
