package storetest

import (
	"context"
	"io"
	"strings"
	"sync"

	"voltar/internal/store"
)

// Op names a store.Store method, for Fault.Op and Faulty.Observe.
type Op string

// The store operations a fault can hit.
const (
	OpPut    Op = "put"
	OpGet    Op = "get"
	OpStat   Op = "stat"
	OpList   Op = "list"
	OpDelete Op = "delete"
	// OpGetRange is a ranged read (store.ReadRange, GetRange); the faults
	// of OpGet do not hit it.
	OpGetRange Op = "get-range"
)

// Fault is one fault a Faulty store injects: which calls it hits, and what
// happens to them.
type Fault struct {
	// Op, KeySuffix and Nth select the calls: of Op, on keys (List:
	// prefixes) ending in KeySuffix, the Nth such call counting from 1, or
	// every one when Nth is 0.
	Op        Op
	KeySuffix string
	Nth       int

	// Err fails the call: Put after it took AfterBytes of its source
	// (a disk that fills up, a connection that drops mid-upload), so
	// nothing is stored; the reader of Get or GetRange after AfterBytes
	// bytes (of the range); the other operations at once.
	Err        error
	AfterBytes int64
	// Cancel, for Get and GetRange, is called once AfterBytes bytes were
	// read, and the read goes on: an interrupt in the middle of a transfer.
	Cancel context.CancelFunc
	// Corrupt, for Get and GetRange, flips the bits of the byte at offset
	// CorruptAt of the object (when a range holds it): an object damaged
	// at rest.
	Corrupt   bool
	CorruptAt int64
	// DropPage, for List, leaves out the objects of the DropPage-th page
	// (from 1) of PageSize objects: a lost page of a paged listing.
	DropPage, PageSize int
}

// Faulty wraps a store and injects faults into the calls they select, for
// tests of what the store's users do when it fails. The first matching
// fault applies; calls no fault selects go to the wrapped store unchanged.
// Unwrap reaches the wrapped store, so its optional interfaces
// (store.Space, store.TempRemover, store.Preflighter) stay visible to
// store.As; ranged reads go through Faulty's own GetRange, which reads the
// wrapped store with store.ReadRange.
type Faulty struct {
	store.Store
	// Observe, when set, sees every call before it is made (a test may
	// record, say, a Put's size hint).
	Observe func(c Call)

	mu     sync.Mutex
	faults []*Fault
	calls  map[*Fault]int
}

var (
	_ store.Store       = (*Faulty)(nil)
	_ store.Unwrapper   = (*Faulty)(nil)
	_ store.RangeReader = (*Faulty)(nil)
)

// NewFaulty wraps st with faults.
func NewFaulty(st store.Store, faults ...*Fault) *Faulty {
	return &Faulty{Store: st, faults: faults, calls: map[*Fault]int{}}
}

// Unwrap implements store.Unwrapper.
func (f *Faulty) Unwrap() store.Store { return f.Store }

// Call is one call of a Faulty store, as Observe sees it.
type Call struct {
	Ctx    context.Context
	Op     Op
	Key    string
	Put    store.PutOptions // of a Put
	Off, N int64            // of a GetRange: its range
}

// fault returns the fault that hits this call, if any.
func (f *Faulty) fault(ctx context.Context, op Op, key string) *Fault {
	return f.faultOf(Call{Ctx: ctx, Op: op, Key: key})
}

func (f *Faulty) faultOf(c Call) *Fault {
	op, key := c.Op, c.Key
	if f.Observe != nil {
		f.Observe(c)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ft := range f.faults {
		if ft.Op != op || !strings.HasSuffix(key, ft.KeySuffix) {
			continue
		}
		f.calls[ft]++
		if ft.Nth == 0 || ft.Nth == f.calls[ft] {
			return ft
		}
	}
	return nil
}

// Put implements store.Store.
func (f *Faulty) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (int64, error) {
	if ft := f.faultOf(Call{Ctx: ctx, Op: OpPut, Key: key, Put: opts}); ft != nil && ft.Err != nil {
		n, _ := io.CopyN(io.Discard, r, ft.AfterBytes)
		return n, ft.Err
	}
	return f.Store.Put(ctx, key, r, opts)
}

// Get implements store.Store.
func (f *Faulty) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	ft := f.fault(ctx, OpGet, key)
	if ft != nil && ft.Err != nil && ft.AfterBytes == 0 && ft.Cancel == nil {
		return nil, ft.Err
	}
	rc, err := f.Store.Get(ctx, key)
	if err != nil || ft == nil {
		return rc, err
	}
	return &faultyReader{rc: rc, ft: ft}, nil
}

// GetRange implements store.RangeReader: the wrapped store's ranged read
// (store.ReadRange), with the faults of OpGetRange.
func (f *Faulty) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	ft := f.faultOf(Call{Ctx: ctx, Op: OpGetRange, Key: key, Off: off, N: n})
	if ft != nil && ft.Err != nil && ft.AfterBytes == 0 && ft.Cancel == nil {
		return nil, ft.Err
	}
	rc, err := store.ReadRange(ctx, f.Store, key, off, n)
	if err != nil || ft == nil {
		return rc, err
	}
	return &faultyReader{rc: rc, ft: ft, start: off}, nil
}

// faultyReader carries the fault of a Get or GetRange out: it stops short
// at the byte the fault happens at, so the fault hits exactly there.
type faultyReader struct {
	rc       io.ReadCloser
	ft       *Fault
	start    int64 // the object's offset of the first byte read
	off      int64 // bytes read
	canceled bool
}

func (r *faultyReader) Read(p []byte) (int, error) {
	ft := r.ft
	if ft.Err != nil || ft.Cancel != nil {
		if r.off >= ft.AfterBytes {
			if ft.Cancel != nil && !r.canceled {
				r.canceled = true
				ft.Cancel()
			}
			if ft.Err != nil {
				return 0, ft.Err
			}
		} else if rest := ft.AfterBytes - r.off; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	n, err := r.rc.Read(p)
	if at := ft.CorruptAt - r.start; ft.Corrupt && at >= r.off && at < r.off+int64(n) {
		p[at-r.off] ^= 0xff
	}
	r.off += int64(n)
	return n, err
}

func (r *faultyReader) Close() error { return r.rc.Close() }

// Stat implements store.Store.
func (f *Faulty) Stat(ctx context.Context, key string) (store.Object, error) {
	if ft := f.fault(ctx, OpStat, key); ft != nil && ft.Err != nil {
		return store.Object{}, ft.Err
	}
	return f.Store.Stat(ctx, key)
}

// List implements store.Store.
func (f *Faulty) List(ctx context.Context, prefix string) ([]store.Object, error) {
	ft := f.fault(ctx, OpList, prefix)
	if ft != nil && ft.Err != nil {
		return nil, ft.Err
	}
	objs, err := f.Store.List(ctx, prefix)
	if err != nil || ft == nil || ft.DropPage < 1 || ft.PageSize < 1 {
		return objs, err
	}
	from := min((ft.DropPage-1)*ft.PageSize, len(objs))
	to := min(from+ft.PageSize, len(objs))
	return append(objs[:from:from], objs[to:]...), nil
}

// Delete implements store.Store.
func (f *Faulty) Delete(ctx context.Context, key string) error {
	if ft := f.fault(ctx, OpDelete, key); ft != nil && ft.Err != nil {
		return ft.Err
	}
	return f.Store.Delete(ctx, key)
}
