package catalogtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"

	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/store"
)

// WriteChain writes fs[0] as a full backup and each later folder, of the
// same volume and oldest first, as an increment on the one before (the
// manifest's chain: level, parent, the parent's manifest.json SHA-256 as
// stored, full), and returns the manifests written. A folder's NoManifest
// is honoured, which leaves a hole in the chain for the next folder to
// build on regardless.
func WriteChain(t testing.TB, st store.Store, fs ...Folder) []*manifest.Manifest {
	t.Helper()
	var ms []*manifest.Manifest
	for i, f := range fs {
		noManifest := f.NoManifest
		f.NoManifest = true
		m := Write(t, st, f)
		if i > 0 {
			prev := fs[i-1]
			m.Chain = &manifest.Chain{Level: ms[i-1].Level() + 1, Parent: ms[i-1].ID,
				ParentManifestSHA256: ManifestSum(t, st, prev), Full: ms[0].ID}
		}
		if !noManifest {
			PutManifest(t, st, f.Prefix(), m)
		}
		ms = append(ms, m)
	}
	return ms
}

// ManifestSum is the SHA-256 of a folder's stored manifest.json, or 64
// zeros when the folder has none.
func ManifestSum(t testing.TB, st store.Store, f Folder) string {
	t.Helper()
	rc, err := st.Get(context.Background(), f.Prefix()+layout.Manifest)
	if err != nil {
		return hex.EncodeToString(make([]byte, sha256.Size)) // no parent to match
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("catalogtest: %v", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
