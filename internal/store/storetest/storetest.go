// Package storetest is the contract every store.Store must pass.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
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
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("source failed") }
