// Package storetest is the contract every store.Store must pass.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"voltar/internal/store"
)

// Run checks s against the store contract. s must be empty.
func Run(t *testing.T, s store.Store) {
	ctx := context.Background()
	t.Run("put-get", func(t *testing.T) {
		data := bytes.Repeat([]byte("voltar"), 300000)
		n, err := s.Put(ctx, "h/vg/vol/ts1/p1.tar.zst", bytes.NewReader(data), store.PutOptions{})
		if err != nil || n != int64(len(data)) {
			t.Fatalf("Put = %d, %v; want %d, nil", n, err, len(data))
		}
		rc, err := s.Get(ctx, "h/vg/vol/ts1/p1.tar.zst")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get returned %d bytes (err %v), want %d equal bytes", len(got), err, len(data))
		}
		obj, err := s.Stat(ctx, "h/vg/vol/ts1/p1.tar.zst")
		if err != nil || obj.Size != int64(len(data)) {
			t.Fatalf("Stat = %+v, %v", obj, err)
		}
	})
	t.Run("failed-put-leaves-nothing", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader("partial data"), errReader{})
		if _, err := s.Put(ctx, "h/vg/vol/ts2/p1.tar.zst", r, store.PutOptions{}); err == nil {
			t.Fatal("Put of a failing reader succeeded")
		}
		if _, err := s.Stat(ctx, "h/vg/vol/ts2/p1.tar.zst"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Stat after failed Put: %v, want ErrNotFound", err)
		}
		objs, err := s.List(ctx, "h/vg/vol/ts2/")
		if err != nil || len(objs) != 0 {
			t.Fatalf("List after failed Put = %v, %v; want nothing", objs, err)
		}
	})
	t.Run("list", func(t *testing.T) {
		for _, k := range []string{"h/vg/vol/ts1/SHA256SUMS", "h/vg/vol/ts1/manifest.json", "h/vg/vol2/ts1/manifest.json", "h/vg/volume/ts1/x"} {
			if _, err := s.Put(ctx, k, strings.NewReader(k), store.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		objs, err := s.List(ctx, "h/vg/vol/")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range objs {
			keys = append(keys, o.Key)
		}
		want := "h/vg/vol/ts1/SHA256SUMS h/vg/vol/ts1/manifest.json h/vg/vol/ts1/p1.tar.zst"
		if strings.Join(keys, " ") != want {
			t.Fatalf("List(h/vg/vol/) = %v, want %s", keys, want)
		}
		all, err := s.List(ctx, "")
		if err != nil || len(all) != 5 {
			t.Fatalf("List(\"\") = %d objects, %v; want 5", len(all), err)
		}
	})
	t.Run("get-missing", func(t *testing.T) {
		if _, err := s.Get(ctx, "h/none"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := s.Delete(ctx, "h/vg/vol2/ts1/manifest.json"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "h/vg/vol2/ts1/manifest.json"); err != nil {
			t.Fatalf("second Delete: %v, want nil", err)
		}
		if objs, _ := s.List(ctx, "h/vg/vol2/"); len(objs) != 0 {
			t.Fatalf("deleted object still listed: %v", objs)
		}
	})
	t.Run("bad-keys", func(t *testing.T) {
		for _, k := range []string{"", "../x", "a/../../x", "/abs"} {
			if _, err := s.Put(ctx, k, strings.NewReader("x"), store.PutOptions{}); err == nil {
				t.Errorf("Put(%q) succeeded, want error", k)
			}
		}
	})
	t.Run("ranged-read", func(t *testing.T) { runRanged(t, s) })
}

// runRanged checks ranged reads (store.ReadRange) of an object of a few
// MiB, and removes it again.
func runRanged(t *testing.T, s store.Store) {
	ctx := context.Background()
	const key = "h/vg/vol/ts3/p2.tar.zst"
	data := make([]byte, 2<<20+12345)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	if _, err := s.Put(ctx, key, bytes.NewReader(data), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("delete %s: %v", key, err)
		}
	})
	size := int64(len(data))
	for _, tc := range []struct {
		name   string
		off, n int64
	}{
		{"start", 0, 100},
		{"middle", 12345, 54321},
		{"end", size - 100, 100},
		{"end-open", size - 100, -1},
		{"across-1MiB", 1<<20 - 10, 20},
		{"across-1MiB-and-2MiB", 1<<20 - 1, 1<<20 + 2},
		{"one-byte", 1 << 20, 1},
		{"last-byte", size - 1, 1},
		{"zero-length", 500, 0},
		{"zero-length-at-start", 0, 0},
		{"zero-length-at-end", size, 0},
		{"open-at-end", size, -1},
		{"whole", 0, size},
		{"whole-open", 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			end := size
			if tc.n >= 0 {
				end = tc.off + tc.n
			}
			got, _, err := readRange(ctx, s, key, tc.off, tc.n)
			if err != nil {
				t.Fatalf("ReadRange(%d, %d): %v", tc.off, tc.n, err)
			}
			if want := data[tc.off:end]; !bytes.Equal(got, want) {
				t.Fatalf("ReadRange(%d, %d) returned %d bytes, want %d equal bytes", tc.off, tc.n, len(got), len(want))
			}
		})
	}
	// A range that starts past the end fails when it is opened; one that
	// ends past it may fail only when the reader gets there.
	for _, tc := range []struct {
		name   string
		off, n int64
		atOpen bool
	}{
		{"past-end", size + 1, 1, true},
		{"past-end-open", size + 1, -1, true},
		{"past-end-zero-length", size + 1, 0, true},
		{"far-past-end", 1 << 40, 10, true},
		{"at-end", size, 1, false},
		{"across-end", size - 10, 11, false},
		{"whole-and-one", 0, size + 1, false},
		{"huge-length", 10, math.MaxInt64, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, atOpen, err := readRange(ctx, s, key, tc.off, tc.n)
			if !errors.Is(err, store.ErrRange) {
				t.Fatalf("ReadRange(%d, %d) = %d bytes, %v; want ErrRange", tc.off, tc.n, len(got), err)
			}
			if tc.atOpen && !atOpen {
				t.Errorf("ReadRange(%d, %d) opened, then failed: %v; want it not to open", tc.off, tc.n, err)
			}
		})
	}
	t.Run("negative-offset", func(t *testing.T) {
		if _, _, err := readRange(ctx, s, key, -1, 10); err == nil || errors.Is(err, store.ErrRange) {
			t.Fatalf("ReadRange(-1, 10) = %v, want an invalid range", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		for _, n := range []int64{10, 0, -1} {
			if _, _, err := readRange(ctx, s, "h/none", 0, n); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ReadRange(missing, 0, %d) = %v, want ErrNotFound", n, err)
			}
		}
	})
	t.Run("bad-key", func(t *testing.T) {
		if _, _, err := readRange(ctx, s, "../x", 0, 1); err == nil {
			t.Fatal("ReadRange(../x) succeeded, want error")
		}
	})
	t.Run("reader-at", func(t *testing.T) {
		ra := store.NewReaderAt(ctx, s, key, size)
		p := make([]byte, 1000)
		if k, err := ra.ReadAt(p, 1<<20-500); k != len(p) || err != nil || !bytes.Equal(p, data[1<<20-500:1<<20+500]) {
			t.Errorf("ReadAt across 1 MiB = %d, %v (equal %v)", k, err, bytes.Equal(p[:k], data[1<<20-500:1<<20-500+k]))
		}
		if k, err := ra.ReadAt(p, size-10); k != 10 || err != io.EOF || !bytes.Equal(p[:10], data[size-10:]) {
			t.Errorf("ReadAt at the end = %d, %v; want 10, EOF", k, err)
		}
		if k, err := ra.ReadAt(p, size); k != 0 || err != io.EOF {
			t.Errorf("ReadAt past the end = %d, %v; want 0, EOF", k, err)
		}
		sr := io.NewSectionReader(ra, 0, ra.Size())
		if got, err := io.ReadAll(sr); err != nil || !bytes.Equal(got, data) {
			t.Errorf("reading it all through a SectionReader: %d bytes, %v; want %d equal bytes", len(got), err, len(data))
		}
		// An object shorter than its caller thinks.
		long := store.NewReaderAt(ctx, s, key, size+100)
		if k, err := long.ReadAt(p[:20], size-10); !errors.Is(err, store.ErrRange) {
			t.Errorf("ReadAt past the real end = %d, %v; want ErrRange", k, err)
		}
	})
}

// readRange reads the range off, n of key, and says whether an error came
// from opening it.
func readRange(ctx context.Context, s store.Store, key string, off, n int64) (got []byte, atOpen bool, err error) {
	rc, err := store.ReadRange(ctx, s, key, off, n)
	if err != nil {
		return nil, true, err
	}
	defer rc.Close()
	got, err = io.ReadAll(rc)
	if err == nil && n >= 0 && int64(len(got)) != n {
		err = fmt.Errorf("read %d bytes of a range of %d", len(got), n)
	}
	return got, false, err
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("source failed") }
