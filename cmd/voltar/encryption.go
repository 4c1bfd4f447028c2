package main

import (
	"errors"
	"os"

	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/layout"
)

// identityFile is where the private key is: $VOLTAR_AGE_IDENTITY_FILE, else
// encryption.identity_file; "" when neither is set.
func (a *app) identityFile() string {
	if p := os.Getenv(crypt.IdentityEnv); p != "" {
		return p
	}
	if a.cfg == nil {
		return ""
	}
	return a.cfg.Encryption.IdentityFile
}

// identities loads the configured private keys, nil when none is
// configured. Only the file's path is ever logged or printed.
func (a *app) identities() (*crypt.Identities, error) {
	path := a.identityFile()
	if path == "" {
		return nil, nil
	}
	ids, err := crypt.LoadIdentities(path)
	var pe *crypt.PermissionError
	switch {
	case errors.As(err, &pe):
		return nil, fail.Usage(fail.Hint(err, "chmod 600 %s (and keep it off hosts that only make backups)", path))
	case err != nil:
		return nil, fail.Usage(fail.Hint(err, "encryption.identity_file (or %s) must name a file made by age-keygen, or an unencrypted OpenSSH private key", crypt.IdentityEnv))
	}
	if a.log != nil {
		a.log.Debug("identity file loaded", "path", path)
	}
	return ids, nil
}

// identitiesFor loads the private keys when one of backups is encrypted;
// nil otherwise, so a broken identity file does not stop work on plain
// backups.
func (a *app) identitiesFor(backups ...*catalog.Backup) (*crypt.Identities, error) {
	for _, b := range backups {
		if encrypted(b) {
			return a.identities()
		}
	}
	return nil, nil
}

// encrypted reports whether a backup has age-encrypted objects.
func encrypted(b *catalog.Backup) bool {
	if b.Manifest != nil && b.Manifest.Encryption != nil {
		return true
	}
	if b.Manifest != nil {
		for _, f := range b.Manifest.Filesystems {
			if layout.Encrypted(f.Archive) {
				return true
			}
		}
	}
	return false
}
