package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"voltar/internal/fail"
	"voltar/internal/store"
)

// ErrBrokenChain is matched by a *ChainError.
var ErrBrokenChain = errors.New("broken backup chain")

// ChainError says which link of an incremental backup's chain is missing
// or not the backup it was built on.
type ChainError struct {
	ID     string // the backup whose parent is wrong
	Parent string
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("%s: %s: it builds on %s, which %s", ErrBrokenChain, e.ID, e.Parent, e.Reason)
}

func (e *ChainError) Is(target error) bool { return target == ErrBrokenChain }

// Chain returns the backups b builds on, b's parent first and the full
// backup last (none for a full backup). Each parent is resolved in b's
// store and host, and must be the very backup its child was made on: its
// manifest.json hashes to the child's parent_manifest_sha256, and its
// level is one less. A missing, damaged or replaced parent is a
// *ChainError naming it.
func Chain(ctx context.Context, st store.Store, b *Backup) ([]*Backup, error) {
	var out []*Backup
	for c := b; c.Manifest.Chain != nil; {
		ch := c.Manifest.Chain
		broken := func(reason string) error {
			return fail.Hint(&ChainError{ID: c.ID, Parent: ch.Parent, Reason: reason},
				"every backup of a chain back to its full is needed to restore %s; restore an older backup (voltar list shows the chains), and make a new full with voltar backup --full", b.ID)
		}
		if len(out) > 64<<10 {
			return nil, broken("is part of a chain too long to be real")
		}
		p, err := Resolve(ctx, st, b.Host, ch.Parent)
		var nf *NotFoundError
		var de *DamagedError
		switch {
		case errors.As(err, &nf):
			return nil, broken("is missing from " + st.String())
		case errors.As(err, &de):
			return nil, broken("is damaged (" + de.Reason + ")")
		case err != nil:
			return nil, fmt.Errorf("chain of %s: parent %s: %w", b.ID, ch.Parent, err)
		}
		sum := sha256.Sum256(p.ManifestData)
		if hex.EncodeToString(sum[:]) != ch.ParentManifestSHA256 {
			return nil, broken("is not the backup it was made on (its manifest.json has another SHA-256)")
		}
		if p.Manifest.Level() != ch.Level-1 {
			return nil, broken(fmt.Sprintf("is of level %d, not %d", p.Manifest.Level(), ch.Level-1))
		}
		if p.Manifest.Chain == nil && p.ID != ch.Full || p.Manifest.Chain != nil && p.Manifest.Chain.Full != ch.Full {
			return nil, broken("belongs to another chain")
		}
		out = append(out, p)
		c = p
	}
	return out, nil
}
