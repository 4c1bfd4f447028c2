package objio

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"path"

	"voltar/internal/codec"
	"voltar/internal/crypt"
	"voltar/internal/layout"
	"voltar/internal/store"
)

// Stream reads one stored archive in a single pass: the stored bytes are
// hashed as they arrive (store.Get -> SHA-256 tee -> [age] -> decompressor
// -> tar), so a reader of Tar verifies the object without reading it twice.
// The caller must call Close; Finish tells whether the bytes were the
// expected ones.
type Stream struct {
	Name string
	// Data is the decompressed stream; Tar reads it for tar archives.
	Data io.Reader
	Tar  *tar.Reader

	raw io.ReadCloser
	tee *hashReader
	dec io.Reader // the decrypted stream of an encrypted object, else nil
	zr  io.ReadCloser
	tap *tapReader
	pos *countReader
	// inEntry: Next returned an entry whose data may be unread.
	inEntry bool
}

// Next reads the next entry's header of a tar object and returns it with
// the offset of its first header block in the tar stream. It first reads
// what the caller left of the previous entry's data: tar.Reader would skip
// it as well, but then the offset of the header after it could not be
// told (a sparse entry's stored size is not in its header).
func (s *Stream) Next() (*tar.Header, int64, error) {
	if s.inEntry {
		if _, err := io.Copy(io.Discard, s.Tar); err != nil {
			return nil, 0, err
		}
	}
	off := (s.pos.n + 511) &^ 511
	h, err := s.Tar.Next()
	s.inEntry = err == nil
	return h, off, err
}

// Pos is how many bytes of Data have been read.
func (s *Stream) Pos() int64 { return s.pos.n }

type tapReader struct {
	r io.Reader
	w io.Writer
}

func (t *tapReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if t.w != nil && n > 0 {
		t.w.Write(p[:n])
	}
	return n, err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Open starts reading the object key. Its name says how it is encoded
// (layout.ParseObject). An encrypted one (*.age) is decrypted with ids; its
// header is read at once, so an error matching crypt.ErrNoIdentity (ids is
// nil) or crypt.ErrWrongIdentity comes from Open, before anything is read
// of the data.
func Open(ctx context.Context, st store.Store, key string, ids *crypt.Identities) (*Stream, error) {
	return OpenTapped(ctx, st, key, ids, nil)
}

// OpenTapped is Open with every byte of the compressed stream (decrypted,
// not yet decompressed) also going to tap as the decompressor reads it,
// e.g. to check the stream's frames. The decompressor starts reading at
// once, so the tap is set here, not later.
func OpenTapped(ctx context.Context, st store.Store, key string, ids *crypt.Identities, tap io.Writer) (*Stream, error) {
	name := path.Base(key)
	if layout.Encrypted(name) && ids == nil {
		return nil, crypt.ErrNoIdentity
	}
	raw, err := st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	tee := &hashReader{ctx: ctx, r: raw, h: sha256.New()}
	var in io.Reader = tee
	var dec io.Reader
	if layout.Encrypted(name) {
		if dec, err = ids.Decrypt(tee); err != nil {
			raw.Close()
			return nil, fmt.Errorf("decrypt: %w", err)
		}
		in = dec
	}
	tr := &tapReader{r: in, w: tap}
	zr, err := codec.NewReader(tr, layout.Compression(name))
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("decompress: %w", err)
	}
	pos := &countReader{r: zr}
	s := &Stream{Name: name, Data: pos, raw: raw, tee: tee, dec: dec, zr: zr, tap: tr, pos: pos}
	if layout.IsTar(name) {
		s.Tar = tar.NewReader(pos)
	}
	return s, nil
}

// Digest is what was read of a stored object.
type Digest struct {
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"stored_bytes"`
	// Complete: the stored object was read to its end. A read cut short
	// (cancelled, the store failed) hashes a prefix, which says nothing
	// about the object: compare only a complete digest (verify.DigestMismatch).
	Complete bool `json:"-"`
}

// Finish reads the rest of the stream, decompressed and stored (tar padding,
// anything after the compressed data), and returns the digest of every stored
// byte. After a decompression error it still hashes the stored bytes to the
// end and returns the digest with the error, so a caller can tell a corrupt
// object from a broken decompressor.
func (s *Stream) Finish() (Digest, error) {
	_, err := io.Copy(io.Discard, s.Data)
	// The decompressors read ahead in goroutines; stop them before reading
	// the stored stream here.
	s.closeDecoder()
	if err == nil {
		// Anything after the compressed data must still decrypt, and the
		// last chunk must be there: age authenticates the stream's end.
		// (Through the tap, which sees the whole compressed stream.)
		_, err = io.Copy(io.Discard, s.tap)
	}
	if _, err2 := io.Copy(io.Discard, s.tee); err == nil {
		err = err2
	}
	d := Digest{SHA256: hex.EncodeToString(s.tee.h.Sum(nil)), Bytes: s.tee.n, Complete: s.tee.eof}
	if err != nil {
		return d, fmt.Errorf("read to end: %w", err)
	}
	return d, nil
}

// OpenStored reads the object key as stored, neither decrypted nor
// decompressed: Data is the stored bytes, hashed as they are read, for a
// check of the stored bytes alone (Finish) when they cannot be decoded.
func OpenStored(ctx context.Context, st store.Store, key string) (*Stream, error) {
	raw, err := st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	tee := &hashReader{ctx: ctx, r: raw, h: sha256.New()}
	pos := &countReader{r: tee}
	return &Stream{Name: path.Base(key), Data: pos, raw: raw, tee: tee, tap: &tapReader{r: tee}, pos: pos}, nil
}

// Close releases the stream.
func (s *Stream) Close() error {
	s.closeDecoder()
	return s.raw.Close()
}

func (s *Stream) closeDecoder() {
	if s.zr != nil {
		s.zr.Close()
		s.zr = nil
	}
}

type hashReader struct {
	ctx context.Context
	r   io.Reader
	h   hash.Hash
	n   int64
	eof bool // the stored object was read to its end
}

func (r *hashReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if err == io.EOF {
		r.eof = true
	}
	return n, err
}
