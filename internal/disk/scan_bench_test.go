package disk_test

import (
	"path/filepath"
	"testing"

	"voltar/internal/disk"
)

// BenchmarkScan reads each committed real partition table (MBR with
// logical partitions, GPT with 128 entries, 4K sectors, whole-disk boot
// sectors) and detects the filesystem of every partition found, as backup
// does before mapping anything. It runs against in-memory images, so it
// measures the parsing, not the disk.
func BenchmarkScan(b *testing.B) {
	files, err := filepath.Glob("testdata/fuzz/FuzzReadTable/*")
	if err != nil || len(files) == 0 {
		b.Fatalf("no seeds: %v", err)
	}
	for _, file := range files {
		s := readSeed(&testing.T{}, file)
		img := newSparseImage(s.head, s.tail, s.gap)
		b.Run(filepath.Base(file), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				table, err := disk.ReadTable(img, img.size)
				if err != nil {
					if _, err := disk.DetectFS(img, 0, img.size); err != nil {
						b.Fatal(err)
					}
					continue
				}
				for _, p := range table.Partitions {
					if _, err := disk.DetectFS(img, p.Start, p.Size); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
