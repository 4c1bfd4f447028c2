package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/layout"
	"voltar/internal/objio"
	"voltar/internal/store"
)

// NotChecked is what verify says of an encrypted object it could only
// hash, for want of an identity.
const NotChecked = "content not checked: encrypted, and no identity is configured (encryption.identity_file); stored size and sha256 checked"

// KeyHint says which private key decrypts b's archives, and where to
// configure it.
func KeyHint(b *catalog.Backup) string {
	to := "its recipients"
	if e := b.Manifest.Encryption; e != nil && len(e.Recipients) > 0 {
		var keys []string
		for _, k := range e.Recipients {
			keys = append(keys, crypt.Describe(k))
		}
		to = strings.Join(keys, ", ")
	}
	return fmt.Sprintf("%s is age-encrypted to %s: set encryption.identity_file (or %s) to the matching private key file", b.ID, to, crypt.IdentityEnv)
}

// CheckKeys makes sure ids decrypt the encrypted archives in names before a
// restore writes anything. A backup's archives are all encrypted to the
// recipients its manifest names, so it reads the age header of the first
// one only. Errors are KeyError's.
func CheckKeys(ctx context.Context, st store.Store, b *catalog.Backup, names []string, ids *crypt.Identities) error {
	for _, name := range names {
		if !layout.Encrypted(name) {
			continue
		}
		s, err := objio.Open(ctx, st, b.Key(name), ids)
		if err != nil {
			return KeyError(b, name, err)
		}
		return s.Close()
	}
	return nil
}

// KeyError names the archive in an error of Open and, when the keys are
// missing (a usage error) or do not match (crypt.ErrWrongIdentity), says
// which key to configure (KeyHint).
func KeyError(b *catalog.Backup, name string, err error) error {
	err = fmt.Errorf("%s: %w", name, err)
	switch {
	case errors.Is(err, crypt.ErrNoIdentity):
		return fail.Usage(fail.Hint(err, "%s", KeyHint(b)))
	case errors.Is(err, crypt.ErrWrongIdentity):
		return fail.Hint(err, "%s", KeyHint(b))
	}
	return err
}
