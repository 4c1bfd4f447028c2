package codec_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"voltar/internal/codec"
	"voltar/internal/layout"
)

// benchInput is 32 MiB like a tar stream of a root filesystem: runs of
// text, of random (already compressed) data and of zeros, from fixed seeds.
func benchInput() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("func return if else range err nil ctx backup volume archive snapshot the of and to in is for")
	var b bytes.Buffer
	for b.Len() < 32<<20 {
		n := 64<<10 + r.IntN(1<<20)
		switch k := r.IntN(10); {
		case k < 6:
			for end := b.Len() + n; b.Len() < end; {
				b.WriteString(words[r.IntN(len(words))])
				if r.IntN(8) == 0 {
					b.WriteString(strconv.Itoa(r.IntN(1e5)) + "\n")
				} else {
					b.WriteByte(' ')
				}
			}
		case k < 9:
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(r.Uint32())
			}
			b.Write(p)
		default:
			b.Write(make([]byte, n))
		}
	}
	return b.Bytes()[:32<<20]
}

// BenchmarkWriter is the compressor stage alone: 32 MiB written in the 256
// KiB pieces archive's bufio.Writer hands on, into a writer that copies.
func BenchmarkWriter(b *testing.B) {
	in := benchInput()
	for _, c := range []string{codec.Zstd, codec.Gzip} {
		b.Run(c, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				var out countWriter
				w, err := codec.NewWriter(&out, c, 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				for p := in; len(p) > 0; {
					n := min(len(p), 256<<10)
					if _, err := w.Write(p[:n]); err != nil {
						b.Fatal(err)
					}
					p = p[n:]
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(out.n)/float64(len(in)), "ratio")
			}
		})
	}
}

// BenchmarkReader decompresses what BenchmarkWriter wrote.
func BenchmarkReader(b *testing.B) {
	in := benchInput()
	for _, c := range []string{codec.Zstd, codec.Gzip} {
		var z bytes.Buffer
		w, _ := codec.NewWriter(&z, c, 0, 0)
		w.Write(in)
		w.Close()
		b.Run(c, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := codec.NewReader(bytes.NewReader(z.Bytes()), c)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r)
				r.Close()
				if err != nil || n != int64(len(in)) {
					b.Fatalf("read %d of %d bytes: %v", n, len(in), err)
				}
			}
		})
	}
}

type countWriter struct {
	n   int64
	buf [64 << 10]byte
}

func (c *countWriter) Write(p []byte) (int, error) {
	for q := p; len(q) > 0; {
		q = q[copy(c.buf[:], q):]
	}
	c.n += int64(len(p))
	return len(p), nil
}

// TestZstdFrames checks the multi-frame stream around frame boundaries,
// read back by NewReader and, when installed, by the zstd command.
func TestZstdFrames(t *testing.T) {
	in := benchInput()
	// 3 threads write 8 MiB frames, 16 threads 1 MiB frames.
	for _, tn := range [][2]int{
		{3, 0}, {3, 1}, {3, codec.FrameSize - 1}, {3, codec.FrameSize}, {3, 2*codec.FrameSize + 5},
		{16, 1<<20 - 1}, {16, 1 << 20}, {16, 5<<20 + 3},
	} {
		threads, n := tn[0], tn[1]
		var z bytes.Buffer
		w, err := codec.NewWriter(&z, codec.Zstd, 0, threads)
		if err != nil {
			t.Fatal(err)
		}
		for p := in[:n]; len(p) > 0; {
			k := min(len(p), 100_000)
			if _, err := w.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := codec.NewReader(bytes.NewReader(z.Bytes()), codec.Zstd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, in[:n]) {
			t.Fatalf("%d bytes: read back %d bytes, err %v", n, len(got), err)
		}
		if _, err := exec.LookPath("zstd"); err == nil {
			cmd := exec.Command("zstd", "-d", "-c")
			cmd.Stdin = bytes.NewReader(z.Bytes())
			got, err := cmd.Output()
			if err != nil || !bytes.Equal(got, in[:n]) {
				t.Fatalf("%d bytes: zstd -d gave %d bytes, err %v", n, len(got), err)
			}
		}
	}
}

// TestZstdWriteError checks that a failing destination fails Write or
// Close and that Close returns.
func TestZstdWriteError(t *testing.T) {
	w, err := codec.NewWriter(failWriter{}, codec.Zstd, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	in := benchInput()
	var werr error
	for i := 0; i < 4 && werr == nil; i++ {
		_, werr = w.Write(in)
	}
	if cerr := w.Close(); werr == nil && cerr == nil {
		t.Fatal("no error from a failing destination")
	}
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errors.New("disk full") }

// BenchmarkReaderFile decompresses the file VOLTAR_BENCH_ZST (for example
// an archive bench/run.sh stored), to compare with `zstd -d`.
func BenchmarkReaderFile(b *testing.B) {
	path := os.Getenv("VOLTAR_BENCH_ZST")
	if path == "" {
		b.Skip("set VOLTAR_BENCH_ZST to a .zst file")
	}
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		r, err := codec.NewReader(f, layout.Compression(path))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		r.Close()
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(n)
	}
}
