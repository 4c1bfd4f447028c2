package main

import (
	"testing"

	"voltar/internal/config"
)

// TestMemoryLimit: one volume at a time stays under the 256 MiB target
// whatever the thread count; more volumes at once raise the limit instead
// of making the collector thrash.
func TestMemoryLimit(t *testing.T) {
	for _, threads := range []int{0, 1, 2, 8, 16} {
		for _, c := range []string{"zstd", "gzip", "none"} {
			cfg := config.Default()
			cfg.Threads, cfg.Compression, cfg.Concurrency = threads, c, 1
			if got := memoryLimit(cfg); got > 256<<20 || got < baseMemory {
				t.Errorf("threads %d, %s: limit %d MiB", threads, c, got>>20)
			}
		}
	}
	one, four := config.Default(), config.Default()
	one.Concurrency, four.Concurrency = 1, 4
	if memoryLimit(four) <= memoryLimit(one) {
		t.Errorf("concurrency 4: limit %d MiB, not above concurrency 1's %d MiB", memoryLimit(four)>>20, memoryLimit(one)>>20)
	}
}
