// Package store defines where backups are kept. A Store holds objects under
// slash-separated keys such as "host1/nova-volumes/volume-1/2026-11-25T013000Z/p1.tar.zst".
//
// The contract every implementation keeps (store/storetest checks it):
//   - Put is atomic: after an error nothing is visible under the key, after
//     success the whole object is; a reader never sees a partial object.
//   - Read-after-write: an object is visible to Get and List once Put returns.
//   - List returns every object under a prefix, recursively, sorted by key.
//   - Delete of a missing key is not an error.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned by Get and Stat for a missing key.
var ErrNotFound = errors.New("object not found")

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
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
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

// Space is implemented by stores that know their free space.
type Space interface {
	// Usage returns the bytes free and total of the filesystem holding the store.
	Usage(ctx context.Context) (free, total int64, err error)
}

// TempRemover is implemented by stores where a killed writer can leave
// half-written data behind (temporary files, multipart uploads).
type TempRemover interface {
	// RemoveTemp removes what unfinished writes left under prefix.
	RemoveTemp(ctx context.Context, prefix string) error
}

type sizeHintKey struct{}

// WithSizeHint tells a Put under ctx that the object will hold at most n
// bytes (a partition's size bounds its archive), so a store with per-part
// limits can size its parts up front. A store may ignore it.
func WithSizeHint(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, sizeHintKey{}, n)
}

// SizeHint returns the bound WithSizeHint set, if any.
func SizeHint(ctx context.Context) (int64, bool) {
	n, ok := ctx.Value(sizeHintKey{}).(int64)
	return n, ok && n > 0
}
