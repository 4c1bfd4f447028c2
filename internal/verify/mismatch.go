package verify

import (
	"archive/tar"
	"errors"
	"fmt"
	"strings"

	"voltar/internal/catalog"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/objio"
)

// DigestMismatch is Mismatch for a complete digest; "" for one cut short.
func DigestMismatch(d objio.Digest, fs manifest.Filesystem, sums catalog.Sums) string {
	if !d.Complete {
		return ""
	}
	return Mismatch(d.SHA256, fs, sums)
}

// Mismatch compares the SHA-256 read of an archive with the manifest's and
// SHA256SUMS's (sums nil: SHA256SUMS missing) and says what differs, or "".
// That the two records disagree with each other is Disagree's business.
func Mismatch(got string, fs manifest.Filesystem, sums catalog.Sums) string {
	inManifest := strings.ToLower(fs.SHA256)
	inSums, listed := sums[fs.Archive]
	switch {
	case listed && inSums == inManifest && got != inManifest:
		return fmt.Sprintf("sha256 is %s, %s and %s say %s", got, layout.Sums, layout.Manifest, inManifest)
	case listed && inSums != inManifest && got != inSums:
		msg := fmt.Sprintf("sha256 is %s, %s says %s", got, layout.Sums, inSums)
		if got != inManifest {
			msg += fmt.Sprintf(", %s says %s", layout.Manifest, inManifest)
		}
		return msg
	}
	if got != inManifest {
		return fmt.Sprintf("sha256 is %s, %s says %s", got, layout.Manifest, inManifest)
	}
	return ""
}

// Disagree says what is wrong with the records of an archive's SHA-256
// before it is read: none in the manifest, not listed in SHA256SUMS, or the
// two differ. sums is nil when SHA256SUMS is missing (reported elsewhere).
func Disagree(fs manifest.Filesystem, sums catalog.Sums) string {
	inManifest := strings.ToLower(fs.SHA256)
	if inManifest == "" {
		return layout.Manifest + " records no sha256"
	}
	if sums == nil {
		return ""
	}
	inSums, ok := sums[fs.Archive]
	switch {
	case !ok:
		return "not listed in " + layout.Sums
	case inSums != inManifest:
		return fmt.Sprintf("%s says sha256 %s, %s says %s", layout.Sums, inSums, layout.Manifest, inManifest)
	}
	return ""
}

// Archives returns the filesystems of a manifest that have a stored archive,
// and the outside object as an entry of its own (manifest.Outside.Entry).
func Archives(m *manifest.Manifest) []manifest.Filesystem {
	var out []manifest.Filesystem
	for _, f := range m.Filesystems {
		if f.Archive != "" && f.Mode != manifest.ModeSkipped {
			out = append(out, f)
		}
	}
	if m.Outside != nil {
		// Read like a raw partition: its decompressed length is the
		// runs' sum, its source bytes.
		out = append(out, m.Outside.Entry())
	}
	return out
}

// IsRegular reports whether a tar entry counts as a file in the manifest:
// a regular file (sparse or not), not a hard link.
func IsRegular(h *tar.Header) bool {
	return h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeGNUSparse || h.Typeflag == tar.TypeCont
}

var errTruncated = errors.New("entry data shorter than its header says")
