package store

import (
	"context"
	"io"
	"sync/atomic"
)

// Counter wraps a store and counts what is read from it: the readers Get
// and GetRange opened, and the bytes read from them. When no store in the
// chain below the Counter has a RangeReader, the bytes a ranged read
// reads and drops to get to its offset are counted too. Writes are not
// counted.
type Counter struct {
	Store
	reads, bytes atomic.Int64
}

var (
	_ Store       = (*Counter)(nil)
	_ RangeReader = (*Counter)(nil)
	_ Unwrapper   = (*Counter)(nil)
)

// NewCounter counts the reads of st.
func NewCounter(st Store) *Counter { return &Counter{Store: st} }

// Unwrap implements Unwrapper.
func (c *Counter) Unwrap() Store { return c.Store }

// Reads is the number of readers Get and GetRange opened so far.
func (c *Counter) Reads() int64 { return c.reads.Load() }

// Bytes is the number of bytes read from the store so far.
func (c *Counter) Bytes() int64 { return c.bytes.Load() }

// Get implements Store.
func (c *Counter) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := c.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	c.reads.Add(1)
	return &countingReader{rc, &c.bytes}, nil
}

// GetRange implements RangeReader.
func (c *Counter) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rr, ok := As[RangeReader](c.Store)
	if !ok {
		return getRange(ctx, c.Get, key, off, n)
	}
	rc, err := rr.GetRange(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	c.reads.Add(1)
	return &countingReader{rc, &c.bytes}, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	k, err := r.ReadCloser.Read(p)
	r.n.Add(int64(k))
	return k, err
}
