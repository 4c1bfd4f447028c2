package codec

import "github.com/klauspost/compress/zstd"

// frameEncoder compresses one zstd frame at a time, on one goroutine. Every
// frame it makes is a standard zstd frame with its content size and without
// a content checksum.
type frameEncoder interface {
	// encode appends the frame of src to dst (whose capacity is at least
	// len(src) + len(src)/64 + 4096).
	encode(dst, src []byte) ([]byte, error)
	close()
}

// goEncoder is klauspost/compress's encoder (see ZstdEncoder).
type goEncoder struct{ enc *zstd.Encoder }

func newGoEncoder(level, frame int) (*goEncoder, error) {
	// A frame is never longer than the window, so the low-memory history
	// (window + one block, instead of twice the window) never has to be
	// shifted: it saves memory at no cost here. No XXH64 content checksum
	// per frame: every frame's stored bytes get a SHA-256 (the file
	// index's) and the object one more, so it would only repeat their
	// check at 2-3% of the writer's CPU; zstd -d decodes frames without
	// one (the C library's default too).
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(max(frame, zstd.MinWindowSize)), zstd.WithLowerEncoderMem(true),
		zstd.WithAllLitEntropyCompression(true), zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, err
	}
	return &goEncoder{enc}, nil
}

func (g *goEncoder) encode(dst, src []byte) ([]byte, error) { return g.enc.EncodeAll(src, dst), nil }
func (g *goEncoder) close()                                 { g.enc.Close() }
