package store

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// CheckRange checks the range off, n (as RangeReader.GetRange takes it) of
// an object of size bytes, and returns the range's length: n, or what
// follows off when n < 0. A range past the object's end is an error
// wrapping ErrRange.
func CheckRange(size, off, n int64) (int64, error) {
	switch {
	case off < 0:
		return 0, fmt.Errorf("invalid range: offset %d", off)
	case off > size:
		return 0, fmt.Errorf("offset %d of %d bytes: %w", off, size, ErrRange)
	case n < 0:
		return size - off, nil
	case n > size-off:
		return 0, fmt.Errorf("%d bytes at offset %d of %d: %w", n, off, size, ErrRange)
	}
	return n, nil
}

// ReadRange opens the n bytes of key at offset off, with the semantics of
// RangeReader.GetRange. It uses the first RangeReader in st's chain (As);
// a store without one is read with Get, reading and dropping the first off
// bytes. Then a range that ends past the object's end is found out only
// when the reader gets there: its Read returns the error wrapping ErrRange.
func ReadRange(ctx context.Context, st Store, key string, off, n int64) (io.ReadCloser, error) {
	if rr, ok := As[RangeReader](st); ok {
		return rr.GetRange(ctx, key, off, n)
	}
	return getRange(ctx, st.Get, key, off, n)
}

// getRange reads a range with get, a store's Get: it reads and drops the
// bytes before off.
func getRange(ctx context.Context, get func(context.Context, string) (io.ReadCloser, error), key string, off, n int64) (io.ReadCloser, error) {
	if off < 0 {
		return nil, fmt.Errorf("%s: invalid range: offset %d", key, off)
	}
	rc, err := get(ctx, key)
	if err != nil {
		return nil, err
	}
	skipped, err := io.CopyN(io.Discard, ContextReader(ctx, rc), off)
	if err != nil {
		rc.Close()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: offset %d of %d bytes: %w", key, off, skipped, ErrRange)
		}
		return nil, fmt.Errorf("%s: skip to offset %d: %w", key, off, err)
	}
	if n < 0 {
		return rc, nil
	}
	return &exactReader{rc: rc, key: key, off: off, n: n, left: n}, nil
}

// exactReader yields the n bytes of a range and then io.EOF; an object that
// ends sooner is an error wrapping ErrRange.
type exactReader struct {
	rc     io.ReadCloser
	key    string
	off, n int64
	left   int64
}

func (r *exactReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	k, err := r.rc.Read(p)
	r.left -= int64(k)
	switch {
	case r.left == 0:
		return k, nil
	case err == io.EOF:
		return k, fmt.Errorf("%s: %d bytes at offset %d of %d: %w", r.key, r.n, r.off, r.off+r.n-r.left, ErrRange)
	}
	return k, err
}

func (r *exactReader) Close() error { return r.rc.Close() }

// ReaderAt reads one object of a store at any offset: each ReadAt is one
// ranged read (ReadRange) of the bytes it asks for. It caches nothing, so
// a caller that reads small pieces puts its own buffering in front.
//
// It keeps the context it was made with, as io.ReaderAt has no place for
// one: its reads end when that context is done.
type ReaderAt struct {
	ctx  context.Context
	st   Store
	key  string
	size int64
}

var _ io.ReaderAt = (*ReaderAt)(nil)

// NewReaderAt reads key of st, an object of size bytes (from Stat, a
// listing or a manifest). An object that turns out shorter fails the reads
// past its end with an error wrapping ErrRange.
func NewReaderAt(ctx context.Context, st Store, key string, size int64) *ReaderAt {
	return &ReaderAt{ctx: ctx, st: st, key: key, size: size}
}

// Size is the object's size, as given to NewReaderAt.
func (r *ReaderAt) Size() int64 { return r.size }

// ReadAt implements io.ReaderAt: it reads len(p) bytes at off, fewer only
// at the object's end (with io.EOF). It is safe for concurrent use.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: invalid offset %d", r.key, off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	want := min(int64(len(p)), r.size-off)
	rc, err := ReadRange(r.ctx, r.st, r.key, off, want)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	k, err := io.ReadFull(rc, p[:want])
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%s: %d bytes at offset %d: the object ended after %d: %w", r.key, want, off, k, ErrRange)
	}
	if err != nil {
		return k, err
	}
	if want < int64(len(p)) {
		return k, io.EOF
	}
	return k, nil
}
