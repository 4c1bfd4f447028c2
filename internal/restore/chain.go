package restore

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"

	"voltar/internal/browse"
	"voltar/internal/catalog"
	"voltar/internal/fail"
	"voltar/internal/manifest"
	"voltar/internal/store"
	"voltar/internal/verify"
)

// restoreChain restores filesystem fs of incremental backup b: its own
// archive (every directory and what changed), then, oldest last, the
// entries of each earlier archive of the chain that b's index says are
// still current there. Every entry is written once, from the archive that
// holds its version at b's time; nothing deleted since is written at all.
// Every archive of the chain is read to its end and checked against its
// manifest and SHA256SUMS; an entry the index places in an archive that
// does not hold it fails the restore.
func restoreChain(ctx context.Context, st store.Store, b *catalog.Backup, fs manifest.Filesystem, sums catalog.Sums, dir string, x *extractor, opts Options) error {
	links, err := chainLinks(ctx, st, b, fs)
	if err != nil {
		return err
	}
	f, err := browse.Open(ctx, st, b, fs, opts.Identities)
	if err != nil {
		return fmt.Errorf("%s: %w", b.ID, err)
	}
	ix := f.Index
	f.Close()
	own := path.Base(b.ID)
	from := make(map[string]string, len(ix.Entries))
	for _, e := range ix.Entries {
		t := e.From
		if t == "" {
			t = own
		}
		from[e.Path] = t
	}
	seen := make(map[string]bool, len(from))
	var stray []string
	keep := func(ts string) func(string) bool {
		return func(p string) bool {
			if from[p] != ts {
				if ts == own {
					stray = append(stray, p)
				}
				return false
			}
			seen[p] = true
			return true
		}
	}
	if err := streamArchive(ctx, st, b, fs, sums, dir, x, keep(own), opts.Identities); err != nil {
		return err
	}
	for _, l := range links {
		lsums, err := catalog.ReadSums(ctx, st, l.b)
		if err != nil && !errors.Is(err, catalog.ErrNoSums) {
			return err
		}
		if msg := verify.Disagree(l.fs, lsums); msg != "" {
			return fail.Hint(fmt.Errorf("%s of %s, which %s builds on: %s", l.fs.Archive, l.b.ID, b.ID, msg), "voltar verify %s", l.b.FullID())
		}
		if err := streamArchive(ctx, st, l.b, l.fs, lsums, dir, x, keep(path.Base(l.b.ID)), opts.Identities); err != nil {
			return fmt.Errorf("%s, which %s builds on: %w", l.b.ID, b.ID, err)
		}
	}
	var missing []string
	for p := range from {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	if len(missing)+len(stray) > 0 {
		slices.Sort(missing)
		err := fmt.Errorf("%w: the chain of %s does not hold what its file index lists: %d entries missing (first %q, in %s), %d not listed",
			ErrChecksum, b.ID, len(missing), first(missing), from[first(missing)], len(stray))
		return fail.Hint(err, "voltar verify %s", b.FullID())
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// link is one earlier backup of a chain with its archive of a filesystem.
type link struct {
	b  *catalog.Backup
	fs manifest.Filesystem
}

// chainLinks returns the earlier archives of filesystem fs that increment
// b builds on, newest first, down to the one stored whole.
func chainLinks(ctx context.Context, st store.Store, b *catalog.Backup, fs manifest.Filesystem) ([]link, error) {
	parents, err := catalog.Chain(ctx, st, b)
	if err != nil {
		return nil, err
	}
	var out []link
	cur := fs
	for _, p := range parents {
		i := slices.IndexFunc(p.Manifest.Filesystems, func(f manifest.Filesystem) bool { return f.Name == fs.Name })
		if i < 0 || p.Manifest.Filesystems[i].Mode != manifest.ModeFiles {
			return nil, fail.Hint(&catalog.ChainError{ID: b.ID, Parent: p.ID, Reason: "has no " + fs.Name + " stored as files"},
				"voltar verify %s", b.FullID())
		}
		out = append(out, link{p, p.Manifest.Filesystems[i]})
		cur = p.Manifest.Filesystems[i]
		if !cur.Incremental {
			return out, nil
		}
	}
	if cur.Incremental {
		return nil, fmt.Errorf("%s of %s: an increment without the backup it builds on", fs.Name, b.ID)
	}
	return out, nil
}
