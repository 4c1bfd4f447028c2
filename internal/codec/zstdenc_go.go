//go:build !cgo

package codec

// Without cgo every level is klauspost/compress's encoder (see
// zstdenc_cgo.go for the other build).
func newFrameEncoder(level, frame int) (frameEncoder, error) { return newGoEncoder(level, frame) }
