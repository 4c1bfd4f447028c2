//go:build cgo

package codec

import "github.com/DataDog/zstd"

// maxCLevel is the highest level the C library compresses with; above it,
// klauspost/compress does. Up to level 5 libzstd's match tables for a
// frame take at most ~3 MiB (as klauspost's default level does, see
// encoderTables), so zstdMemory still bounds the writer; the higher C
// levels take tens of MiB per thread and more, which the memory bound
// (codec.WriterMemory) does not allow for.
const maxCLevel = 5

// newFrameEncoder compresses with the C zstd library (libzstd, compiled
// in from github.com/DataDog/zstd's copy of its sources) up to maxCLevel:
// at level 3 it compresses ~25% faster per core than klauspost/compress
// on bench/run.sh's corpus, with the same or a slightly smaller output,
// and it is what `zstd` itself runs. CGO_ENABLED=0 builds use
// klauspost/compress for every level (zstdenc_go.go).
func newFrameEncoder(level, frame int) (frameEncoder, error) {
	if level > maxCLevel {
		return newGoEncoder(level, frame)
	}
	return &cEncoder{ctx: zstd.NewCtx(), level: level}, nil
}

// cEncoder writes each frame with ZSTD_compressCCtx: one frame with its
// content size, no checksum (the library's default), a window no longer
// than the frame.
type cEncoder struct {
	ctx   zstd.Ctx // its C memory is freed by a finalizer
	level int
}

func (c *cEncoder) encode(dst, src []byte) ([]byte, error) {
	return c.ctx.CompressLevel(dst[:0], src, c.level)
}

func (c *cEncoder) close() {}
