// Package codec wraps the compressors voltar stores archives with. Every
// stream it writes is readable by the standard tools (zstd -d, gzip -d).
package codec

import (
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Names of the supported compressions.
const (
	Zstd = "zstd"
	Gzip = "gzip"
	None = "none"
)

// Ext returns the file-name suffix for a compression, e.g. ".zst".
func Ext(c string) string {
	switch c {
	case Zstd:
		return ".zst"
	case Gzip:
		return ".gz"
	}
	return ""
}

// FromName returns the compression a stored object's name implies.
func FromName(name string) string {
	switch {
	case len(name) > 4 && name[len(name)-4:] == ".zst":
		return Zstd
	case len(name) > 3 && name[len(name)-3:] == ".gz":
		return Gzip
	}
	return None
}

// Valid reports whether c names a supported compression.
func Valid(c string) bool { return c == Zstd || c == Gzip || c == None }

// DefaultLevel is the level used when the config leaves it at 0.
func DefaultLevel(c string) int {
	switch c {
	case Zstd:
		return 3
	case Gzip:
		return 6
	}
	return 0
}

// NewWriter compresses into w using all cores (or threads when > 0).
// The caller must Close the writer to flush the stream; closing does not
// close w.
func NewWriter(w io.Writer, c string, level, threads int) (io.WriteCloser, error) {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	if level == 0 {
		level = DefaultLevel(c)
	}
	switch c {
	case Zstd:
		return zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithEncoderConcurrency(threads),
			zstd.WithLowerEncoderMem(true))
	case Gzip:
		gw, err := pgzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, fmt.Errorf("gzip level %d: %w", level, err)
		}
		if err := gw.SetConcurrency(1<<20, threads*2); err != nil {
			return nil, err
		}
		return gw, nil
	case None:
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q (want zstd, gzip or none)", c)
}

// NewReader decompresses r. The caller must Close the reader.
func NewReader(r io.Reader, c string) (io.ReadCloser, error) {
	switch c {
	case Zstd:
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return nil, err
		}
		return zstdReadCloser{d}, nil
	case Gzip:
		return pgzip.NewReader(r)
	case None:
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Close() error { z.Decoder.Close(); return nil }
