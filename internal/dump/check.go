package dump

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"strings"
	"sync"
)

// Bounds of what is kept of the remote command's output.
const (
	stderrKeep = 4 << 10 // stderr tail kept for error messages
	stdoutTail = 4 << 10 // stdout tail searched for the completion trailer
	lineMax    = 1 << 10 // a stderr line is judged by its first KiB
	keptLines  = 20      // warnings and errors remembered, each
)

// harmlessLine matches stderr lines that are warnings, not failures:
// "mysqldump: [Warning] ...", "Warning: ...", "pg_dump: warning: ...",
// "-- Warning: column statistics not supported by the server.", and the
// deprecation notice MariaDB 11 prints for the name mysqldump.
var harmlessLine = regexp.MustCompile(`(?i)^(\S+:\s+)?(\[warning\]|warning\b|-- warning\b|deprecated program name\b)`)

// looksBad marks lines that fail the dump even if they start like a warning.
var looksBad = regexp.MustCompile(`(?i)error|fail|denied|abort|fatal|unknown|couldn't|can't|cannot`)

// stderrLog judges the remote command's stderr line by line: any line that
// is not a known-harmless warning fails the dump. mysqldump reports most
// trouble with a non-zero exit status, but some (a table that went away,
// "Couldn't execute ..." with --force) only on stderr. It keeps the last
// stderrKeep bytes for the error message. Safe for concurrent use.
type stderrLog struct {
	mu       sync.Mutex
	tail     []byte
	line     []byte
	lineLen  int
	bad      []string
	nbad     int
	warnings []string
}

func (s *stderrLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tail = append(s.tail, p...)
	if len(s.tail) > 2*stderrKeep {
		s.tail = append(s.tail[:0], s.tail[len(s.tail)-stderrKeep:]...)
	}
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		chunk := rest
		if i >= 0 {
			chunk = rest[:i]
		}
		if room := lineMax - len(s.line); room > 0 {
			s.line = append(s.line, chunk[:min(room, len(chunk))]...)
		}
		s.lineLen += len(chunk)
		if i < 0 {
			break
		}
		s.endLine()
		rest = rest[i+1:]
	}
	return len(p), nil
}

func (s *stderrLog) endLine() {
	line := strings.TrimSpace(strings.ToValidUTF8(string(s.line), "?"))
	if s.lineLen > lineMax {
		line += "..."
	}
	s.line, s.lineLen = s.line[:0], 0
	switch {
	case line == "":
	case harmlessLine.MatchString(line) && !looksBad.MatchString(line):
		if len(s.warnings) < keptLines {
			s.warnings = append(s.warnings, line)
		}
	default:
		s.nbad++
		if len(s.bad) < keptLines {
			s.bad = append(s.bad, line)
		}
	}
}

// finish judges a last line without a newline.
func (s *stderrLog) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lineLen > 0 {
		s.endLine()
	}
}

// Tail is the end of stderr, up to stderrKeep bytes, cut at a line start.
func (s *stderrLog) Tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tail
	if len(t) > stderrKeep {
		t = t[len(t)-stderrKeep:]
		if i := bytes.IndexByte(t, '\n'); i >= 0 && i < len(t)-1 {
			t = t[i+1:]
		}
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(t), "?"))
}

// problem describes the offending lines, or "" when every line was harmless.
func (s *stderrLog) problem() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nbad == 0 {
		return ""
	}
	msg := fmt.Sprintf("the remote command reported errors: %d line(s) on stderr that are not warnings", s.nbad)
	shown := s.tail
	if len(shown) > stderrKeep {
		shown = shown[len(shown)-stderrKeep+lineMax:] // Tail cuts at a line start
	}
	if !bytes.Contains(shown, []byte(s.bad[0])) {
		msg += fmt.Sprintf(", the first: %q", s.bad[0])
	}
	return msg
}

func (s *stderrLog) Warnings() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.warnings...)
}

// tailBuffer keeps the last n bytes written to it.
type tailBuffer struct {
	n   int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.n {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.n:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte {
	if len(t.buf) > t.n {
		return t.buf[len(t.buf)-t.n:]
	}
	return t.buf
}

// Trailer is what a complete dump ends with, for the dump programs voltar
// knows; "" when the command's output cannot be checked that way.
//
// mysqldump and mariadb-dump end with "-- Dump completed on <date>" unless
// comments are off (--compact, --skip-comments) or the output is not SQL
// (--xml, --tab). pg_dump and pg_dumpall end plain-format dumps with
// "-- PostgreSQL database [cluster] dump complete". A command with a pipe,
// redirection or several statements is not checked: its last stage may
// not be the dump program.
func Trailer(command string) string {
	if strings.ContainsAny(command, "|>;&`$(") {
		return ""
	}
	fields := strings.Fields(command)
	prog := ""
	for _, f := range fields {
		switch b := path.Base(f); b {
		case "mysqldump", "mariadb-dump", "mariadump", "pg_dump", "pg_dumpall":
			prog = b
		}
	}
	switch prog {
	case "":
		return ""
	case "pg_dump", "pg_dumpall":
		for i, f := range fields {
			switch {
			case f == "-f" || strings.HasPrefix(f, "--file"):
				return ""
			case f == "-F" || f == "--format":
				if i+1 < len(fields) && fields[i+1] != "p" && fields[i+1] != "plain" {
					return ""
				}
			case strings.HasPrefix(f, "-F") || strings.HasPrefix(f, "--format="):
				v := strings.TrimPrefix(strings.TrimPrefix(f, "--format="), "-F")
				if v != "p" && v != "plain" {
					return ""
				}
			}
		}
		return "dump complete"
	}
	for _, f := range fields {
		switch {
		case f == "--compact", f == "--skip-comments", f == "--xml", f == "-X",
			strings.HasPrefix(f, "--tab"), f == "-T", strings.HasPrefix(f, "--comments=0"),
			strings.HasPrefix(f, "--comments=false"), strings.HasPrefix(f, "--comments=off"),
			f == "--result-file" || strings.HasPrefix(f, "--result-file=") || strings.HasPrefix(f, "-r"):
			return ""
		}
	}
	return "-- Dump completed"
}

// hasTrailer reports whether the trailer is in the last lines of the dump.
func hasTrailer(tail []byte, trailer string) bool {
	// The trailer sits in the last few lines: only look there, so a
	// table's data that happens to contain it cannot pass for one.
	t := bytes.TrimRight(tail, "\n\r\t ")
	lines := bytes.Split(t, []byte("\n"))
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	for _, l := range lines {
		if bytes.Contains(l, []byte(trailer)) && bytes.HasPrefix(bytes.TrimSpace(l), []byte("--")) {
			return true
		}
	}
	return false
}
