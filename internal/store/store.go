// Package store defines where backups are kept. A Store holds objects under
// slash-separated keys such as "host1/nova-volumes/volume-1/2026-11-25T013000Z/p1.tar.zst".
//
// The contract every implementation keeps (store/storetest checks it):
//   - Put is atomic: after an error nothing is visible under the key, after
//     success the whole object is; a reader never sees a partial object.
//   - Read-after-write: an object is visible to Get and List once Put returns.
//   - List returns every object under a prefix, recursively, sorted by key.
//   - Delete of a missing key is not an error.
//   - A ranged read (RangeReader, or ReadRange for any store) returns
//     exactly the bytes asked for, or an error: never fewer without one.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// ErrNotFound is returned by Get, GetRange and Stat for a missing key.
var ErrNotFound = errors.New("object not found")

// ErrRange is wrapped by the error of a ranged read that starts or ends
// past the end of the object.
var ErrRange = errors.New("range beyond the end of the object")

// Object describes one stored object.
type Object struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Store is a place backups are written to and read from.
type Store interface {
	// Put stores everything read from r under key, atomically. It reads r to
	// EOF or to the first error; if reading or writing fails, nothing remains
	// under key. It returns the number of bytes stored.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (int64, error)
	// Get opens key for reading. The caller must Close the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes key.
	Stat(ctx context.Context, key string) (Object, error)
	// List returns all objects whose key starts with prefix.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes key.
	Delete(ctx context.Context, key string) error
	// String names the store for messages, e.g. "/srv/backup" or "s3://bucket/prefix".
	String() string
}

// RangeReader is implemented by stores that can read part of an object
// without reading what comes before it (a pread, an HTTP Range request).
// Read through ReadRange, which works with every store.
//
// A store wrapper that sees Get (fault injection, counting, retries) must
// implement GetRange as well, with ReadRange on the store it wraps: As
// reaches past a wrapper that does not, and its ranged reads would bypass it.
type RangeReader interface {
	// GetRange opens the n bytes of key that start at offset off; n < 0
	// means up to the object's end, and n == 0 an empty range. off < 0 is
	// an error, a missing key ErrNotFound, and a range that starts past
	// the object's end (off > size) an error wrapping ErrRange, all from
	// GetRange; off == size with n <= 0 is an empty range, not an error.
	// The reader yields exactly the range's bytes, never fewer without an
	// error: a range that ends past the object's end (off+n > size) is an
	// error wrapping ErrRange, from GetRange when the store knows the size
	// then (local, S3 and Memory do), else from Read at the object's end
	// (a wrapper over a store without GetRange). The caller must Close it.
	GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
}

// Space is implemented by stores that know their free space.
type Space interface {
	// Usage describes the filesystem holding the store.
	Usage(ctx context.Context) (Usage, error)
}

// Usage is a filesystem's space as df shows it: blocks reserved for root
// count neither as used nor as available.
type Usage struct {
	Size  int64 // bytes in all
	Used  int64 // bytes in use (size minus free blocks)
	Avail int64 // bytes free for unprivileged writers
}

// UsedPercent is df's Use%, unrounded: used of what is used or available.
func (u Usage) UsedPercent() float64 {
	if u.Used+u.Avail <= 0 {
		return 0
	}
	return float64(u.Used) * 100 / float64(u.Used+u.Avail)
}

// TempRemover is implemented by stores where a killed writer can leave
// half-written data behind (temporary files, multipart uploads).
type TempRemover interface {
	// RemoveTemp removes what unfinished writes left under prefix.
	RemoveTemp(ctx context.Context, prefix string) error
}

// PutOptions tell a Put what its caller knows about the object. The zero
// value knows nothing; a store may ignore any of it.
type PutOptions struct {
	// SizeHint, when > 0, is a bound on the object's size (a partition's
	// size bounds its archive), so a store with per-part limits can size
	// its parts up front.
	SizeHint int64
}

// CheckKey rejects a key that is not a clean relative slash path (empty,
// absolute, with "." or ".." elements, doubled or trailing slashes, or
// backslashes): every store maps keys to names one to one.
func CheckKey(key string) error {
	clean := path.Clean("/" + key)
	if key == "" || clean == "/" || clean[1:] != key || strings.Contains(key, "\\") {
		return fmt.Errorf("invalid object key %q", key)
	}
	return nil
}

// ContextReader stops reading once ctx is done, so a Put copying from it
// ends (and aborts) even when its source would go on.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
