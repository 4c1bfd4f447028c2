package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"voltar/internal/layout"
)

// ChecksumFile is the content of manifest.json.sha256 (layout.ManifestSum)
// for the manifest's encoded bytes: "<hex>  manifest.json\n", as sha256sum
// prints it, so `sha256sum -c manifest.json.sha256` checks it by hand. It
// catches accidental damage (bit rot, a truncated upload), not an attacker
// who can write to the store: such a one rewrites both.
func ChecksumFile(encoded []byte) []byte {
	sum := sha256.Sum256(encoded)
	return []byte(hex.EncodeToString(sum[:]) + "  " + layout.Manifest + "\n")
}

// ModeDump is the mode of a database dump's one object (see internal/dump).
const ModeDump = "dump"

// InvalidError is a manifest that decodes but breaks the layout's grammar:
// a name that is not p<N> or fs, an archive name voltar would not write, a
// duplicate. Nothing in such a manifest may be used: its names would decide
// where a restore writes and which objects are read.
type InvalidError struct {
	Problems []string
}

func (e *InvalidError) Error() string {
	return "invalid manifest: " + strings.Join(e.Problems, "; ")
}

// Validate checks every field that becomes a path or an object name
// against the store layout: host and id are safe path segments, each
// filesystem is named p<N> (N its partition number) or fs (whole disk, no
// partition table), its archive is exactly the name voltar writes for that
// name, mode and encryption, and no name occurs twice. Decode calls it, so
// no reader of a store sees a manifest that fails it.
func (m *Manifest) Validate() error {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if m.Host != "" {
		if err := layout.ValidHost(m.Host); err != nil {
			bad("%v", err)
		}
	}
	if m.ID != "" {
		if err := layout.CheckID(m.ID); err != nil {
			bad("id %q: %v", m.ID, err)
		}
	}
	if m.Encryption != nil && m.Encryption.Method != "age" {
		bad("encryption method %q: want age", m.Encryption.Method)
	}
	dump := m.Volume.Kind == layout.Dump
	names := map[string]bool{}
	archives := map[string]bool{}
	for i, fs := range m.Filesystems {
		where := fmt.Sprintf("filesystems[%d] %q", i, fs.Name)
		if err := m.validName(fs, dump); err != nil {
			bad("%s: %v", where, err)
			continue // its archive name cannot be checked against it
		}
		if names[fs.Name] {
			bad("%s: name used twice", where)
		}
		names[fs.Name] = true
		// A re-made filesystem gets its UUID on mkfs's command line, inside
		// an option value for some (mkfs.xfs -m uuid=...).
		if strings.Trim(fs.UUID, "0123456789abcdefABCDEF-") != "" && (fs.Mode == ModeFiles || fs.Mode == ModeSkipped) {
			bad("%s: uuid %q: want hex digits and '-'", where, fs.UUID)
		}
		if err := m.validArchive(fs, dump); err != nil {
			bad("%s: archive %q: %v", where, fs.Archive, err)
		} else if fs.Archive != "" {
			if archives[fs.Archive] {
				bad("%s: archive %q named twice", where, fs.Archive)
			}
			archives[fs.Archive] = true
		}
		if fs.Incremental && (m.Chain == nil || fs.Mode != ModeFiles || fs.Index == nil) {
			bad("%s: incremental: only a files-mode filesystem with an index, in a backup with a chain", where)
		}
		if fs.Index != nil {
			want := layout.Object{FS: fs.Name, Kind: layout.Index, Encrypted: m.Encryption != nil}
			got, err := layout.ParseObject(fs.Index.Name)
			if fs.Mode != ModeFiles || err != nil || got.FS != want.FS || got.Kind != want.Kind || got.Encrypted != want.Encrypted {
				bad("%s: index %q: want %s of a files-mode filesystem", where, fs.Index.Name, want.Pattern())
			}
		}
	}
	if m.Chain != nil {
		if err := m.validChain(); err != nil {
			bad("chain: %v", err)
		}
	}
	if err := validTable(m.Table); err != nil {
		bad("partition_table: %v", err)
	}
	if m.Outside != nil {
		if err := m.validOutside(); err != nil {
			bad("outside: %v", err)
		}
	}
	if len(p) > 0 {
		return &InvalidError{Problems: p}
	}
	return nil
}

// validName checks a filesystem's name and its consistency with the
// partition number and table type.
func (m *Manifest) validName(fs Filesystem, dump bool) error {
	switch {
	case dump:
		if fs.Name != layout.Dump || fs.Mode != ModeDump {
			return errors.New(`a dump's object is named "dump" with mode dump`)
		}
		return nil
	case fs.Name == layout.WholeDisk:
		if m.Table.Type != "none" || fs.Partition != 0 {
			return errors.New(`"fs" (a whole-disk filesystem) needs partition table type none and no partition number`)
		}
	case strings.HasPrefix(fs.Name, layout.PartitionPrefix):
		n, err := layout.PartitionNumber(fs.Name)
		if err != nil {
			return fmt.Errorf("want p<N> or fs: %v", err)
		}
		if n != fs.Partition {
			return fmt.Errorf("names partition %d, but records partition %d", n, fs.Partition)
		}
		if m.Table.Type == "none" {
			return errors.New("a partition's filesystem on a volume without a partition table")
		}
	default:
		return errors.New("want p<N> (a partition) or fs (a whole-disk filesystem)")
	}
	switch fs.Mode {
	case ModeFiles, ModeRaw, ModeSkipped:
		return nil
	}
	return fmt.Errorf("mode %q: want files, raw or skipped", fs.Mode)
}

// validArchive checks that an archive's name is what the writer makes of
// its filesystem's name and mode: <name>.tar[.zst|.gz], <name>.raw[...],
// dump.sql[...], plus .age exactly when the manifest records encryption.
func (m *Manifest) validArchive(fs Filesystem, dump bool) error {
	want := layout.Object{FS: fs.Name, Encrypted: m.Encryption != nil}
	switch {
	case fs.Archive == "" && !dump:
		return nil // nothing stored (skipped), so nothing is read
	case dump:
		want.FS, want.Kind = layout.Dump, layout.SQL
	case fs.Mode == ModeFiles:
		want.Kind = layout.Tar
	case fs.Mode == ModeRaw:
		want.Kind = layout.Raw
	default:
		return fmt.Errorf("mode %s stores no archive", fs.Mode)
	}
	got, err := layout.ParseObject(fs.Archive)
	if err != nil || got.FS != want.FS || got.Kind != want.Kind || got.Encrypted != want.Encrypted {
		return fmt.Errorf("want %s", want.Pattern())
	}
	return nil
}

// validOutside checks the outside object's name and that its runs are
// ordered, disjoint, inside the volume and add up to its source bytes: a
// restore writes each run where it says.
func (m *Manifest) validOutside() error {
	o := m.Outside
	want := layout.Object{FS: layout.Outside, Kind: layout.Runs, Encrypted: m.Encryption != nil}
	got, err := layout.ParseObject(o.Archive)
	if err != nil || got.FS != want.FS || got.Kind != want.Kind || got.Encrypted != want.Encrypted {
		return fmt.Errorf("archive %q: want %s", o.Archive, want.Pattern())
	}
	if m.Volume.Kind == layout.Dump {
		return errors.New("a dump has no volume")
	}
	if len(o.Runs) == 0 {
		return errors.New("no runs: a volume without such bytes has no outside object")
	}
	var sum, end int64
	for i, r := range o.Runs {
		switch {
		case r.Offset < end || r.Length <= 0:
			return fmt.Errorf("run %d (%d+%d): runs must be non-empty, in order and disjoint", i, r.Offset, r.Length)
		case m.Volume.Size > 0 && r.Length > m.Volume.Size-r.Offset:
			return fmt.Errorf("run %d (%d+%d) ends past the volume's %d bytes", i, r.Offset, r.Length, m.Volume.Size)
		}
		end = r.Offset + r.Length
		sum += r.Length
	}
	if sum != o.SourceBytes {
		return fmt.Errorf("runs hold %d bytes, source_bytes says %d", sum, o.SourceBytes)
	}
	return nil
}

// validTable refuses control characters in what goes into an sfdisk
// script line (one field could otherwise add lines of its own) and
// partition numbers that are not positive or repeat.
func validTable(t Table) error {
	var errs []error
	switch t.Type {
	case "", "none", "mbr", "gpt":
	default:
		errs = append(errs, fmt.Errorf("type %q: want none, mbr or gpt", t.Type))
	}
	if hasControl(t.DiskID) {
		errs = append(errs, fmt.Errorf("disk_id %q holds control characters", t.DiskID))
	}
	seen := map[int]bool{}
	for _, p := range t.Partitions {
		if p.Number < 1 || seen[p.Number] {
			errs = append(errs, fmt.Errorf("partition number %d: not positive, or listed twice", p.Number))
		}
		seen[p.Number] = true
		for _, s := range []string{p.Type, p.UUID, p.Name} {
			if hasControl(s) {
				errs = append(errs, fmt.Errorf("partition %d: %q holds control characters", p.Number, s))
			}
		}
	}
	for _, p := range t.Extended {
		if p.Number < 1 || p.Number > 4 || seen[p.Number] || !strings.HasPrefix(p.Type, "0x") || len(p.Type) != 4 || hasControl(p.Type) {
			errs = append(errs, fmt.Errorf("extended partition %d (type %q): want a primary slot 1-4 of its own and an MBR type", p.Number, p.Type))
		}
		seen[p.Number] = true
	}
	return errors.Join(errs...)
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0
}

// validChain checks that the parent and the full are earlier backups of
// the same volume, named by the layout's grammar.
func (m *Manifest) validChain() error {
	c := m.Chain
	if c.Level < 1 {
		return fmt.Errorf("level %d: want 1 or more", c.Level)
	}
	if len(c.ParentManifestSHA256) != 64 || strings.Trim(c.ParentManifestSHA256, "0123456789abcdef") != "" {
		return fmt.Errorf("parent_manifest_sha256 %q: want 64 lowercase hex digits", c.ParentManifestSHA256)
	}
	for _, f := range []struct{ key, id string }{{"parent", c.Parent}, {"full", c.Full}} {
		if err := layout.CheckID(f.id); err != nil {
			return fmt.Errorf("%s %q: %v", f.key, f.id, err)
		}
		if m.ID == "" {
			continue
		}
		if path.Dir(f.id) != path.Dir(m.ID) || f.id >= m.ID {
			return fmt.Errorf("%s %q: not an earlier backup of %s", f.key, f.id, path.Dir(m.ID))
		}
	}
	if c.Level == 1 && c.Full != c.Parent {
		return fmt.Errorf("level 1: full %q is not the parent %q", c.Full, c.Parent)
	}
	return nil
}
