package index

import (
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
		switch c := b[i]; {
		case c == '"':
			if !l.setString(b, key, i) {
				return false, nil
			}
			_, n, err := rawKey(b, i)
			if err != nil {
				return false, err
			}
			i = n
		case c == '-' || c >= '0' && c <= '9':
			j := i + 1
			for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
				j++
			}
			if err := l.setNumber(key, string(b[i:j])); err != nil {
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
// without decoding them (keys are plain ASCII; one with escapes matches no
// known key) and the index after it.
func rawKey(b []byte, i int) ([]byte, int, error) {
	j := i + 1
	for ; j < len(b) && b[j] != '"'; j++ {
		if b[j] < 0x20 {
			return nil, 0, errNotJSON
		}
		if b[j] == '\\' {
			j++
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

// setString decodes the string value at b[i] of key into l; false for a
// key whose value is no string.
func (l *line) setString(b, key []byte, i int) bool {
	switch string(key) {
	case "voltar_index", "size", "mode", "uid", "gid", "mtime", "ctime", "ino", "nlink", "major", "minor", "offset", "sparse", "frame", "end":
		return false // a string where another type belongs: encoding/json says what is wrong
	}
	v, _, err := str(b, i)
	if err != nil {
		l.err = err
		return true
	}
	switch string(key) {
	case "path":
		l.Path = &v
	case "path_b64":
		l.PathB64 = &v
	case "type":
		l.Type = internType(v)
	case "uname":
		l.Uname = v
	case "gname":
		l.Gname = v
	case "link":
		l.Link = &v
	case "link_b64":
		l.LinkB64 = &v
	case "hardlink":
		l.Hard = &v
	case "hardlink_b64":
		l.HardB64 = &v
	case "xattrs":
		l.Xattrs = v
	case "fs":
		l.FS = v
	case "archive":
		l.Archive = v
	case "from":
		l.From = v
	}
	return true
}

// internType returns the constant of a known type, so entries share it.
func internType(v string) Type {
	for _, t := range []Type{File, Dir, Symlink, Hardlink, Char, Block, Fifo} {
		if string(t) == v {
			return t
		}
	}
	return Type(v)
}

func (l *line) setNumber(key []byte, v string) error {
	var err error
	switch string(key) {
	case "voltar_index":
		var n int
		n, err = strconv.Atoi(v)
		l.Version = &n
	case "size":
		l.Size, err = strconv.ParseInt(v, 10, 64)
	case "mode":
		var n uint64
		n, err = strconv.ParseUint(v, 10, 32)
		l.Mode = uint32(n)
	case "uid":
		l.UID, err = strconv.Atoi(v)
	case "gid":
		l.GID, err = strconv.Atoi(v)
	case "mtime":
		l.Mtime, err = strconv.ParseInt(v, 10, 64)
	case "ctime":
		l.Ctime, err = strconv.ParseInt(v, 10, 64)
	case "ino":
		l.Ino, err = strconv.ParseUint(v, 10, 64)
	case "nlink":
		l.Nlink, err = strconv.ParseUint(v, 10, 64)
	case "major":
		l.Major, err = strconv.ParseInt(v, 10, 64)
	case "minor":
		l.Minor, err = strconv.ParseInt(v, 10, 64)
	case "offset":
		l.Offset, err = strconv.ParseInt(v, 10, 64)
	default:
		if !json.Valid([]byte(v)) {
			err = errNotJSON
		}
	}
	if err != nil {
		return errors.New("field " + strconv.Quote(string(key)) + ": " + v + " is not a whole number in range")
	}
	return nil
}
