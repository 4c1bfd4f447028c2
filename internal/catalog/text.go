package catalog

import (
	"fmt"
	"io"
	"path"
	"strings"
	"text/tabwriter"

	"voltar/internal/manifest"
	"voltar/internal/units"
)

// WriteText prints the catalog for humans: one line per backup, then the
// damaged folders (manifest.json there but unusable) and the incomplete
// ones, neither of which are backups.
//
//	ID                                         TIME                  STATUS    LEVEL   FILESYSTEMS     STORED   SOURCE   FILES   CHAIN
//	nova-volumes/volume-1/2026-11-22T013000Z  2026-11-22 01:30 UTC  complete  full    p1:ext4 p2:xfs  1.2 GiB  3.4 GiB  120345  -
//	nova-volumes/volume-1/2026-11-23T013000Z  2026-11-23 01:30 UTC  complete  incr 1  p1:ext4 p2:xfs  20 MiB   3.4 GiB  311     on full 2026-11-22T013000Z
//	nova-volumes/volume-1/2026-11-24T013000Z  2026-11-24 01:30 UTC  complete  incr 2  p1:ext4 p2:xfs  18 MiB   3.4 GiB  290     on 2026-11-23T013000Z (full 2026-11-22T013000Z)
//
// An encrypted backup's status reads "complete (age)". CHAIN is what an
// increment builds on, and BROKEN with the reason when that chain cannot
// be restored (ChainBroken).
func (c *Catalog) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	hosts := map[string]bool{}
	for _, b := range c.Backups {
		hosts[b.Host] = true
	}
	for _, b := range c.Incomplete {
		hosts[b.Host] = true
	}
	withHost := len(hosts) > 1
	id := func(host, id string) string {
		if withHost {
			return host + "/" + id
		}
		return id
	}
	if len(c.Backups) == 0 {
		fmt.Fprintf(tw, "no backups in %s\n", c.Store)
	} else {
		fmt.Fprintln(tw, "ID\tTIME\tSTATUS\tLEVEL\tFILESYSTEMS\tSTORED\tSOURCE\tFILES\tCHAIN")
		for _, b := range c.Backups {
			m := b.Manifest
			status := m.Status
			if m.Encryption != nil {
				status += " (age)" // restoring it needs the identity
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", id(b.Host, b.ID), b.Time.Format("2006-01-02 15:04 MST"),
				status, level(&b), Filesystems(m), units.Bytes(m.StoredBytes()), units.Bytes(m.DataBytes()), m.Files(), chain(&b))
		}
	}
	for _, damaged := range []bool{true, false} {
		head := "\nINCOMPLETE (not backups)\tTIME\tOBJECTS\tBYTES\tWHY"
		if damaged {
			head = "\nDAMAGED (manifest.json unusable; not backups, kept by prune)\tTIME\tOBJECTS\tBYTES\tWHY"
		}
		first := true
		for _, f := range c.Incomplete {
			if f.Damaged != damaged {
				continue
			}
			if first {
				fmt.Fprintln(tw, head)
				first = false
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", id(f.Host, f.ID), f.Time.Format("2006-01-02 15:04 MST"),
				len(f.Objects), units.Bytes(f.Bytes), f.Reason)
		}
	}
	return tw.Flush()
}

// level is "full" for a full backup and "incr N" for an increment N steps
// from its full.
func level(b *Backup) string {
	if b.Parent == "" {
		return "full"
	}
	return fmt.Sprintf("incr %d", b.Level)
}

// chain says what an increment builds on, by timestamp (the parent is of
// the same volume): "on full T" for the first, "on T (full F)" after it,
// with ", BROKEN: why" when the chain cannot be restored.
func chain(b *Backup) string {
	if b.Parent == "" {
		return "-"
	}
	s := "on full " + path.Base(b.Parent)
	if b.Full != b.Parent {
		s = "on " + path.Base(b.Parent) + " (full " + path.Base(b.Full) + ")"
	}
	if b.ChainBroken != "" {
		s += ", BROKEN: " + b.ChainBroken
	}
	return s
}

// Filesystems summarises a manifest's filesystems: "p1:ext4 p2:unknown(raw) p3:swap(skipped)".
func Filesystems(m *manifest.Manifest) string {
	var s []string
	for _, f := range m.Filesystems {
		typ := f.Type
		if typ == "" {
			typ = "unknown" // one word: the list is space-separated
		}
		switch f.Mode {
		case manifest.ModeFiles:
			s = append(s, f.Name+":"+typ)
		case manifest.ModeRaw:
			s = append(s, f.Name+":"+typ+"(raw)")
		default:
			s = append(s, f.Name+":"+typ+"("+f.Mode+")")
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, " ")
}
