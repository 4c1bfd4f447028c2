package archive_test

import (
	"context"
	"testing"

	"voltar/internal/archive"
	"voltar/internal/codec"
)

// BenchmarkWrite archives 64 MiB as many small files and as one big file.
func BenchmarkWrite(b *testing.B) {
	const size = 64 << 20
	for _, bc := range []struct {
		name     string
		fileSize int64
	}{{"small-files", 16 << 10}, {"big-file", size}} {
		root := b.TempDir()
		makeCorpus(b, root, size, bc.fileSize)
		for _, comp := range []string{codec.Zstd, codec.Gzip, codec.None} {
			b.Run(bc.name+"/"+comp, func(b *testing.B) {
				b.SetBytes(size)
				b.ReportAllocs()
				for b.Loop() {
					_, sum, err := writeEncoded(context.Background(), root, discard{}, comp, archive.Options{})
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(sum.Bytes)/size, "ratio")
				}
			})
		}
	}
}
