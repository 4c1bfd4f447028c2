package archive_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"voltar/internal/archive"
	"voltar/internal/codec"
)

// makeCorpus writes size bytes of poorly compressible data into dir, as
// one file or as files of fileSize bytes spread over subdirectories.
func makeCorpus(t testing.TB, dir string, size, fileSize int64) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, min(fileSize, 1<<20))
	for n := int64(0); n*fileSize < size; n++ {
		path := filepath.Join(dir, fmt.Sprintf("d%03d", n%100), fmt.Sprintf("f%06d", n))
		mustDo(t, "mkdir", os.MkdirAll(filepath.Dir(path), 0o755))
		f, err := os.Create(path)
		mustDo(t, "create", err)
		for left := fileSize; left > 0; left -= int64(len(buf)) {
			for i := 0; i < len(buf); i += 8 {
				v := rnd.Uint64() & 0x0f0f0f0f0f0f0f0f // ~50% compressible
				for j := 0; j < 8 && i+j < len(buf); j++ {
					buf[i+j] = byte(v >> (8 * j))
				}
			}
			_, err := f.Write(buf[:min(left, int64(len(buf)))])
			mustDo(t, "write", err)
		}
		mustDo(t, "close", f.Close())
	}
}

// cancelWriter cancels its context once it has taken after bytes.
type cancelWriter struct {
	mu       sync.Mutex
	n, after int64
	cancel   context.CancelFunc
	at       time.Time
}

func (c *cancelWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += int64(len(p))
	if c.n > c.after && c.at.IsZero() {
		c.at = time.Now()
		c.cancel()
	}
	return len(p), nil
}

func TestWriteCancel(t *testing.T) {
	big, small := t.TempDir(), t.TempDir()
	makeCorpus(t, big, 256<<20, 256<<20)
	makeCorpus(t, small, 16<<20, 4<<10)
	for _, tc := range []struct {
		name, root, comp string
		after            int64
	}{
		{"big-file/none", big, codec.None, 8 << 20},
		{"big-file/zstd", big, codec.Zstd, 1 << 20},
		{"small-files/none", small, codec.None, 1 << 20},
		{"small-files/gzip", small, codec.Gzip, 256 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &cancelWriter{after: tc.after, cancel: cancel}
			_, _, err := writeEncoded(ctx, tc.root, w, tc.comp, archive.Options{})
			done := time.Now()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Write returned %v, want context.Canceled", err)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.at.IsZero() {
				t.Fatal("never cancelled")
			}
			if d := done.Sub(w.at); d > time.Second {
				t.Errorf("Write returned %v after cancel, want promptly", d)
			}
			if w.n > 64<<20 {
				t.Errorf("wrote %d bytes after cancelling at %d", w.n, tc.after)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	mustDo(t, "write", os.WriteFile(file, nil, 0o644))
	for name, call := range map[string]func() error{
		"root is a file": func() error {
			_, _, err := writeEncoded(context.Background(), file, discard{}, "", archive.Options{})
			return err
		},
		"no root": func() error {
			_, _, err := writeEncoded(context.Background(), filepath.Join(dir, "nope"), discard{}, "", archive.Options{})
			return err
		},
		"bad pattern": func() error {
			_, _, err := writeEncoded(context.Background(), dir, discard{}, "", archive.Options{Excludes: []string{"a["}})
			return err
		},
		"failing writer": func() error {
			_, _, err := writeEncoded(context.Background(), dir, failWriter{}, "", archive.Options{})
			return err
		},
		"bad compression": func() error {
			_, _, err := writeEncoded(context.Background(), dir, discard{}, "lz4", archive.Options{})
			return err
		},
	} {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errors.New("disk full") }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
