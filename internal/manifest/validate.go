package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ChecksumName is the object beside manifest.json holding its SHA-256 in
// sha256sum format ("<hex>  manifest.json"). It is written before the
// manifest, so every complete backup of this voltar has it. It catches
// accidental damage (bit rot, a truncated upload), not an attacker who can
// write to the store: such a one rewrites both.
const ChecksumName = FileName + ".sha256"

// ChecksumFile is the content of manifest.json.sha256 for the manifest's
// encoded bytes: "<hex>  manifest.json\n", as sha256sum prints it, so
// `sha256sum -c manifest.json.sha256` checks it by hand.
func ChecksumFile(encoded []byte) []byte {
	sum := sha256.Sum256(encoded)
	return []byte(hex.EncodeToString(sum[:]) + "  " + FileName + "\n")
}

// ModeDump is the mode of a database dump's one object (see internal/dump).
const ModeDump = "dump"

// Object names that are not archives: a dump's object before its suffixes.
const dumpBase = "dump.sql"

// Compression suffixes an archive name may carry, and encryption's.
var (
	compressionExts = []string{".zst", ".gz", ""}
	encryptionExt   = ".age"
)

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
		if err := ValidHost(m.Host); err != nil {
			bad("%v", err)
		}
	}
	if m.ID != "" {
		if err := validID(m.ID); err != nil {
			bad("id %q: %v", m.ID, err)
		}
	}
	if m.Encryption != nil && m.Encryption.Method != "age" {
		bad("encryption method %q: want age", m.Encryption.Method)
	}
	dump := m.Volume.Kind == "dump"
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
	}
	if err := validTable(m.Table); err != nil {
		bad("partition_table: %v", err)
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
		if fs.Name != "dump" || fs.Mode != ModeDump {
			return errors.New(`a dump's object is named "dump" with mode dump`)
		}
		return nil
	case fs.Name == "fs":
		if m.Table.Type != "none" || fs.Partition != 0 {
			return errors.New(`"fs" (a whole-disk filesystem) needs partition table type none and no partition number`)
		}
	case strings.HasPrefix(fs.Name, "p"):
		n, err := partitionNumber(fs.Name[1:])
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

// partitionNumber parses N of p<N>: a positive decimal, no leading zeros.
func partitionNumber(s string) (int, error) {
	if s == "" || s[0] < '1' || s[0] > '9' || len(s) > 9 {
		return 0, fmt.Errorf("%q is not a positive number without leading zeros", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a positive number without leading zeros", s)
		}
	}
	return strconv.Atoi(s)
}

// validArchive checks that an archive's name is what the writer makes of
// its filesystem's name and mode: <name>.tar[.zst|.gz], <name>.raw[...],
// dump.sql[...], plus .age exactly when the manifest records encryption.
func (m *Manifest) validArchive(fs Filesystem, dump bool) error {
	var base string
	switch {
	case fs.Archive == "" && !dump:
		return nil // nothing stored (skipped), so nothing is read
	case dump:
		base = dumpBase
	case fs.Mode == ModeFiles:
		base = fs.Name + ".tar"
	case fs.Mode == ModeRaw:
		base = fs.Name + ".raw"
	default:
		return fmt.Errorf("mode %s stores no archive", fs.Mode)
	}
	enc := ""
	if m.Encryption != nil {
		enc = encryptionExt
	}
	for _, ext := range compressionExts {
		if fs.Archive == base+ext+enc {
			return nil
		}
	}
	want := base + "[.zst|.gz]" + enc
	return fmt.Errorf("want %s", want)
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

// validID checks <group>/<volume>/<timestamp>: three path segments, none
// empty or a dot, and a timestamp in TimeFormat.
func validID(id string) error {
	parts := strings.Split(id, "/")
	if len(parts) != 3 {
		return errors.New("want <group>/<volume>/<timestamp>")
	}
	for _, s := range parts {
		if s == "" || s == "." || s == ".." || hasControl(s) || strings.ContainsRune(s, '\\') {
			return fmt.Errorf("segment %q is not a plain name", s)
		}
	}
	if _, err := time.Parse(TimeFormat, parts[2]); err != nil {
		return fmt.Errorf("timestamp %q: want UTC like %s", parts[2], TimeFormat)
	}
	return nil
}

// ValidHost checks a host name as it names the top folder of the store:
// one path segment of letters, digits, '.', '_' and '-', not "." or "..".
// The config, the command line and manifests are all held to it.
func ValidHost(h string) error {
	switch h {
	case "":
		return errors.New("host is empty")
	case ".", "..":
		return fmt.Errorf("host %q: not a name", h)
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("host %q: only letters, digits, '.', '_' and '-' may name the host's folder in the store", h)
		}
	}
	return nil
}
