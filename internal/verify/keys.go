package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/fail"
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

// CheckKeys makes sure ids decrypt each encrypted archive in names before a
// restore writes anything: it reads each one's age header. Without ids the
// error is a usage error; with keys that do not match, it names the
// archive and matches crypt.ErrWrongIdentity. Both carry KeyHint.
func CheckKeys(ctx context.Context, st store.Store, b *catalog.Backup, names []string, ids *crypt.Identities) error {
	for _, name := range names {
		if !crypt.Encrypted(name) {
			continue
		}
		if ids == nil {
			return fail.Usage(fail.Hint(fmt.Errorf("%s: %w", name, crypt.ErrNoIdentity), "%s", KeyHint(b)))
		}
		s, err := Open(ctx, st, b, name, ids)
		if err != nil {
			err = fmt.Errorf("%s: %w", name, err)
			if errors.Is(err, crypt.ErrWrongIdentity) {
				err = fail.Hint(err, "%s", KeyHint(b))
			}
			return err
		}
		s.Close()
	}
	return nil
}
