package archive_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"voltar/internal/archive"
	"voltar/internal/codec"
	"voltar/internal/index"
	"voltar/internal/objio"
)

// BenchmarkArchive runs the whole archive stage (walk, stat, read, tar,
// compress, hash) over a mixed tree: 2000 small text files, a few medium
// ones and one large file, ~40 MiB in all. With VOLTAR_BENCH_TREE=DIR it
// archives DIR instead (e.g. the mounted corpus of bench/run.sh):
//
//	VOLTAR_BENCH_TREE=/mnt/x go test -run '^$' -bench Archive -benchtime 1x \
//	    -cpuprofile cpu.out ./internal/archive
//
// The output goes to a sink that copies like a store does (see storeSink).
func BenchmarkArchive(b *testing.B) {
	root := os.Getenv("VOLTAR_BENCH_TREE")
	if root == "" {
		root = b.TempDir()
		makeMixedTree(b, root)
	}
	size := treeBytes(b, root)
	for _, comp := range []string{codec.Zstd, codec.Gzip} {
		b.Run(comp, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				res, sum, err := writeEncoded(context.Background(), root, &storeSink{}, comp, archive.Options{})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(sum.Bytes)/float64(size), "ratio")
				b.ReportMetric(float64(res.Entries), "entries")
			}
		})
	}
}

// BenchmarkArchiveToPipe is BenchmarkArchive's zstd case written through an
// io.Pipe into a reader that copies with a 1 MiB buffer, as backup feeds a
// local store's Put: it shows what the pipe hop costs.
func BenchmarkArchiveToPipe(b *testing.B) {
	root := os.Getenv("VOLTAR_BENCH_TREE")
	if root == "" {
		root = b.TempDir()
		makeMixedTree(b, root)
	}
	size := treeBytes(b, root)
	b.SetBytes(size)
	for b.Loop() {
		pr, pw := io.Pipe()
		var wg sync.WaitGroup
		wg.Go(func() {
			io.CopyBuffer(&storeSink{}, pr, make([]byte, 1<<20))
		})
		_, _, err := writeEncoded(context.Background(), root, pw, "", archive.Options{})
		pw.CloseWithError(err)
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// storeSink stands for a store: it copies what it is given into a small
// reused buffer (as a write(2) copies into the page cache), so an extra
// copy is not hidden by a sink that drops bytes for free.
type storeSink struct{ buf [64 << 10]byte }

func (s *storeSink) Write(p []byte) (int, error) {
	for q := p; len(q) > 0; {
		q = q[copy(s.buf[:], q):]
	}
	return len(p), nil
}

func treeBytes(b *testing.B, root string) int64 {
	// A caller that knows the size (bench/run.sh: du -sb) saves the walk,
	// which would otherwise be part of the process's time.
	if s := os.Getenv("VOLTAR_BENCH_TREE_BYTES"); s != "" && os.Getenv("VOLTAR_BENCH_TREE") == root {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("VOLTAR_BENCH_TREE_BYTES=%q: not a byte count", s)
		}
		return n
	}
	var n int64
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// makeMixedTree writes text-like small files (half compressible), a few
// medium files and a big one with fixed seeds.
func makeMixedTree(tb testing.TB, root string) {
	tb.Helper()
	rnd := rand.New(rand.NewPCG(7, 7))
	word := strings.Fields("func return if else range err nil ctx backup volume archive the of and to in is")
	text := func(n int) []byte {
		var sb strings.Builder
		for sb.Len() < n {
			sb.WriteString(word[rnd.IntN(len(word))])
			if rnd.IntN(10) == 0 {
				sb.WriteString(fmt.Sprintf("%d\n", rnd.IntN(1000)))
			} else {
				sb.WriteByte(' ')
			}
		}
		return []byte(sb.String()[:n])
	}
	write := func(rel string, data []byte) {
		p := filepath.Join(root, rel)
		mustDo(tb, "mkdir", os.MkdirAll(filepath.Dir(p), 0o755))
		mustDo(tb, "write", os.WriteFile(p, data, 0o644))
	}
	for i := range 2000 {
		write(fmt.Sprintf("src/d%02d/f%04d.go", i/100, i), text(256+rnd.IntN(8<<10)))
	}
	for i := range 8 {
		write(fmt.Sprintf("lib/m%d.so", i), text(1<<20))
	}
	big := make([]byte, 24<<20)
	for i := 0; i < len(big); i += 8 << 10 {
		if (i>>13)%2 == 0 {
			copy(big[i:], text(8<<10))
		} else {
			for j := i; j < min(i+8<<10, len(big)); j++ {
				big[j] = byte(rnd.Uint32())
			}
		}
	}
	write("large/disk.img", big)
	h := sha256.Sum256(big)
	_ = h
}

// BenchmarkArchiveIndex is BenchmarkArchive's zstd case with and without
// the file index written beside the archive, as backup writes it (every
// entry into index.Writer, through a second encoder of one thread and
// small frames): the index's cost is the ratio of the two. With
// VOLTAR_BENCH_NO_PROJECT_IDS=1 it leaves out the project ids as backup
// does on an ext2/3/4 made without the project feature (bench/run.sh's
// corpus).
func BenchmarkArchiveIndex(b *testing.B) {
	root := os.Getenv("VOLTAR_BENCH_TREE")
	if root == "" {
		root = b.TempDir()
		makeMixedTree(b, root)
	}
	size := treeBytes(b, root)
	for _, withIndex := range []bool{false, true} {
		b.Run(fmt.Sprintf("index=%v", withIndex), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				opts := archive.Options{NoProjectIDs: os.Getenv("VOLTAR_BENCH_NO_PROJECT_IDS") == "1"}
				var ienc *objio.Encoder
				var ix *index.Writer
				if withIndex {
					var err error
					if ienc, err = objio.NewEncoder(&storeSink{}, objio.Encoding{Compression: codec.Zstd}.Small()); err != nil {
						b.Fatal(err)
					}
					ix = index.NewWriter(ienc, index.Header{FS: "p1", Archive: "p1.tar.zst"})
					opts.Index = ix.Add
				}
				enc, err := objio.NewEncoder(&storeSink{}, objio.Encoding{Compression: codec.Zstd})
				if err != nil {
					b.Fatal(err)
				}
				res, err := archive.Write(context.Background(), root, enc, opts)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := enc.Close(); err != nil {
					b.Fatal(err)
				}
				if withIndex {
					if err := ix.Finish(enc.Frames(), res.TarBytes); err != nil {
						b.Fatal(err)
					}
					isum, err := ienc.Close()
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(isum.Bytes), "index-bytes")
				}
			}
		})
	}
}
