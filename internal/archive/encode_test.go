package archive_test

import (
	"context"
	"io"

	"voltar/internal/archive"
	"voltar/internal/objio"
)

// writeEncoded archives root into w as a backup stores it: the tar stream
// goes through the object pipeline's encoder, compressed with comp ("" is
// zstd). On error the encoder is cut off, as a backup's is.
func writeEncoded(ctx context.Context, root string, w io.Writer, comp string, opts archive.Options) (archive.Result, objio.Sum, error) {
	enc, err := objio.NewEncoder(w, objio.Encoding{Compression: comp})
	if err != nil {
		return archive.Result{}, objio.Sum{}, err
	}
	res, err := archive.Write(ctx, root, enc, opts)
	if err != nil {
		enc.Abort()
		return res, objio.Sum{}, err
	}
	sum, err := enc.Close()
	return res, sum, err
}
