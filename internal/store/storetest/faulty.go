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
	// nothing is stored; Get's reader after AfterBytes bytes; the other
	// operations at once.
	Err        error
	AfterBytes int64
	// Cancel, for Get, is called once AfterBytes bytes were read, and the
	// read goes on: an interrupt in the middle of a transfer.
	Cancel context.CancelFunc
	// Corrupt, for Get, flips the bits of the byte at offset CorruptAt:
	// an object damaged at rest.
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
// store.As.
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
	_ store.Store     = (*Faulty)(nil)
	_ store.Unwrapper = (*Faulty)(nil)
)

// NewFaulty wraps st with faults.
func NewFaulty(st store.Store, faults ...*Fault) *Faulty {
	return &Faulty{Store: st, faults: faults, calls: map[*Fault]int{}}
}

// Unwrap implements store.Unwrapper.
func (f *Faulty) Unwrap() store.Store { return f.Store }

// Call is one call of a Faulty store, as Observe sees it.
type Call struct {
	Ctx context.Context
	Op  Op
	Key string
	Put store.PutOptions // of a Put
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

// faultyReader carries a Get's fault out: it stops short at the byte the
// fault happens at, so the fault hits exactly there.
type faultyReader struct {
	rc       io.ReadCloser
	ft       *Fault
	off      int64
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
	if ft.Corrupt && ft.CorruptAt >= r.off && ft.CorruptAt < r.off+int64(n) {
		p[ft.CorruptAt-r.off] ^= 0xff
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
