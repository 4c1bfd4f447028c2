package storetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"voltar/internal/store"
)

// Memory is a store.Store in memory, for unit tests that need a store but
// not its medium. It keeps the contract (Run checks it); Now, when set,
// stamps the objects' modification times.
type Memory struct {
	Now func() time.Time

	mu   sync.Mutex
	objs map[string]memObject
}

type memObject struct {
	data []byte
	mod  time.Time
}

var (
	_ store.Store       = (*Memory)(nil)
	_ store.RangeReader = (*Memory)(nil)
)

// NewMemory returns an empty memory store.
func NewMemory() *Memory { return &Memory{objs: map[string]memObject{}} }

func (m *Memory) String() string { return "memory" }

// Put implements store.Store: the object appears only once r is read to
// its end without error.
func (m *Memory) Put(ctx context.Context, key string, r io.Reader, _ store.PutOptions) (int64, error) {
	if err := store.CheckKey(key); err != nil {
		return 0, err
	}
	data, err := io.ReadAll(store.ContextReader(ctx, r))
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	now := time.Now()
	if m.Now != nil {
		now = m.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = memObject{data, now}
	return int64(len(data)), nil
}

// Get implements store.Store.
func (m *Memory) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, store.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

// GetRange implements store.RangeReader.
func (m *Memory) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, store.ErrNotFound)
	}
	n, err := store.CheckRange(int64(len(o.data)), off, n)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return io.NopCloser(bytes.NewReader(o.data[off : off+n])), nil
}

// Stat implements store.Store.
func (m *Memory) Stat(ctx context.Context, key string) (store.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return store.Object{}, fmt.Errorf("stat %s: %w", key, store.ErrNotFound)
	}
	return store.Object{Key: key, Size: int64(len(o.data)), ModTime: o.mod}, nil
}

// List implements store.Store.
func (m *Memory) List(ctx context.Context, prefix string) ([]store.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Object
	for k, o := range m.objs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, store.Object{Key: k, Size: int64(len(o.data)), ModTime: o.mod})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements store.Store.
func (m *Memory) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}

// Keys returns every key held, sorted.
func (m *Memory) Keys() []string {
	objs, _ := m.List(context.Background(), "")
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	return keys
}
