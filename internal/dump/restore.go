package dump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store"
	"voltar/internal/verify"
)

// ErrChecksum is matched (errors.Is) when the stored dump is not the one
// the manifest and SHA256SUMS record.
var ErrChecksum = errors.New("checksum mismatch")

// Restored is what Extract or Restore read and wrote.
type Restored struct {
	ID          string `json:"id"`
	Object      string `json:"object"` // dump.sql.zst
	Path        string `json:"path,omitempty"`
	SQLBytes    int64  `json:"sql_bytes"`
	StoredBytes int64  `json:"stored_bytes"`
	SHA256      string `json:"sha256"`
	Verified    bool   `json:"verified"`
}

// object returns the manifest entry of a dump's stored object.
func object(b *catalog.Backup) (manifest.Filesystem, error) {
	if !IsDump(b.Manifest) {
		return manifest.Filesystem{}, fmt.Errorf("backup %s is not a database dump", b.ID)
	}
	for _, fs := range b.Manifest.Filesystems {
		if fs.Mode == Mode && fs.Archive != "" {
			return fs, nil
		}
	}
	return manifest.Filesystem{}, fmt.Errorf("dump %s: %s names no dump object", b.ID, layout.Manifest)
}

// Extract writes the dump's SQL, decrypted with ids (an encrypted dump,
// dump.sql.zst.age) and decompressed, to w while checking the stored bytes
// against the SHA-256 in the manifest and SHA256SUMS. The whole object is
// only known good at its end: on an error (ErrChecksum for a mismatch) what
// was written to w must be discarded. An encrypted dump without ids is a
// usage error, before anything is written.
func Extract(ctx context.Context, st store.Store, b *catalog.Backup, w io.Writer, ids *crypt.Identities) (Restored, error) {
	res := Restored{ID: b.ID}
	fs, err := object(b)
	if err != nil {
		return res, err
	}
	res.Object = fs.Archive
	sums, err := catalog.ReadSums(ctx, st, b)
	if errors.Is(err, catalog.ErrNoSums) {
		sums, err = nil, nil // the manifest's hash still counts
	}
	if err != nil {
		return res, err
	}
	if msg := verify.Disagree(fs, sums); msg != "" {
		return res, fail.Hint(fmt.Errorf("%s: %s; not restoring", fs.Archive, msg), "voltar verify %s", b.FullID())
	}
	s, err := objio.Open(ctx, st, b.Key(fs.Archive), ids)
	if err != nil {
		return res, verify.KeyError(b, fs.Archive, err)
	}
	defer s.Close()
	n, copyErr := io.Copy(w, s.Data)
	res.SQLBytes = n
	d, finErr := s.Finish()
	res.SHA256, res.StoredBytes = d.SHA256, d.Bytes
	if msg := verify.DigestMismatch(d, fs, sums); msg != "" {
		return res, fail.Hint(fmt.Errorf("%s: %w: %s", fs.Archive, ErrChecksum, msg),
			"the stored dump is damaged; restore an older one (voltar list %s/%s)", Group, b.Volume)
	}
	if copyErr != nil {
		return res, fmt.Errorf("%s: %w", fs.Archive, copyErr)
	}
	if finErr != nil {
		return res, fmt.Errorf("%s: %w", fs.Archive, finErr)
	}
	if fs.SourceBytes != 0 && n != fs.SourceBytes {
		return res, fmt.Errorf("%s: %d bytes of SQL, %s says %d", fs.Archive, n, layout.Manifest, fs.SourceBytes)
	}
	res.Verified = true
	return res, nil
}

// Restore writes the dump's SQL into dir/dump.sql (mode 0600: it holds
// every row). dir is created if missing. The file appears only when the
// whole dump was read and its SHA-256 matched; an existing dump.sql is
// refused unless overwrite. ids decrypt an encrypted dump (see Extract).
func Restore(ctx context.Context, st store.Store, b *catalog.Backup, dir string, overwrite bool, ids *crypt.Identities) (Restored, error) {
	target := filepath.Join(dir, SQLName)
	if _, err := os.Lstat(target); err == nil && !overwrite {
		return Restored{ID: b.ID}, fail.Usage(fail.Hint(fmt.Errorf("%s already exists", target), "restore into another directory, or pass --force to replace it"))
	}
	// Nothing is created for a dump the keys cannot decrypt.
	if fs, err := object(b); err == nil {
		if err := verify.CheckKeys(ctx, st, b, []string{fs.Archive}, ids); err != nil {
			return Restored{ID: b.ID}, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Restored{ID: b.ID}, fmt.Errorf("restore target: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+SQLName+".tmp-")
	if err != nil {
		return Restored{ID: b.ID}, fmt.Errorf("restore target: %w", err)
	}
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	res, err := Extract(ctx, st, b, f, ids)
	if err != nil {
		return res, err
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("write %s: %w", target, err)
	}
	if err := f.Close(); err != nil {
		return res, fmt.Errorf("write %s: %w", target, err)
	}
	if err := os.Rename(f.Name(), target); err != nil {
		return res, fmt.Errorf("write %s: %w", target, err)
	}
	f = nil
	res.Path = target
	return res, nil
}
