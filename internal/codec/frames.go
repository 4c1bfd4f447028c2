package codec

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"io"
)

// Frame is one independently decodable piece of a compressed stream: the
// stream's bytes [COff, COff+CSize) decode, alone, to the uncompressed
// bytes [UOff, UOff+USize). A reader that knows the frames can start
// anywhere: it reads the frame holding an uncompressed offset, checks its
// hash and decodes it. zstd streams are cut into frames anyway (see
// FrameSize); an uncompressed stream is cut into chunks of FrameSize, its
// own frames. gzip streams have none: they are read from the start.
type Frame struct {
	COff, CSize int64
	UOff, USize int64
	SHA256      [sha256.Size]byte // of the frame's stored (compressed) bytes
}

// Framer is implemented by the writers NewWriter returns for streams that
// have frames. Frames is complete once Close returned.
type Framer interface {
	Frames() []Frame
}

// Seekable reports whether streams of compression c have frames.
func Seekable(c string) bool { return c == Zstd || c == None }

// The zstd seekable format's seek table
// (https://github.com/facebook/zstd/blob/dev/contrib/seekable_format/zstd_seekable_compression_format.md):
// a skippable frame, which every zstd decoder passes over, holding one
// {compressed size, decompressed size} pair per frame and a footer.
const (
	skippableMagic = 0x184D2A5E
	seekableMagic  = 0x8F92EAB1
	seekFooterSize = 9
	seekEntrySize  = 8
)

// seekTable encodes frames as the zstd seekable format's seek table
// frame, without per-frame checksums (the file index holds SHA-256s).
func seekTable(frames []Frame) []byte {
	n := len(frames)
	size := n*seekEntrySize + seekFooterSize
	b := make([]byte, 8, 8+size)
	binary.LittleEndian.PutUint32(b, skippableMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(size))
	for _, f := range frames {
		b = binary.LittleEndian.AppendUint32(b, uint32(f.CSize))
		b = binary.LittleEndian.AppendUint32(b, uint32(f.USize))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = append(b, 0) // descriptor: no checksums
	return binary.LittleEndian.AppendUint32(b, seekableMagic)
}

// ParseSeekTable decodes the seek table that ends a zstd stream written
// by NewWriter, given the stream's last bytes (at least the table; the
// table's length is in its footer, see SeekTableSize). It returns the
// frames with their offsets.
func ParseSeekTable(tail []byte) ([]Frame, error) {
	if len(tail) < seekFooterSize+8 {
		return nil, errSeekTable("too short")
	}
	foot := tail[len(tail)-seekFooterSize:]
	if binary.LittleEndian.Uint32(foot[5:]) != seekableMagic {
		return nil, errSeekTable("no seekable magic at the end")
	}
	if foot[4]&0x7c != 0 {
		return nil, errSeekTable("reserved descriptor bits set")
	}
	esize := seekEntrySize
	if foot[4]&0x80 != 0 {
		esize += 4
	}
	n := int(binary.LittleEndian.Uint32(foot))
	size := n*esize + seekFooterSize
	if n < 0 || size+8 > len(tail) {
		return nil, errSeekTable("frame count does not fit")
	}
	t := tail[len(tail)-size-8:]
	if binary.LittleEndian.Uint32(t) != skippableMagic || int(binary.LittleEndian.Uint32(t[4:])) != size {
		return nil, errSeekTable("bad skippable frame header")
	}
	frames := make([]Frame, n)
	var c, u int64
	for i := range frames {
		e := t[8+i*esize:]
		f := Frame{COff: c, UOff: u, CSize: int64(binary.LittleEndian.Uint32(e)), USize: int64(binary.LittleEndian.Uint32(e[4:]))}
		c += f.CSize
		u += f.USize
		frames[i] = f
	}
	return frames, nil
}

// SeekTableSize is the length of the seek table frame of n frames.
func SeekTableSize(n int) int64 { return int64(8 + n*seekEntrySize + seekFooterSize) }

type errSeekTable string

func (e errSeekTable) Error() string { return "zstd seek table: " + string(e) }

// chunker is the "compressor" of an uncompressed stream: it passes the
// bytes through and records FrameSize chunks as frames.
type chunker struct {
	w      io.Writer
	frames []Frame
	cur    Frame
	h      hash.Hash
}

func (c *chunker) Write(p []byte) (int, error) {
	if c.h == nil {
		c.h = sha256.New()
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), FrameSize-int(c.cur.USize))
		m, err := c.w.Write(p[:k])
		c.h.Write(p[:m])
		c.cur.USize += int64(m)
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
		if c.cur.USize == FrameSize {
			c.cut()
		}
	}
	return n, nil
}

func (c *chunker) cut() {
	c.cur.CSize = c.cur.USize
	copy(c.cur.SHA256[:], c.h.Sum(nil))
	c.frames = append(c.frames, c.cur)
	off := c.cur.UOff + c.cur.USize
	c.cur = Frame{COff: off, UOff: off}
	c.h.Reset()
}

func (c *chunker) Close() error {
	if c.cur.USize > 0 {
		c.cut()
	}
	return nil
}

func (c *chunker) Frames() []Frame { return c.frames }
