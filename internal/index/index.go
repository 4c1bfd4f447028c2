// Package index is the file index of a filesystem archive: one record per
// tar entry (what `ls -l`, `find`, `diff` and change detection need, and
// where the entry's header sits in the uncompressed tar stream), then the
// archive's frames with their SHA-256s. With it a reader lists a backup
// without reading its archive, and fetches one file by reading only the
// frames that hold it.
//
// The index is stored beside its archive as <fs>.index[.zst|.gz][.age],
// compressed and encrypted like the archive, and listed in SHA256SUMS and
// the manifest. It is JSON lines, readable without voltar:
//
//	{"voltar_index":1,"fs":"p1","archive":"p1.tar.zst"}
//	{"path":".","type":"dir","mode":493,"uid":0,"gid":0,"mtime":...,"ctime":...,"ino":2,"offset":0}
//	{"path":"etc/passwd","type":"file","size":1234,...,"offset":2048}
//	{"path":"bin/sh","type":"symlink","link":"dash",...}
//	{"frame":{"offset":0,"size":2915872,"tar_offset":0,"tar_size":8388608,"sha256":"..."}}
//	{"end":{"entries":2,"frames":1,"tar_bytes":10240}}
//
// Entries come in archive order. A name that is not valid UTF-8 is stored
// base64-encoded in path_b64 (link_b64, hardlink_b64) instead. Times are
// nanoseconds since the epoch. "xattrs" is the hex SHA-256 of the entry's
// extended attributes, ACLs and inode flags as the archive records them
// (its SCHILY.* and VOLTAR.* PAX records as sorted "key=value\n" lines),
// absent when it has none.
//
// The index of an incremental backup's filesystem lists the whole tree at
// its time. An entry whose latest version is in an earlier backup of the
// chain carries that backup's timestamp in "from", and its offset is in
// that backup's archive; entries without "from" are in this archive.
package index

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/sys/unix"

	"voltar/internal/codec"
	"voltar/internal/layout"
)

// Version is the index format this voltar writes and reads.
const Version = 1

// Type is an entry's file type.
type Type string

// The entry types.
const (
	Dir      Type = "dir"
	File     Type = "file"
	Symlink  Type = "symlink"
	Hardlink Type = "hardlink" // another name of an earlier entry (Hardlink)
	Char     Type = "char"
	Block    Type = "block"
	Fifo     Type = "fifo"
)

func (t Type) valid() bool {
	switch t {
	case Dir, File, Symlink, Hardlink, Char, Block, Fifo:
		return true
	}
	return false
}

// Entry is one tar entry of an archive.
type Entry struct {
	Path     string // relative to the filesystem's root, "." for the root
	Type     Type
	Size     int64  // a regular file's logical size (holes included)
	Mode     uint32 // permission bits with setuid, setgid and sticky (07777)
	UID, GID int
	Uname    string
	Gname    string
	Mtime    int64 // ns since the epoch
	Ctime    int64 // ns since the epoch
	Ino      uint64
	Nlink    uint64
	Link     string // a symlink's target
	Hardlink string // the path of the entry this one is another name of
	Major    int64  // char and block devices
	Minor    int64
	Xattrs   string // hex SHA-256 of the metadata records; "" if none
	Sparse   bool   // stored as a sparse entry (holes recorded)
	Offset   int64  // of the entry's first header block in the tar stream
	// From is the timestamp (layout.TimeFormat) of the earlier backup of
	// the chain whose archive holds the entry, at Offset; "" when it is
	// in this index's own archive.
	From string
}

// Header is the index's first line.
type Header struct {
	Version int    `json:"voltar_index"`
	FS      string `json:"fs"`
	Archive string `json:"archive"`
}

// End is the index's last line: what a complete index holds.
type End struct {
	Entries  int64 `json:"entries"`
	Frames   int64 `json:"frames"`
	TarBytes int64 `json:"tar_bytes"`
}

// frameLine is a frame as the index stores it.
type frameLine struct {
	Offset    int64  `json:"offset"`
	Size      int64  `json:"size"`
	TarOffset int64  `json:"tar_offset"`
	TarSize   int64  `json:"tar_size"`
	SHA256    string `json:"sha256"`
}

// metaRecord reports whether a PAX record is metadata the digest covers:
// extended attributes, ACLs and inode flags (SCHILY.*) and voltar's own
// attributes (VOLTAR.*), not the records a tar writer derives from the
// header's fields (path, mtime, size, GNU.sparse.*, ...).
func metaRecord(k string) bool {
	return strings.HasPrefix(k, "SCHILY.") || strings.HasPrefix(k, "VOLTAR.")
}

// XattrDigest is Entry.Xattrs of an entry with the given PAX records: the
// SHA-256 of the sorted "key=value\n" lines of its SCHILY.* and VOLTAR.*
// records, or "" when there are none.
func XattrDigest(recs map[string]string) string {
	keys := make([]string, 0, len(recs))
	for k := range recs {
		if metaRecord(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		io.WriteString(h, k)
		h.Write([]byte{'='})
		io.WriteString(h, recs[k])
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Writer writes an index. Add the entries in archive order, then Finish.
type Writer struct {
	w       io.Writer
	buf     []byte
	entries int64
	last    int64
	from    string // the last From checked
	err     error
}

// flushAt is how much a Writer buffers before writing.
const flushAt = 64 << 10

// NewWriter starts an index on w with its header line.
func NewWriter(w io.Writer, h Header) *Writer {
	h.Version = Version
	b, _ := json.Marshal(h)
	return &Writer{w: w, buf: append(b, '\n'), last: -1}
}

// Add appends an entry. The offsets of the archive's own entries (From
// "") must grow.
func (w *Writer) Add(e *Entry) error {
	if w.err != nil {
		return w.err
	}
	if e.From != "" {
		if e.From != w.from {
			if _, err := layout.ParseTime(e.From); err != nil {
				w.err = fmt.Errorf("index: entry %q from %q: not a backup timestamp", e.Path, e.From)
				return w.err
			}
			w.from = e.From
		}
	} else if e.Offset <= w.last {
		w.err = fmt.Errorf("index: entry %q at %d after one at %d", e.Path, e.Offset, w.last)
		return w.err
	}
	if e.From == "" {
		w.last = e.Offset
	}
	w.entries++
	w.buf = AppendEntry(w.buf, e)
	if len(w.buf) >= flushAt {
		return w.flush()
	}
	return nil
}

func (w *Writer) flush() error {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.w.Write(w.buf)
		w.buf = w.buf[:0]
	}
	return w.err
}

// Finish writes the frames of the archive's stream (none for a gzip
// archive) and the end line. tarBytes is the tar stream's length.
func (w *Writer) Finish(frames []codec.Frame, tarBytes int64) error {
	for _, f := range frames {
		b, _ := json.Marshal(struct {
			Frame frameLine `json:"frame"`
		}{frameLine{f.COff, f.CSize, f.UOff, f.USize, hex.EncodeToString(f.SHA256[:])}})
		w.buf = append(append(w.buf, b...), '\n')
		if len(w.buf) >= flushAt {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	b, _ := json.Marshal(struct {
		End End `json:"end"`
	}{End{w.entries, int64(len(frames)), tarBytes}})
	w.buf = append(append(w.buf, b...), '\n')
	return w.flush()
}

// AppendEntry appends e's JSON line (with its newline); by hand, as the
// archive's walk calls it for every entry.
func AppendEntry(b []byte, e *Entry) []byte {
	b = append(b, '{')
	b = appendName(b, "path", e.Path)
	b = append(b, `,"type":"`...)
	b = append(b, e.Type...)
	b = append(b, '"')
	if e.Type == File {
		b = appendInt(b, "size", e.Size)
	}
	b = appendInt(b, "mode", int64(e.Mode))
	b = appendInt(b, "uid", int64(e.UID))
	b = appendInt(b, "gid", int64(e.GID))
	if e.Uname != "" {
		b = appendStr(b, "uname", e.Uname)
	}
	if e.Gname != "" {
		b = appendStr(b, "gname", e.Gname)
	}
	b = appendInt(b, "mtime", e.Mtime)
	b = appendInt(b, "ctime", e.Ctime)
	b = append(b, `,"ino":`...)
	b = strconv.AppendUint(b, e.Ino, 10)
	if e.Nlink > 1 {
		b = append(b, `,"nlink":`...)
		b = strconv.AppendUint(b, e.Nlink, 10)
	}
	if e.Type == Symlink {
		b = append(b, ',')
		b = appendName(b, "link", e.Link)
	}
	if e.Type == Hardlink {
		b = append(b, ',')
		b = appendName(b, "hardlink", e.Hardlink)
	}
	if e.Type == Char || e.Type == Block {
		b = appendInt(b, "major", e.Major)
		b = appendInt(b, "minor", e.Minor)
	}
	if e.Xattrs != "" {
		b = appendStr(b, "xattrs", e.Xattrs)
	}
	if e.Sparse {
		b = append(b, `,"sparse":true`...)
	}
	b = appendInt(b, "offset", e.Offset)
	if e.From != "" {
		b = appendStr(b, "from", e.From)
	}
	return append(b, '}', '\n')
}

func appendInt(b []byte, key string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

func appendStr(b []byte, key, v string) []byte {
	b = append(b, ',')
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, v)
}

// appendName writes a name as "key":"..." when it is UTF-8, else as
// "key_b64":"<base64>" (JSON strings hold only UTF-8).
func appendName(b []byte, key, v string) []byte {
	b = append(b, '"')
	b = append(b, key...)
	if !utf8.ValidString(v) {
		b = append(b, `_b64":"`...)
		b = base64.StdEncoding.AppendEncode(b, []byte(v))
		return append(b, '"')
	}
	b = append(b, '"', ':')
	return appendJSONString(b, v)
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes a valid UTF-8 string for JSON.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// line is any index line, as decoded.
type line struct {
	Version *int       `json:"voltar_index"`
	FS      string     `json:"fs"`
	Archive string     `json:"archive"`
	Path    *string    `json:"path"`
	PathB64 *string    `json:"path_b64"`
	Type    Type       `json:"type"`
	Size    int64      `json:"size"`
	Mode    uint32     `json:"mode"`
	UID     int        `json:"uid"`
	GID     int        `json:"gid"`
	Uname   string     `json:"uname"`
	Gname   string     `json:"gname"`
	Mtime   int64      `json:"mtime"`
	Ctime   int64      `json:"ctime"`
	Ino     uint64     `json:"ino"`
	Nlink   uint64     `json:"nlink"`
	Link    *string    `json:"link"`
	LinkB64 *string    `json:"link_b64"`
	Hard    *string    `json:"hardlink"`
	HardB64 *string    `json:"hardlink_b64"`
	Major   int64      `json:"major"`
	Minor   int64      `json:"minor"`
	Xattrs  string     `json:"xattrs"`
	Sparse  bool       `json:"sparse"`
	Offset  int64      `json:"offset"`
	From    string     `json:"from"`
	Frame   *frameLine `json:"frame"`
	End     *End       `json:"end"`

	err error // parseFlat's, of a value

	strs [6]string         // what the pointers above point to (parseFlat)
	seen map[string]string // strings shared by the lines of one reader (shared)
	// fromOK holds the From values found to be timestamps.
	fromOK map[string]bool
}

// ErrCorrupt is matched by every error of Read about the index's content.
var ErrCorrupt = errors.New("damaged file index")

func corrupt(n int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrCorrupt, n, fmt.Sprintf(format, args...))
}

// maxLine bounds one index line (a path is at most 4096 bytes, base64 of
// it and a link target about 11 KiB).
const maxLine = 64 << 10

// Read decodes and checks a whole index: the header first, entries at
// growing block-aligned offsets with clean relative paths, frames that
// cover the tar stream without gaps, and an end line that counts them.
// Everything read from a store is hostile: any deviation is ErrCorrupt.
func Read(r io.Reader) (*Index, error) { return ReadSome(r, nil, 0) }

// prefault asks the kernel for the pages of a large entry list up front,
// in one call (MADV_POPULATE_WRITE). Touched one at a time, after the
// garbage collector's scan of the still empty list had mapped the shared
// zero page there, each page was a copy-on-write fault that flushes the
// TLB of every CPU the process runs on: a 100,000-entry index took longer
// to fault in than to decode. Best effort: a kernel without it (before
// 5.14) faults as before.
func prefault(entries []Entry) {
	if cap(entries) == 0 {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(entries))), uintptr(cap(entries))*unsafe.Sizeof(Entry{}))
	// madvise wants a page-aligned start; a large allocation is.
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(&b[0]))
	if skip := (page - start%page) % page; skip < uintptr(len(b)) {
		_ = unix.Madvise(b[skip:len(b)-int((uintptr(len(b))-skip)%page)], unix.MADV_POPULATE_WRITE)
	}
}

// maxHint bounds what a hint to ReadSome allocates ahead (a manifest is
// read from a store: hostile).
const maxHint = 1 << 22

// pathPrefix starts every entry line voltar writes with a UTF-8 path.
var pathPrefix = []byte(`{"path":"`)

// ReadSome is Read keeping only the entries whose path keep accepts (nil
// keeps all). The others are counted but not decoded, so finding one file
// in an index of 100,000 entries costs a scan instead of a full decode;
// they are not checked either (their bytes are, by the index's SHA-256).
// Only Lookup, Target and FrameAt are meaningful on such an index.
//
// entries, when known (the manifest counts them), sizes the entry list at
// once instead of growing it: of reading a large index, copying and
// first touching the memory of a growing list cost as much as the
// decoding. It is a hint: a wrong one costs only that.
func ReadSome(r io.Reader, keep func(path []byte) bool, entries int) (*Index, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	ix := &Index{}
	if keep == nil && entries > 0 {
		ix.Entries = make([]Entry, 0, min(entries, maxHint))
		prefault(ix.Entries)
	}
	n := 0
	last := int64(-1)
	var u int64
	ended := false
	// One line, reused: its strings are shared, its pointers point into it.
	l := &line{seen: map[string]string{}, fromOK: map[string]bool{}}
	for sc.Scan() {
		n++
		if ended {
			return nil, corrupt(n, "data after the end line")
		}
		if keep != nil && n > 1 {
			if p, ok := plainPath(sc.Bytes()); ok && !keep(p) {
				if len(ix.Frames) > 0 {
					return nil, corrupt(n, "entry after the frames")
				}
				ix.skipped++
				continue
			}
		}
		*l = line{seen: l.seen, fromOK: l.fromOK}
		if ok, err := parseFlat(sc.Bytes(), l); err != nil {
			return nil, corrupt(n, "%v", err)
		} else if !ok {
			*l = line{seen: l.seen, fromOK: l.fromOK}
			if err := json.Unmarshal(sc.Bytes(), l); err != nil {
				return nil, corrupt(n, "%v", err)
			}
		}
		switch {
		case n == 1:
			if l.Version == nil {
				return nil, corrupt(n, "not a voltar file index (no voltar_index header)")
			}
			if *l.Version != Version {
				return nil, fmt.Errorf("file index version %d not supported by this voltar (knows %d)", *l.Version, Version)
			}
			ix.Header = Header{Version: *l.Version, FS: l.FS, Archive: l.Archive}
		case l.Path != nil || l.PathB64 != nil:
			if len(ix.Frames) > 0 {
				return nil, corrupt(n, "entry after the frames")
			}
			if len(ix.Entries) == cap(ix.Entries) {
				// Doubled: append grows large slices by a quarter,
				// copying a large index several times over.
				ix.Entries = slices.Grow(ix.Entries, max(1024, len(ix.Entries)))
			}
			// Decoded in place: an Entry is large to copy.
			ix.Entries = ix.Entries[:len(ix.Entries)+1]
			e := &ix.Entries[len(ix.Entries)-1]
			if err := l.fill(e); err != nil {
				return nil, corrupt(n, "%v", err)
			}
			switch {
			case e.From != "":
				if e.Offset < 0 || e.Offset%512 != 0 {
					return nil, corrupt(n, "entry %q at offset %d of %s, not at a tar block", e.Path, e.Offset, e.From)
				}
				ix.Inherited++
			case e.Offset <= last || e.Offset%512 != 0:
				return nil, corrupt(n, "entry %q at offset %d (after %d, or not at a tar block)", e.Path, e.Offset, last)
			default:
				last = e.Offset
			}
		case l.Frame != nil:
			f := l.Frame
			var fr codec.Frame
			sum, err := hex.DecodeString(f.SHA256)
			if err != nil || len(sum) != sha256.Size {
				return nil, corrupt(n, "frame sha256 %q", f.SHA256)
			}
			copy(fr.SHA256[:], sum)
			fr.COff, fr.CSize, fr.UOff, fr.USize = f.Offset, f.Size, f.TarOffset, f.TarSize
			want := codec.Frame{}
			if k := len(ix.Frames); k > 0 {
				p := ix.Frames[k-1]
				want.COff, want.UOff = p.COff+p.CSize, p.UOff+p.USize
			}
			if fr.COff != want.COff || fr.UOff != want.UOff || fr.CSize <= 0 && fr.USize > 0 || fr.CSize < 0 || fr.USize < 0 || fr.USize > 1<<30 {
				return nil, corrupt(n, "frame %d does not follow the one before", len(ix.Frames))
			}
			ix.Frames = append(ix.Frames, fr)
			u = fr.UOff + fr.USize
		case l.End != nil:
			ix.End = *l.End
			ended = true
		default:
			return nil, corrupt(n, "unknown line")
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, corrupt(n+1, "line longer than %d bytes", maxLine)
		}
		return nil, err
	}
	switch {
	case n == 0:
		return nil, fmt.Errorf("%w: empty", ErrCorrupt)
	case !ended:
		return nil, fmt.Errorf("%w: truncated (no end line)", ErrCorrupt)
	case ix.End.Entries != int64(len(ix.Entries)+ix.skipped) || ix.End.Frames != int64(len(ix.Frames)):
		return nil, fmt.Errorf("%w: end line counts %d entries and %d frames, the index holds %d and %d",
			ErrCorrupt, ix.End.Entries, ix.End.Frames, len(ix.Entries)+ix.skipped, len(ix.Frames))
	case len(ix.Frames) > 0 && u != ix.End.TarBytes:
		return nil, fmt.Errorf("%w: frames cover %d tar bytes, the end line says %d", ErrCorrupt, u, ix.End.TarBytes)
	case last >= ix.End.TarBytes && last >= 0:
		return nil, fmt.Errorf("%w: an entry starts at %d, past the tar stream's %d bytes", ErrCorrupt, last, ix.End.TarBytes)
	}
	return ix, nil
}

// ParseEntry decodes and checks one entry line (as AppendEntry writes it,
// without its newline): a clean relative path, a known type, sane sizes.
// The offset is not checked against others: Writer.Add does that.
func ParseEntry(b []byte) (Entry, error) {
	var l line
	if ok, err := parseFlat(b, &l); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	} else if !ok {
		l = line{}
		if err := json.Unmarshal(b, &l); err != nil {
			return Entry{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
	}
	if l.Path == nil && l.PathB64 == nil {
		return Entry{}, fmt.Errorf("%w: not an entry line", ErrCorrupt)
	}
	e, err := l.entry()
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if e.Offset < 0 || e.Offset%512 != 0 {
		return Entry{}, fmt.Errorf("%w: entry %q at offset %d, not at a tar block", ErrCorrupt, e.Path, e.Offset)
	}
	return e, nil
}

// plainPath returns the path of an entry line as voltar writes it (the
// path first, without escapes), without decoding the line.
func plainPath(b []byte) ([]byte, bool) {
	if !bytes.HasPrefix(b, pathPrefix) {
		return nil, false
	}
	rest := b[len(pathPrefix):]
	for i, c := range rest {
		switch c {
		case '\\':
			return nil, false
		case '"':
			return rest[:i], true
		}
	}
	return nil, false
}

// entry converts a decoded entry line and checks it.
func (l *line) entry() (Entry, error) {
	var e Entry
	err := l.fill(&e)
	return e, err
}

// fill is entry, decoded into *e.
func (l *line) fill(e *Entry) error {
	*e = Entry{Type: l.Type, Size: l.Size, Mode: l.Mode, UID: l.UID, GID: l.GID, Uname: l.Uname, Gname: l.Gname,
		Mtime: l.Mtime, Ctime: l.Ctime, Ino: l.Ino, Nlink: l.Nlink, Major: l.Major, Minor: l.Minor,
		Xattrs: l.Xattrs, Sparse: l.Sparse, Offset: l.Offset, From: l.From}
	var err error
	if e.From != "" && !l.fromOK[e.From] {
		if _, err := layout.ParseTime(e.From); err != nil {
			return fmt.Errorf("from %q: not a backup timestamp", e.From)
		}
		if l.fromOK != nil && len(l.fromOK) < maxShared {
			l.fromOK[e.From] = true
		}
	}
	if e.Path, err = name(l.Path, l.PathB64); err != nil {
		return fmt.Errorf("path: %w", err)
	}
	if err := CheckPath(e.Path); err != nil {
		return err
	}
	if !e.Type.valid() {
		return fmt.Errorf("%q: unknown type %q", e.Path, e.Type)
	}
	if e.Mode&^0o7777 != 0 || e.Size < 0 || (e.Type != File && e.Size != 0) {
		return fmt.Errorf("%q: mode %#o or size %d out of range", e.Path, e.Mode, e.Size)
	}
	if e.Link, err = name(l.Link, l.LinkB64); err != nil {
		return fmt.Errorf("link: %w", err)
	}
	if e.Hardlink, err = name(l.Hard, l.HardB64); err != nil {
		return fmt.Errorf("hardlink: %w", err)
	}
	if e.Type == Hardlink {
		if err := CheckPath(e.Hardlink); err != nil {
			return fmt.Errorf("hardlink target: %w", err)
		}
	}
	return nil
}

func name(s, b64 *string) (string, error) {
	switch {
	case s != nil && b64 != nil:
		return "", errors.New("both plain and base64")
	case s != nil:
		return *s, nil
	case b64 != nil:
		b, err := base64.StdEncoding.DecodeString(*b64)
		return string(b), err
	}
	return "", nil
}

// CheckPath accepts "." and clean relative paths without "..", empty or
// NUL-holding components: what an archive entry's name can be.
func CheckPath(p string) error {
	if p == "." {
		return nil
	}
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || path.Clean(p) != p {
		return fmt.Errorf("path %q is not clean and relative", p)
	}
	for c := range strings.SplitSeq(p, "/") {
		if c == ".." || c == "." {
			return fmt.Errorf("path %q leaves its root", p)
		}
	}
	return nil
}

// TypeOf is the entry type of a tar type flag (regular file for any
// type that is no other).
func TypeOf(flag byte) Type {
	switch flag {
	case tar.TypeDir:
		return Dir
	case tar.TypeSymlink:
		return Symlink
	case tar.TypeLink:
		return Hardlink
	case tar.TypeChar:
		return Char
	case tar.TypeBlock:
		return Block
	case tar.TypeFifo:
		return Fifo
	}
	return File
}

// FromHeader is the entry of tar header h whose first block is at offset
// off: what the archive itself says of an entry. Inode number, ctime
// (unless recorded) and link count are not in a tar header.
func FromHeader(h *tar.Header, off int64) Entry {
	e := Entry{Path: FromTar(h.Name), Type: TypeOf(h.Typeflag), Mode: uint32(h.Mode) & 0o7777, UID: h.Uid, GID: h.Gid,
		Uname: h.Uname, Gname: h.Gname, Mtime: h.ModTime.UnixNano(), Xattrs: XattrDigest(h.PAXRecords), Offset: off}
	switch e.Type {
	case File:
		e.Size = h.Size
	case Symlink:
		e.Link = h.Linkname
	case Hardlink:
		e.Hardlink = FromTar(h.Linkname)
	case Char, Block:
		e.Major, e.Minor = h.Devmajor, h.Devminor
	}
	if !h.ChangeTime.IsZero() {
		e.Ctime = h.ChangeTime.UnixNano()
	}
	return e
}

// FromTar turns an archive entry name ("./etc/passwd", "./etc/", "./")
// into an index path ("etc/passwd", "etc", ".").
func FromTar(name string) string {
	p := strings.TrimPrefix(name, "./")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return "."
	}
	return p
}
