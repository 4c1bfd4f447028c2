// Package objio is how bytes become a stored object and come back: the one
// write pipeline and the one read pipeline every kind of object goes
// through (filesystem archives, raw partitions, dumps, and the kinds to
// come).
//
//	write: data -> compressor -> [age] -> SHA-256 + count -> io.Pipe -> store.Put
//	read:  store.Get -> SHA-256 + count -> [age] -> decompressor -> data
//
// The recorded SHA-256 is always that of the stored bytes, so `sha256sum -c
// SHA256SUMS` checks an object without voltar, and a reader verifies an
// object in the same single pass that decodes it.
package objio

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"path"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"voltar/internal/codec"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/layout"
	"voltar/internal/store"
)

// Encoding is how objects are encoded on their way into the store.
type Encoding struct {
	Compression string // codec.Zstd (also for ""), codec.Gzip or codec.None
	Level       int    // 0: the codec's default
	Threads     int    // compressor threads, 0: all cores (codec.Threads)
	// Recipients, when set, age-encrypt every object (named *.age).
	Recipients *crypt.Recipients
	// Frame is the input size of one zstd frame; 0 picks it by Threads
	// (see codec.NewWriterFrames).
	Frame int
}

// Small is e for a small object written beside a big one (a file index
// beside its archive): one compressor thread and small frames, so it
// adds little memory.
func (e Encoding) Small() Encoding {
	e.Threads, e.Frame = 1, codec.SmallFrame
	return e
}

// Object names the object of filesystem fs of the given kind as this
// encoding writes it: p1.tar.zst, p2.raw.zst.age, dump.sql.zst.
func (e Encoding) Object(fs string, kind layout.Kind) string {
	return layout.Object{FS: fs, Kind: kind, Compression: e.Compression, Encrypted: e.Recipients != nil}.Name()
}

// Sum is what was written of an object: its stored bytes and their SHA-256.
type Sum struct {
	Bytes  int64
	SHA256 string // hex
}

// Encoder compresses, optionally encrypts, counts and hashes what is
// written to it on its way to an io.Writer. The caller must call Close
// (the stream is complete) or Abort (it is not); neither closes w.
type Encoder struct {
	out *sink
	ew  io.WriteCloser // age, or nil
	cw  io.WriteCloser // the compressor
}

// NewEncoder starts an encoder writing into w.
func NewEncoder(w io.Writer, e Encoding) (*Encoder, error) {
	out := &sink{w: w, hash: sha256.New()}
	enc := &Encoder{out: out}
	var stored io.Writer = out
	if e.Recipients != nil {
		ew, err := e.Recipients.Encrypt(out)
		if err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
		enc.ew, stored = ew, ew
	}
	c := e.Compression
	if c == "" {
		c = codec.Zstd // as Object names it
	}
	cw, err := codec.NewWriterFrames(stored, c, e.Level, e.Threads, e.Frame)
	if err != nil {
		return nil, err
	}
	enc.cw = cw
	return enc, nil
}

// Write compresses p into the stream.
func (e *Encoder) Write(p []byte) (int, error) { return e.cw.Write(p) }

// Close flushes the compressor and the encryption and returns what went
// to w.
func (e *Encoder) Close() (Sum, error) {
	if err := e.cw.Close(); err != nil {
		return Sum{}, fmt.Errorf("compress: %w", err)
	}
	if e.ew != nil {
		if err := e.ew.Close(); err != nil {
			return Sum{}, fmt.Errorf("encrypt: %w", err)
		}
	}
	return Sum{Bytes: e.out.n, SHA256: hex.EncodeToString(e.out.hash.Sum(nil))}, nil
}

// Frames lists the frames of the compressed stream (before encryption:
// offsets are in the decrypted stream) once Close returned; nil for a
// compression without frames (gzip). See codec.Frame.
func (e *Encoder) Frames() []codec.Frame {
	if f, ok := e.cw.(codec.Framer); ok {
		return f.Frames()
	}
	return nil
}

// Abort cuts the encoder off from w: from now on no byte reaches w, so
// compressor goroutines cannot touch it once Abort returned. Closing the
// compressor would first compress what is pending, which would delay a
// cancel, so it finishes alone in the background. Abort returns the bytes
// that reached w.
func (e *Encoder) Abort() int64 {
	n := e.out.abort()
	go e.cw.Close()
	return n
}

// sink counts and hashes the bytes w takes. After abort, no write reaches
// w any more.
type sink struct {
	mu      sync.Mutex
	w       io.Writer
	hash    hash.Hash
	n       int64
	aborted bool
}

var errAborted = errors.New("object write aborted")

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		return 0, errAborted
	}
	n, err := s.w.Write(p)
	s.hash.Write(p[:n])
	s.n += int64(n)
	return n, err
}

// abort waits for a write in progress and returns the bytes written.
func (s *sink) abort() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = true
	return s.n
}

// Writer streams one object into a store: an Encoder whose output is piped
// into store.Put. The object appears in the store only on Commit; after
// Abort (or a failed Commit) nothing is left under its key, as the Store
// contract promises for a Put whose reader failed. The caller must call
// Commit or Abort exactly once.
type Writer struct {
	st   store.Store
	key  string
	enc  *Encoder
	pw   *io.PipeWriter
	put  chan putResult
	done bool
	// aborted is set before the pipe is closed with an error: a Put that
	// failed before it was set failed on its own (the store is to blame),
	// one that failed after it only passes the abort on.
	aborted atomic.Bool
}

type putResult struct {
	n   int64
	err error
	own bool // Put failed before the writer aborted it
}

// Create starts writing the object key into st.
func Create(ctx context.Context, st store.Store, key string, e Encoding, opts store.PutOptions) (*Writer, error) {
	pr, pw := io.Pipe()
	w := &Writer{st: st, key: key, pw: pw, put: make(chan putResult, 1)}
	go func() {
		n, err := st.Put(ctx, key, pr, opts)
		own := err != nil && !w.aborted.Load()
		pr.CloseWithError(err) // a Put that gave up early must not block the writer
		w.put <- putResult{n, err, own}
	}()
	enc, err := NewEncoder(pw, e)
	if err != nil {
		w.aborted.Store(true)
		pw.CloseWithError(err)
		<-w.put
		return nil, err
	}
	w.enc = enc
	return w, nil
}

// Name is the object's name in its folder.
func (w *Writer) Name() string { return path.Base(w.key) }

// Frames lists the object's frames after a successful Commit (see
// Encoder.Frames).
func (w *Writer) Frames() []codec.Frame { return w.enc.Frames() }

// Write encodes p into the object.
func (w *Writer) Write(p []byte) (int, error) { return w.enc.Write(p) }

// Commit completes the stream and waits for the store to keep it. A store
// that failed is reported as a StoreError naming the object; an encoder
// that failed as itself. Either way nothing is left under the key.
func (w *Writer) Commit() (Sum, error) {
	w.done = true
	sum, err := w.enc.Close()
	if err != nil {
		if serr := w.abort(err); serr != nil {
			return Sum{}, serr
		}
		return Sum{}, err
	}
	w.pw.Close()
	res := <-w.put
	if res.err != nil {
		return Sum{}, StoreError(w.st, w.Name(), res.err)
	}
	if res.n != sum.Bytes {
		return Sum{}, fmt.Errorf("store kept %d bytes of %s, %d were written", res.n, w.Name(), sum.Bytes)
	}
	return sum, nil
}

// Abort gives up the object because of cause (the source failed, ctx was
// cancelled, the data was found incomplete) and waits until the store let
// go of it. It returns a StoreError when the store had failed on its own
// before the abort: then the store, not cause, is why the write failed
// (the source's error is often only the pipe's report of it). Otherwise it
// returns nil and cause is the caller's to report.
func (w *Writer) Abort(cause error) error {
	if w.done {
		return nil
	}
	w.done = true
	return w.abort(cause)
}

func (w *Writer) abort(cause error) error {
	if cause == nil {
		cause = errAborted
	}
	w.aborted.Store(true)
	// Close the pipe first: it releases a compressor goroutine blocked in a
	// write to it (a store that stopped reading), which cutting the
	// encoder off would otherwise wait for.
	w.pw.CloseWithError(cause)
	w.enc.Abort()
	if res := <-w.put; res.own {
		return StoreError(w.st, w.Name(), res.err)
	}
	return nil
}

// StoreError names the object a store failed to write, with a hint by the
// kind of failure: full, not writable (a mkdir or create refused:
// "operation not permitted", "permission denied"), read-only,
// unreachable, or else what to check. An error that brings its own hint
// (an S3 store's explanation) keeps it and gets no second one.
func StoreError(st store.Store, name string, err error) error {
	err = fmt.Errorf("store %s: %w", name, err)
	var netErr net.Error
	switch {
	case errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT):
		return fail.Hint(err, "the destination %s is full: free space, prune old backups (voltar prune) or move the store", st)
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return fail.Hint(err, "voltar may not write into %s: check the owner and mode of its directories, "+
			"immutable or append-only attributes (lsattr), and SELinux or AppArmor rules for voltar", st)
	case errors.Is(err, unix.EROFS):
		return fail.Hint(err, "the filesystem holding %s is mounted read-only: check dmesg for I/O errors, then remount it read-write", st)
	case len(fail.Hints(err)) > 0, errors.Is(err, context.Canceled):
		return err
	case errors.As(err, &netErr):
		return fail.Hint(err, "%s did not answer: check store.endpoint, the network and that the S3 server runs", st)
	}
	return fail.Hint(err, "check that %s is reachable and writable (voltar's log has the details), then run voltar again", st)
}
