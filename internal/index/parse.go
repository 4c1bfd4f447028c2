package index

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// parseFlat decodes a line that is one flat JSON object (string, integer
// and boolean values: every entry line) into l, several times faster than
// encoding/json, which dominated reading an index of 100,000 entries. It
// reports ok=false, without error, for a line it does not handle (nested
// objects: the header's neighbours, frames, the end line), which the
// caller decodes with encoding/json instead. Malformed JSON is an error.
func parseFlat(b []byte, l *line) (ok bool, err error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false, errNotJSON
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return true, trailing(b, i+1)
	}
	defer func() {
		if err == nil && l.err != nil {
			ok, err = false, l.err
		}
	}()
	for {
		if i >= len(b) || b[i] != '"' {
			return false, errNotJSON
		}
		key, n, err := rawKey(b, i)
		if err == errEscape {
			return false, nil // not a key of ours: encoding/json's
		}
		if err != nil {
			return false, err
		}
		i = skipSpace(b, n)
		if i >= len(b) || b[i] != ':' {
			return false, errNotJSON
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return false, errNotJSON
		}
		// A value of another type than its field's is left to
		// encoding/json, which says what is wrong.
		k := kindOf(key)
		switch c := b[i]; {
		case k == kindFolded:
			return false, nil
		case c == '"' && k != kindString && k != kindAny,
			(c == '-' || c >= '0' && c <= '9') && k != kindNumber && k != kindAny,
			(c == 't' || c == 'f') && k != kindBool && k != kindAny:
			return false, nil
		case c == '"':
			n, ok := l.setString(b, key, i)
			if !ok {
				return false, nil
			}
			if n < 0 {
				return false, l.err
			}
			i = n
		case c == '-' || c >= '0' && c <= '9':
			j := i + 1
			for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
				j++
			}
			if err := l.setNumber(key, b[i:j]); err != nil {
				return false, err
			}
			i = j
		case c == 't' && len(b) >= i+4 && string(b[i:i+4]) == "true":
			if string(key) == "sparse" {
				l.Sparse = true
			}
			i += 4
		case c == 'f' && len(b) >= i+5 && string(b[i:i+5]) == "false":
			if string(key) == "sparse" {
				l.Sparse = false
			}
			i += 5
		default:
			return false, nil // an object, an array or null: encoding/json's
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			return true, trailing(b, i+1)
		}
		return false, errNotJSON
	}
}

var errNotJSON = errors.New("invalid JSON")

var errEscape = errors.New("escaped")

// The kinds of JSON value the fields of a line take.
const (
	kindAny    = iota // not a field of line: any value, ignored
	kindString        // a string
	kindNumber        // a whole number
	kindBool          // true or false
	kindObject        // an object (frame, end)
	kindFolded        // a field's key in other case: encoding/json's
)

// kindOf is the kind of value key takes.
func kindOf(key []byte) int {
	switch string(key) {
	case "fs", "archive", "path", "path_b64", "type", "uname", "gname", "link", "link_b64", "hardlink", "hardlink_b64", "xattrs", "from":
		return kindString
	case "voltar_index", "size", "mode", "uid", "gid", "mtime", "ctime", "ino", "nlink", "major", "minor", "offset":
		return kindNumber
	case "sparse":
		return kindBool
	case "frame", "end":
		return kindObject
	}
	for _, k := range fieldNames {
		if bytes.EqualFold(key, []byte(k)) {
			return kindFolded
		}
	}
	return kindAny
}

// fieldNames are the keys of line; encoding/json matches them ignoring case.
var fieldNames = [...]string{"fs", "archive", "path", "path_b64", "type", "uname", "gname", "link", "link_b64", "hardlink", "hardlink_b64", "xattrs", "from",
	"voltar_index", "size", "mode", "uid", "gid", "mtime", "ctime", "ino", "nlink", "major", "minor", "offset", "sparse", "frame", "end"}

func trailing(b []byte, i int) error {
	if skipSpace(b, i) != len(b) {
		return errNotJSON
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// rawKey returns the bytes of the JSON string starting at b[i] ('"')
// without decoding them, and the index after it; errEscape for a string
// with an escape, whose bytes are not the string they stand for (no key of
// ours has one).
func rawKey(b []byte, i int) ([]byte, int, error) {
	j := i + 1
	for ; j < len(b) && b[j] != '"'; j++ {
		if b[j] < 0x20 {
			return nil, 0, errNotJSON
		}
		if b[j] == '\\' {
			return nil, 0, errEscape
		}
	}
	if j >= len(b) {
		return nil, 0, errNotJSON
	}
	return b[i+1 : j], j + 1, nil
}

// str decodes the JSON string starting at b[i] ('"') and returns it and
// the index after it.
func str(b []byte, i int) (string, int, error) {
	j := i + 1
	esc := false
	for ; j < len(b); j++ {
		c := b[j]
		if c == '"' {
			break
		}
		if c < 0x20 {
			return "", 0, errNotJSON
		}
		if c == '\\' {
			esc = true
			j++
		}
	}
	if j >= len(b) {
		return "", 0, errNotJSON
	}
	raw := b[i+1 : j]
	if !esc {
		if !utf8.Valid(raw) {
			return "", 0, errors.New("string is not UTF-8")
		}
		return string(raw), j + 1, nil
	}
	var s string
	if err := json.Unmarshal(b[i:j+1], &s); err != nil {
		return "", 0, err
	}
	return s, j + 1, nil
}

// setString decodes the string value at b[i] of key into l and returns
// the index after it; false for a key whose value is no string. An error
// is in l.err, with end -1.
func (l *line) setString(b, key []byte, i int) (end int, ok bool) {
	switch string(key) {
	case "type":
		if raw, n, err := rawKey(b, i); err == nil {
			for _, t := range types {
				if string(raw) == string(t) {
					l.Type = t
					return n, true
				}
			}
		}
	case "uname", "gname", "xattrs", "from":
		// Few distinct values in a whole index: one string each.
		v, n, err := l.shared(b, i)
		if err != nil {
			l.err = err
			return -1, true
		}
		switch string(key) {
		case "uname":
			l.Uname = v
		case "gname":
			l.Gname = v
		case "xattrs":
			l.Xattrs = v
		case "from":
			l.From = v
		}
		return n, true
	}
	v, n, err := str(b, i)
	if err != nil {
		l.err = err
		return -1, true
	}
	// The pointers point into l, which a reader reuses: no allocation
	// per field.
	switch string(key) {
	case "path":
		l.strs[0] = v
		l.Path = &l.strs[0]
	case "path_b64":
		l.strs[1] = v
		l.PathB64 = &l.strs[1]
	case "type":
		l.Type = internType(v)
	case "link":
		l.strs[2] = v
		l.Link = &l.strs[2]
	case "link_b64":
		l.strs[3] = v
		l.LinkB64 = &l.strs[3]
	case "hardlink":
		l.strs[4] = v
		l.Hard = &l.strs[4]
	case "hardlink_b64":
		l.strs[5] = v
		l.HardB64 = &l.strs[5]
	case "fs":
		l.FS = v
	case "archive":
		l.Archive = v
	}
	return n, true
}

// maxShared bounds the strings a reader keeps to share.
const maxShared = 4096

// shared decodes the JSON string at b[i] as str does, returning the same
// string for the same value throughout one reader (owner names, xattr
// digests and backup timestamps repeat on most lines).
func (l *line) shared(b []byte, i int) (string, int, error) {
	if l.seen != nil {
		if raw, n, err := rawKey(b, i); err == nil {
			if v, ok := l.seen[string(raw)]; ok {
				return v, n, nil
			}
		}
	}
	v, n, err := str(b, i)
	if err == nil && l.seen != nil && len(l.seen) < maxShared {
		l.seen[v] = v
	}
	return v, n, err
}

// types are the known types, the most frequent first.
var types = [...]Type{File, Dir, Symlink, Hardlink, Char, Block, Fifo}

// internType returns the constant of a known type, so entries share it.
func internType(v string) Type {
	for _, t := range types {
		if string(t) == v {
			return t
		}
	}
	return Type(v)
}

func (l *line) setNumber(key []byte, b []byte) error {
	var err error
	switch string(key) {
	case "voltar_index":
		var n int64
		n, err = parseInt(b, 32)
		v := int(n)
		l.Version = &v
	case "size":
		l.Size, err = parseInt(b, 64)
	case "mode":
		var n uint64
		n, err = parseUint(b, 32)
		l.Mode = uint32(n)
	case "uid":
		var n int64
		n, err = parseInt(b, 64)
		l.UID = int(n)
	case "gid":
		var n int64
		n, err = parseInt(b, 64)
		l.GID = int(n)
	case "mtime":
		l.Mtime, err = parseInt(b, 64)
	case "ctime":
		l.Ctime, err = parseInt(b, 64)
	case "ino":
		l.Ino, err = parseUint(b, 64)
	case "nlink":
		l.Nlink, err = parseUint(b, 64)
	case "major":
		l.Major, err = parseInt(b, 64)
	case "minor":
		l.Minor, err = parseInt(b, 64)
	case "offset":
		l.Offset, err = parseInt(b, 64)
	default:
		if !json.Valid(b) {
			err = errNotJSON
		}
	}
	if err != nil {
		return errors.New("field " + strconv.Quote(string(key)) + ": " + string(b) + " is not a whole number in range")
	}
	return nil
}

var errRange = errors.New("not a whole number in range")

// parseUint is strconv.ParseUint(string(b), 10, bits) without the
// string: decimal digits only, within bits, no leading zero (JSON has
// none).
func parseUint(b []byte, bits uint) (uint64, error) {
	if len(b) == 0 || len(b) > 20 || len(b) > 1 && b[0] == '0' {
		return 0, errRange
	}
	max := uint64(1)<<bits - 1
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errRange
		}
		d := uint64(c - '0')
		if n > (max-d)/10 {
			return 0, errRange
		}
		n = n*10 + d
	}
	return n, nil
}

// parseInt is strconv.ParseInt(string(b), 10, bits) without the string.
func parseInt(b []byte, bits uint) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	limit := uint64(1) << (bits - 1) // |min|; max is one less
	u, err := parseUint(b, 64)
	switch {
	case err != nil:
		return 0, err
	case neg && u > limit, !neg && u >= limit:
		return 0, errRange
	case neg:
		return -int64(u), nil
	}
	return int64(u), nil
}
