package image

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// copyRange copies the range exactly, also from tmpfs to the test's
// filesystem (where copy_file_range may refuse and the plain copy runs),
// and stops between chunks once ctx is done.
func TestCopyRange(t *testing.T) {
	srcDir := t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "voltar-copy-")
		if err == nil {
			srcDir = d
			t.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	data := make([]byte, 3<<20+123)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	sp := filepath.Join(srcDir, "src")
	if err := os.WriteFile(sp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dp := filepath.Join(t.TempDir(), "dst")
	dst, err := os.Create(dp)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	const off = 4096
	if err := copyRange(context.Background(), src, dst, off, off, int64(len(data))-off); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dp)
	if len(got) != len(data) || !bytes.Equal(got[off:], data[off:]) || !bytes.Equal(got[:off], make([]byte, off)) {
		t.Fatalf("copy of %d bytes differs from the source", len(got))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := copyRange(ctx, src, dst, 0, 0, int64(len(data))); !errors.Is(err, context.Canceled) {
		t.Fatalf("copyRange with a cancelled context = %v", err)
	}
}
