// Package folder is the commit protocol of a store folder, the same for a
// volume's backup and a database dump: find a free folder, write the
// objects (through objio), then publish SHA256SUMS, manifest.json.sig (when
// a signing key is configured), manifest.json.sha256 and, last,
// manifest.json. Until the manifest is stored the folder is not
// a backup; a folder that never got one is removed as a whole.
package folder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store"
)

// Free returns the folder (prefix at the current second) a new
// backup goes to, and that second. Folders are named by the second: when
// the store holds one of that name already (a backup of the same volume in
// the same second), it waits for the next second, up to three times.
func Free(ctx context.Context, st store.Store, prefix func(time.Time) string) (string, time.Time, error) {
	for tries := 0; ; tries++ {
		started := time.Now().UTC().Truncate(time.Second)
		p := prefix(started)
		objs, err := st.List(ctx, p)
		if err != nil {
			return "", started, objio.StoreError(st, p, err)
		}
		if len(objs) == 0 {
			return p, started, nil
		}
		if tries == 3 {
			return "", started, fmt.Errorf("backup folder %s already exists in %s", p, st)
		}
		select {
		case <-ctx.Done():
			return "", started, ctx.Err()
		case <-time.After(time.Until(started.Add(time.Second))):
		}
	}
}

// Signer signs a manifest's bytes (signing.Signer: an OpenSSH signature).
type Signer interface {
	Sign(ctx context.Context, data []byte) ([]byte, error)
}

// Publish completes a backup folder under prefix: SHA256SUMS of every
// object with a hash, the manifest's signature when signer is not nil,
// its checksum, then, last, the manifest, finished at now. Until the
// manifest is stored the folder is not a backup. It sets m.Finished and
// m.PublishedBytes, the size of the whole folder: what the backup added to
// the store, small objects included.
func Publish(ctx context.Context, st store.Store, prefix string, m *manifest.Manifest, now time.Time, signer Signer) error {
	var sums strings.Builder
	for _, f := range m.Filesystems {
		if f.SHA256 != "" {
			fmt.Fprintf(&sums, "%s  %s\n", f.SHA256, f.Archive)
		}
		if f.Index != nil {
			fmt.Fprintf(&sums, "%s  %s\n", f.Index.SHA256, f.Index.Name)
		}
	}
	if o := m.Outside; o != nil {
		fmt.Fprintf(&sums, "%s  %s\n", o.SHA256, o.Archive)
	}
	nSums, err := st.Put(ctx, prefix+layout.Sums, strings.NewReader(sums.String()), store.PutOptions{})
	if err != nil {
		return objio.StoreError(st, layout.Sums, err)
	}
	m.Finished = now
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		return err
	}
	// The manifest's signature and checksum go first: every folder with a
	// manifest has them, and a partial folder is removed as a whole.
	var nSig int64
	if signer != nil {
		sig, err := signer.Sign(ctx, buf.Bytes())
		if err != nil {
			return err
		}
		if nSig, err = st.Put(ctx, prefix+layout.ManifestSig, bytes.NewReader(sig), store.PutOptions{}); err != nil {
			return objio.StoreError(st, layout.ManifestSig, err)
		}
	}
	nSum, err := st.Put(ctx, prefix+layout.ManifestSum, bytes.NewReader(manifest.ChecksumFile(buf.Bytes())), store.PutOptions{})
	if err != nil {
		return objio.StoreError(st, layout.ManifestSum, err)
	}
	nManifest, err := st.Put(ctx, prefix+layout.Manifest, bytes.NewReader(buf.Bytes()), store.PutOptions{})
	if err != nil {
		return objio.StoreError(st, layout.Manifest, err)
	}
	m.PublishedBytes = m.StoredBytes() + nSums + nSig + nSum + nManifest
	return nil
}

// RemovePartial deletes the objects of a backup folder that has no manifest.
func RemovePartial(ctx context.Context, st store.Store, prefix string) error {
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("list unfinished backup %s: %w", prefix, err)
	}
	for _, o := range objs {
		if path.Base(o.Key) == layout.Manifest {
			return nil // it did complete
		}
	}
	var errs []error
	for _, o := range objs {
		if err := st.Delete(ctx, o.Key); err != nil {
			errs = append(errs, err)
		}
	}
	if tr, ok := store.As[store.TempRemover](st); ok {
		if err := tr.RemoveTemp(ctx, prefix); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PartialRef is how a run's journal names the folder prefix of st while it
// is being written, so the sweep of a later run can remove it after a
// kill -9 (see cleanup.Partial).
func PartialRef(st store.Store, prefix string) string { return st.String() + "\t" + prefix }
