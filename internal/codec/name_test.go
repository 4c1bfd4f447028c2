package codec_test

import (
	"testing"

	"voltar/internal/codec"
)

func TestFromName(t *testing.T) {
	for name, want := range map[string]string{
		"p1.tar.zst": codec.Zstd, "p1.tar.zst.age": codec.Zstd,
		"p2.raw.gz": codec.Gzip, "p2.raw.gz.age": codec.Gzip,
		"dump.sql.zst.age": codec.Zstd, "p1.tar": codec.None, "p1.tar.age": codec.None,
	} {
		if got := codec.FromName(name); got != want {
			t.Errorf("FromName(%q) = %q, want %q", name, got, want)
		}
	}
}
