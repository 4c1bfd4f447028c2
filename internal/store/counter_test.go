package store_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"voltar/internal/store"
	"voltar/internal/store/storetest"
)

// getOnly hides the store's GetRange.
type getOnly struct{ store.Store }

func TestCounterKeepsTheContract(t *testing.T) {
	storetest.Run(t, store.NewCounter(storetest.NewMemory()))
}

// A Counter counts the bytes read through Get and GetRange, also those a
// store without GetRange reads to skip to the range, and also under
// another wrapper.
func TestCounter(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		st    store.Store
		bytes int64 // read by the ranged read
	}{
		{"ranged", storetest.NewMemory(), 4},
		{"get-only", getOnly{storetest.NewMemory()}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.st.Put(ctx, "k", strings.NewReader("0123456789"), store.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			readAll := readAll(t)
			c := store.NewCounter(tc.st)
			// Wrapped once more: ReadRange must not reach past the Counter.
			outer := storetest.NewFaulty(c)
			if got := readAll(store.ReadRange(ctx, outer, "k", 3, 4)); got != "3456" {
				t.Fatalf("ReadRange = %q", got)
			}
			if c.Reads() != 1 || c.Bytes() != tc.bytes {
				t.Errorf("after a ranged read: %d reads, %d bytes; want 1, %d", c.Reads(), c.Bytes(), tc.bytes)
			}
			if got := readAll(outer.Get(ctx, "k")); got != "0123456789" {
				t.Fatalf("Get = %q", got)
			}
			if c.Reads() != 2 || c.Bytes() != tc.bytes+10 {
				t.Errorf("after a Get: %d reads, %d bytes; want 2, %d", c.Reads(), c.Bytes(), tc.bytes+10)
			}
			if _, err := store.ReadRange(ctx, outer, "none", 0, 1); !errors.Is(err, store.ErrNotFound) || c.Reads() != 2 {
				t.Errorf("ReadRange(missing) = %v, %d reads; want ErrNotFound, still 2", err, c.Reads())
			}
		})
	}
}

// readAll returns a function that reads what Get or ReadRange opened to
// its end, and fails the test on an error.
func readAll(t *testing.T) func(io.ReadCloser, error) string {
	return func(rc io.ReadCloser, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// One ranged read per ReadAt, of the bytes it asks for.
func TestReaderAtReadsOnlyWhatItIsAskedFor(t *testing.T) {
	ctx := context.Background()
	mem := storetest.NewMemory()
	data := strings.Repeat("0123456789", 1000)
	if _, err := mem.Put(ctx, "k", strings.NewReader(data), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	c := store.NewCounter(mem)
	ra := store.NewReaderAt(ctx, c, "k", int64(len(data)))
	p := make([]byte, 16)
	if n, err := ra.ReadAt(p, 5000); n != 16 || err != nil || string(p) != data[5000:5016] {
		t.Fatalf("ReadAt = %d, %v, %q", n, err, p)
	}
	if n, err := ra.ReadAt(p, int64(len(data))-6); n != 6 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v; want 6, EOF", n, err)
	}
	if c.Reads() != 2 || c.Bytes() != 22 {
		t.Errorf("%d reads of %d bytes, want 2 of 22", c.Reads(), c.Bytes())
	}
	if _, err := ra.ReadAt(p, -1); err == nil {
		t.Error("ReadAt(-1) succeeded")
	}
}

func TestCheckRange(t *testing.T) {
	for _, tc := range []struct {
		size, off, n, want int64
		err                error
	}{
		{10, 0, 10, 10, nil},
		{10, 0, -1, 10, nil},
		{10, 4, -1, 6, nil},
		{10, 10, -1, 0, nil},
		{10, 10, 0, 0, nil},
		{10, 3, 0, 0, nil},
		{10, 10, 1, 0, store.ErrRange},
		{10, 11, -1, 0, store.ErrRange},
		{10, 11, 0, 0, store.ErrRange},
		{10, 5, 6, 0, store.ErrRange},
		{10, 5, 1 << 62, 0, store.ErrRange},
	} {
		got, err := store.CheckRange(tc.size, tc.off, tc.n)
		if got != tc.want || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("CheckRange(%d, %d, %d) = %d, %v; want %d, %v", tc.size, tc.off, tc.n, got, err, tc.want, tc.err)
		}
	}
	if _, err := store.CheckRange(10, -1, 1); err == nil || errors.Is(err, store.ErrRange) {
		t.Errorf("CheckRange(offset -1) = %v, want an invalid range", err)
	}
}
