package main

import (
	"os"

	"voltar/internal/codec"
	"voltar/internal/config"
	"voltar/internal/memlimit"
)

// baseMemory is what a backup holds besides its compressors: the archive
// writer's buffers, the prefetcher's bookkeeping, tar headers and names in
// flight, the store's copy buffer, the Go runtime itself.
const baseMemory = 96 << 20

// memoryLimit is the soft limit voltar gives the Go runtime: what the
// compressors running at once can hold (codec.WriterMemory, one writer per
// volume or dump in flight) and, for an S3 store, their uploads' part
// buffers (two parts each), plus baseMemory, and a quarter more. Without
// it the garbage collector lets the heap grow to twice the live data
// (GOGC=100), so RSS would double what the buffers need; with it the heap
// is collected sooner as it nears the limit. It is soft: if more is live,
// the process gets it. Work whose memory grows with its input (an
// increment's parent index) raises it while it runs (internal/memlimit).
func memoryLimit(cfg *config.Config) int64 {
	writers := max(cfg.Concurrency, cfg.DumpConcurrency, 1)
	per := codec.WriterMemory(cfg.Compression, cfg.Threads)
	if config.IsS3(cfg.Store.Path) {
		if s3, err := cfg.Store.S3(cfg.Store.Path); err == nil {
			per += 2 * s3.PartSize
		}
	}
	need := baseMemory + int64(writers)*per
	return need + need/4
}

// setMemoryLimit applies memoryLimit unless GOMEMLIMIT is set: the
// operator's own limit wins.
func setMemoryLimit(cfg *config.Config) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	memlimit.Set(memoryLimit(cfg))
}
