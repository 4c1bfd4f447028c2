package sandbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The guest -> host stream. It is the only thing that crosses back from
// the sandbox, so the host reads it as hostile input: every record is
// typed, bounded and checksummed, the order is fixed, and anything else
// fails the filesystem's backup.
//
//	stream = magic record* result EOF
//	magic  = "VOLTARSB" version(1 byte, 1)
//	record = type(1 byte) length(4 bytes, big-endian) payload(length bytes)
//	         crc(4 bytes, big-endian CRC-32C of type, length and payload)
//
// Record types and their payloads:
//
//	RecTar      tar bytes, in order; their concatenation is the archive
//	RecProgress 16 bytes: bytes done, files done (big-endian int64)
//	RecLog      JSON logRecord: a warning of the guest's archive walk
//	RecIndex    file index entries (archive.Options.Index), whole JSON lines
//	            as index.AppendEntry writes them; each is checked
//	            (index.ParseEntry) and passed to Config.Index; an error
//	            without one
//	RecResult   JSON Result; the last record: only EOF may follow
//
// The channel is a raw serial line of the guest kernel, connected to a
// pipe; the checksum catches a byte the line discipline changed.
const (
	RecTar      byte = 'T'
	RecProgress byte = 'P'
	RecLog      byte = 'L'
	RecIndex    byte = 'I'
	RecResult   byte = 'R'
)

const (
	magic   = "VOLTARSB"
	version = 1
	// maxData bounds a tar or index record; the guest writes at most
	// this much per record.
	maxData = 1 << 20
	// maxLog bounds a log record, maxLogs their number per stream, so a
	// chatty or hostile guest cannot flood the host's log.
	maxLog  = 16 << 10
	maxLogs = 1000
	// maxResult bounds the result (its not-entered list can be long).
	maxResult = 16 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrMalformed is matched by every error about the stream's form.
var ErrMalformed = errors.New("malformed sandbox stream")

// ErrNoResult is matched when the stream ended before its result record:
// the sandbox crashed, was killed or powered off early.
var ErrNoResult = errors.New("sandbox stream ended without a result")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// frameWriter writes records. Not safe for concurrent use.
type frameWriter struct {
	w   *bufio.Writer
	err error
}

func newFrameWriter(w io.Writer) *frameWriter {
	fw := &frameWriter{w: bufio.NewWriterSize(w, maxData+64)}
	_, fw.err = fw.w.WriteString(magic + string(rune(version)))
	return fw
}

func (fw *frameWriter) record(typ byte, payload []byte) error {
	if fw.err != nil {
		return fw.err
	}
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	crc := crc32.Update(crc32.Update(0, crcTable, hdr[:]), crcTable, payload)
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], crc)
	for _, b := range [][]byte{hdr[:], payload, tail[:]} {
		if _, err := fw.w.Write(b); err != nil {
			fw.err = err
			return err
		}
	}
	return nil
}

func (fw *frameWriter) flush() error {
	if fw.err != nil {
		return fw.err
	}
	fw.err = fw.w.Flush()
	return fw.err
}

// tarWriter cuts what archive.Write writes into tar records.
type tarWriter struct{ fw *frameWriter }

func (t tarWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), maxData)
		if err := t.fw.record(RecTar, p[:c]); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

// frameReader reads and checks records.
type frameReader struct {
	r      *bufio.Reader
	logs   int
	result bool
	buf    []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 256<<10)}
}

func (fr *frameReader) start() error {
	var m [len(magic) + 1]byte
	if _, err := io.ReadFull(fr.r, m[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w (no data at all: the sandbox did not start)", ErrNoResult)
		}
		return err
	}
	if string(m[:len(magic)]) != magic {
		return malformed("bad magic %q", m[:len(magic)])
	}
	if m[len(magic)] != version {
		return malformed("version %d, want %d", m[len(magic)], version)
	}
	return nil
}

// next returns the next record. After the result record it returns io.EOF
// at the stream's end and an error for any byte more. The payload is valid
// until the next call.
func (fr *frameReader) next() (byte, []byte, error) {
	var hdr [5]byte
	n, err := io.ReadFull(fr.r, hdr[:])
	if fr.result {
		if n == 0 && errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		if err == nil || n > 0 {
			return 0, nil, malformed("data after the result record")
		}
		return 0, nil, err
	}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, ErrNoResult
		}
		return 0, nil, err
	}
	typ, size := hdr[0], binary.BigEndian.Uint32(hdr[1:])
	var limit uint32
	switch typ {
	case RecTar, RecIndex:
		limit = maxData
	case RecProgress:
		if size != 16 {
			return 0, nil, malformed("progress record of %d bytes, want 16", size)
		}
		limit = 16
	case RecLog:
		fr.logs++
		if fr.logs > maxLogs {
			return 0, nil, malformed("more than %d log records", maxLogs)
		}
		limit = maxLog
	case RecResult:
		limit = maxResult
	default:
		return 0, nil, malformed("unknown record type 0x%02x", typ)
	}
	if size > limit {
		return 0, nil, malformed("record type %q of %d bytes, limit %d", typ, size, limit)
	}
	if cap(fr.buf) < int(size)+4 {
		fr.buf = make([]byte, int(size)+4)
	}
	b := fr.buf[:int(size)+4]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("%w (cut inside a record)", ErrNoResult)
		}
		return 0, nil, err
	}
	payload := b[:size]
	crc := crc32.Update(crc32.Update(0, crcTable, hdr[:]), crcTable, payload)
	if got := binary.BigEndian.Uint32(b[size:]); got != crc {
		return 0, nil, malformed("record type %q: checksum %08x, want %08x", typ, got, crc)
	}
	if typ == RecResult {
		fr.result = true
	}
	return typ, payload, nil
}
