package restore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store/local"
)

// BenchmarkToDir restores a 64 MiB zstd archive of many small files and of
// one big file into a new directory: the whole restore path (store read,
// SHA-256, decompression, tar parsing, file creation and metadata). The
// target is the benchmark's temp dir, so the figures depend on the
// filesystem under $TMPDIR; compare runs on the same machine (benchstat).
func BenchmarkToDir(b *testing.B) {
	const size = 64 << 20
	for _, bc := range []struct {
		name     string
		fileSize int
	}{{"small-files", 16 << 10}, {"big-file", size}} {
		b.Run(bc.name, func(b *testing.B) {
			src := b.TempDir()
			body := make([]byte, bc.fileSize)
			for i := range body {
				body[i] = byte(i*7) & 0x3f // compressible, never an all-zero block
			}
			for n := 0; n*bc.fileSize < size; n++ {
				p := filepath.Join(src, fmt.Sprintf("d%03d", n%100), fmt.Sprintf("f%06d", n))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(p, body, 0o644); err != nil {
					b.Fatal(err)
				}
			}
			st := local.New(b.TempDir())
			f := backupOf(b, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC), Compression: codec.Zstd},
				map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: "ext4"}})
			bk := catalogtest.Resolve(b, st, f)
			work := b.TempDir()
			b.SetBytes(size)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				dst := filepath.Join(work, fmt.Sprint(i))
				i++
				if _, err := restore.ToDir(context.Background(), st, bk, dst, restore.Options{}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := os.RemoveAll(dst); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
