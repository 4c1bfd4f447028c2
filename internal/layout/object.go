package layout

import (
	"fmt"
	"strconv"
	"strings"

	"voltar/internal/codec"
)

// Filesystem names: what an object is of. A partition's filesystem is
// p<N> (N its number in the table), a filesystem on the whole volume (no
// partition table) is fs, a database dump is dump.
const (
	WholeDisk = "fs"
	Dump      = "dump"
	// Outside names what no filesystem of a volume holds: boot code, the
	// gaps around and between partitions (see Runs).
	Outside = "outside"
)

// PartitionPrefix starts the name of a partition's filesystem.
const PartitionPrefix = "p"

// Partition names partition n's filesystem: p1, p2, ...
func Partition(n int) string { return PartitionPrefix + strconv.Itoa(n) }

// PartitionNumber parses N of a name p<N>: a positive decimal without
// leading zeros. Any other name is an error.
func PartitionNumber(name string) (int, error) {
	s, ok := strings.CutPrefix(name, PartitionPrefix)
	if !ok {
		return 0, fmt.Errorf("%q is not p<N>", name)
	}
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

// Kind is what an object's bytes are, once decompressed and decrypted.
type Kind string

// The kinds of stored objects.
const (
	Tar Kind = "tar" // a PAX tar stream of a filesystem's files
	Raw Kind = "raw" // a partition's bytes
	SQL Kind = "sql" // a database dump's output
	// Runs are byte runs of a volume, concatenated; the manifest maps
	// each to its offset. Only of Outside: outside.runs.zst.
	Runs Kind = "runs"
	// Index is a filesystem archive's file index (internal/index): JSON
	// lines, p1.index.zst beside p1.tar.zst.
	Index Kind = "index"
)

// AgeExt is the suffix of an age-encrypted object, after the compression's.
const AgeExt = ".age"

// Ext is the name suffix of a compression: ".zst", ".gz", "" for none.
func Ext(compression string) string {
	switch compression {
	case codec.Zstd:
		return ".zst"
	case codec.Gzip:
		return ".gz"
	}
	return ""
}

// compressions in the order ParseObject tries their suffixes; none
// (no suffix) last.
var compressions = []string{codec.Zstd, codec.Gzip, codec.None}

// Object is a stored object's name in its parts:
// <FS>.<Kind>[.zst|.gz][.age].
type Object struct {
	FS          string // p<N>, fs, dump or outside
	Kind        Kind
	Compression string // codec.Zstd, codec.Gzip or codec.None; "" is zstd
	Encrypted   bool
}

// Name is the object's name in its folder: p1.tar.zst, p2.raw.zst.age,
// fs.tar.gz, dump.sql.zst.
func (o Object) Name() string {
	c := o.Compression
	if c == "" {
		c = codec.Zstd
	}
	n := o.FS + "." + string(o.Kind) + Ext(c)
	if o.Encrypted {
		n += AgeExt
	}
	return n
}

// Pattern describes the names an object of o's filesystem, kind and
// encryption may have, whatever its compression: p1.tar[.zst|.gz].age.
func (o Object) Pattern() string {
	p := o.FS + "." + string(o.Kind) + "[.zst|.gz]"
	if o.Encrypted {
		p += AgeExt
	}
	return p
}

// ParseObject splits an object's name into its parts and checks them
// against the grammar: a tar or raw object is of p<N> or fs, an sql
// object of dump, a runs object of outside. It is the inverse of Object.Name.
func ParseObject(name string) (Object, error) {
	var o Object
	var rest string
	rest, o.Encrypted = strings.CutSuffix(name, AgeExt)
	for _, c := range compressions {
		if r, ok := strings.CutSuffix(rest, Ext(c)); ok {
			rest, o.Compression = r, c
			break
		}
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return Object{}, fmt.Errorf("object %q: want <fs>.<kind>[.zst|.gz][%s]", name, AgeExt)
	}
	o.FS, o.Kind = rest[:dot], Kind(rest[dot+1:])
	if err := checkFS(o.FS, o.Kind); err != nil {
		return Object{}, fmt.Errorf("object %q: %w", name, err)
	}
	return o, nil
}

// checkFS checks that kind is a known kind and fs a name it may be of.
func checkFS(fs string, kind Kind) error {
	switch kind {
	case SQL:
		if fs != Dump {
			return fmt.Errorf("an %s object is of %s, not %q", SQL, Dump, fs)
		}
	case Runs:
		if fs != Outside {
			return fmt.Errorf("a %s object is of %s, not %q", Runs, Outside, fs)
		}
	case Tar, Raw, Index:
		if fs == WholeDisk {
			return nil
		}
		if _, err := PartitionNumber(fs); err != nil {
			return fmt.Errorf("want p<N> or %s: %w", WholeDisk, err)
		}
	default:
		return fmt.Errorf("kind %q: want %s, %s, %s or %s", kind, Tar, Raw, SQL, Runs)
	}
	return nil
}

// Encrypted reports whether an object's name says it is age-encrypted.
func Encrypted(name string) bool { return strings.HasSuffix(name, AgeExt) }

// Compression returns the compression an object's name implies, none when
// its name carries no compression suffix.
func Compression(name string) string {
	name = strings.TrimSuffix(name, AgeExt)
	for _, c := range compressions {
		if c != codec.None && strings.HasSuffix(name, Ext(c)) {
			return c
		}
	}
	return codec.None
}

// IsTar reports whether an object holds a tar stream (p1.tar.zst), not
// raw bytes (p2.raw.zst) or a dump.
func IsTar(name string) bool {
	o, err := ParseObject(name)
	return err == nil && o.Kind == Tar
}
