package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/index"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store"
	"voltar/internal/verify"
)

// ToDir restores the backup's file archives into dir: a single filesystem
// (the backup has one, or opts.Partition names one) directly into dir,
// several into dir/p1, dir/p2, ... Raw and skipped filesystems are not
// restored into a directory (a warning says so). dir is created if missing
// and must be empty (lost+found aside) unless opts.Overwrite.
//
// Entries with absolute or ".." paths, and any that would be created
// through a symlink, are refused; refused or failed entries make ToDir
// return an error matching ErrSkippedEntries after restoring the rest. A
// corrupt or unreadable archive stops the restore with a *PartialError
// (ErrChecksum for a hash mismatch). The Result is filled as far as the
// restore got.
func ToDir(ctx context.Context, st store.Store, b *catalog.Backup, dir string, opts Options) (res Result, err error) {
	res = Result{ID: b.ID, Target: dir, Filesystems: []FSResult{}, Warnings: []string{}}
	defer func() { res.stopped(err) }()
	if err := validManifest(b); err != nil {
		return res, err
	}
	fss, err := pick(b, opts.Partition, &res)
	if err != nil {
		return res, err
	}
	// The manifest was validated when it was read, so each name is p<N> or
	// fs; still, what comes from the store goes beneath dir only through
	// descriptors (openDir), like every tar entry.
	names := make([]string, len(fss))
	for i, fs := range fss {
		names[i] = fs.Name
	}
	// Check every target (here), the records and the keys (in the store)
	// before writing anything.
	tg, err := checkTargets(dir, names, len(fss) > 1, opts.Overwrite)
	if err != nil {
		return res, fmt.Errorf("backup %s: %w", b.ID, err)
	}
	sums, err := readSums(ctx, st, b, fss, &res)
	if err != nil {
		return res, err
	}
	if err := checkKeys(ctx, st, b, fss, opts.Identities); err != nil {
		return res, err
	}
	if err := tg.open(); err != nil {
		return res, err
	}
	defer tg.close()
	for i, fs := range fss {
		fd, target, err := tg.of(fs.Name)
		if err != nil {
			return res, err
		}
		fr, err := restoreArchive(ctx, st, b, fs, sums, target, fd, opts, opts.logger())
		tg.release(fd)
		res.Filesystems = append(res.Filesystems, fr)
		if err != nil && i > 0 {
			var done []string
			for _, f := range res.Filesystems[:i] {
				done = append(done, f.Name+" ("+f.Dir+")")
			}
			err = fail.Hint(err, "restored completely before it: %s; run voltar verify %s to see what else is wrong with the backup", strings.Join(done, ", "), b.FullID())
		}
		if err != nil {
			return res, err
		}
	}
	return res, skippedError(&res)
}

func skippedError(res *Result) error {
	t := res.Totals()
	if t.RefusedCount+t.FailedCount == 0 {
		return nil
	}
	return fail.Hint(fmt.Errorf("%w: %d refused, %d failed", ErrSkippedEntries, t.RefusedCount, t.FailedCount),
		"the entries are listed above (or in --json output); the rest was restored")
}

// pick chooses the archives to restore into a directory.
func pick(b *catalog.Backup, partition string, res *Result) ([]manifest.Filesystem, error) {
	m := b.Manifest
	if partition != "" {
		want := partition
		if want[0] >= '0' && want[0] <= '9' {
			want = layout.PartitionPrefix + want // --partition 2 is p2
		}
		for _, fs := range m.Filesystems {
			if fs.Name != want {
				continue
			}
			switch {
			case fs.Mode == manifest.ModeRaw:
				return nil, fail.Hint(fmt.Errorf("%s of %s (%s) is stored raw, not as files", fs.Name, b.ID, fs.What()),
					"restore the whole volume with --to-image or --to-device")
			case fs.Mode != manifest.ModeFiles || fs.Archive == "":
				return nil, fmt.Errorf("%s of %s (%s) was not backed up: %s", fs.Name, b.ID, fs.What(), fs.Reason)
			}
			res.Warnings = append(res.Warnings, subvolumeWarnings(fs, true)...)
			return []manifest.Filesystem{fs}, nil
		}
		return nil, fail.Usage(fmt.Errorf("backup %s has no filesystem %s; it has %s", b.ID, partition, catalog.Filesystems(m)))
	}
	var out []manifest.Filesystem
	for _, fs := range m.Filesystems {
		switch {
		case fs.Mode == manifest.ModeFiles && fs.Archive != "":
			out = append(out, fs)
			res.Warnings = append(res.Warnings, subvolumeWarnings(fs, true)...)
		case fs.Mode == manifest.ModeRaw:
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s (%s) is stored raw and not restored into a directory; use --to-image", fs.Name, fs.Type))
		default:
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s (%s) was not backed up: %s", fs.Name, fs.Type, fs.Reason))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("backup %s has no file archives (%s)", b.ID, catalog.Filesystems(m))
	}
	return out, nil
}

// readSums loads SHA256SUMS and checks that it and the manifest agree on
// every archive to restore, before anything is written. A missing
// SHA256SUMS is a warning: the manifest's hashes still count.
func readSums(ctx context.Context, st store.Store, b *catalog.Backup, fss []manifest.Filesystem, res *Result) (catalog.Sums, error) {
	sums, err := catalog.ReadSums(ctx, st, b)
	if errors.Is(err, catalog.ErrNoSums) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s has no %s; checking against %s only", b.ID, layout.Sums, layout.Manifest))
		sums, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, fs := range fss {
		if msg := verify.Disagree(fs, sums); msg != "" {
			return nil, fail.Hint(fmt.Errorf("%s: %s; not restoring", fs.Archive, msg), "voltar verify %s", b.FullID())
		}
	}
	return sums, nil
}

// checkKeys makes sure the archives to restore can be decrypted, before
// anything is written.
func checkKeys(ctx context.Context, st store.Store, b *catalog.Backup, fss []manifest.Filesystem, ids *crypt.Identities) error {
	var names []string
	for _, fs := range fss {
		names = append(names, fs.Archive)
	}
	return verify.CheckKeys(ctx, st, b, names, ids)
}

// checkTarget refuses a target that is not a directory, or (without
// overwrite) holds anything but lost+found.
func checkTarget(dir string, overwrite bool) error { return checkTargetAs(dir, dir, overwrite) }

// checkTargetAs is checkTarget of path, named dir in messages.
func checkTargetAs(path, dir string, overwrite bool) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fail.Usage(fmt.Errorf("restore target %s is not a directory", dir))
	}
	if overwrite {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, n := range names {
		if n != "lost+found" {
			return fail.Hint(fail.Usage(fmt.Errorf("restore target %s is not empty (it holds %s)", dir, n)),
				"restore into a new or empty directory")
		}
	}
	return nil
}

// validManifest checks the manifest against the layout once more: the
// catalog validated it when it was read, but a Backup may be built by hand,
// and its names decide where a restore writes.
func validManifest(b *catalog.Backup) error {
	if err := b.Manifest.Validate(); err != nil {
		return fail.Hint(fmt.Errorf("backup %s: %w; not restoring", b.ID, err), "voltar verify %s", b.FullID())
	}
	return nil
}

// plainName refuses a name that is not one plain path component.
func plainName(name string) error {
	if c, err := cleanName(name); err != nil || c != name || strings.Contains(name, "/") || name == "" {
		return errors.New("not a plain directory name")
	}
	return nil
}

// openTarget opens the caller's target directory as an O_PATH descriptor.
// dir is the caller's choice and may be reached through symlinks; only
// what lies beneath it comes from the backup.
func openTarget(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open target %s: %w", dir, err)
	}
	return fd, nil
}

// checkSubTarget checks dir/name (shown as shown) like checkTarget, but
// reaches it beneath dir's descriptor, never through a symlink.
func checkSubTarget(dir, name, shown string, overwrite bool) error {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open target %s: %w", dir, err)
	}
	defer unix.Close(root)
	fd, err := openDir(root, name, false, nil)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, errSymlink), errors.Is(err, errNotDir), errors.Is(err, unix.ENOTDIR):
		return fail.Usage(fmt.Errorf("restore target %s is not a directory", shown))
	case err != nil:
		return fmt.Errorf("open %s: %w", shown, err)
	}
	defer unix.Close(fd)
	return checkTargetAs(fdPath(fd), shown, overwrite)
}

// restoreArchive streams one archive into the directory open as root (an
// O_PATH descriptor the caller keeps; dir names it in messages), verifying
// it on the way. An increment (fs.Incremental) restores its whole chain
// (restoreChain).
func restoreArchive(ctx context.Context, st store.Store, b *catalog.Backup, fs manifest.Filesystem, sums catalog.Sums, dir string, root int, opts Options, log *slog.Logger) (fr FSResult, _ error) {
	// fr is named: the deferred finish below still adds its warnings.
	fr = FSResult{Name: fs.Name, Archive: fs.Archive, Dir: dir, Refused: []Skipped{}, Failed: []Skipped{}, Warnings: []string{}}
	x, err := newExtractor(root, log.With("backup", b.ID), &fr)
	if err != nil {
		return fr, err
	}
	defer x.close()
	ok := false
	// Directory metadata only for a verified archive: until then the new
	// directories stay 0700 and root's.
	tr := opts.track(fs.Name, fs.SourceBytes)
	x.tracker = tr
	defer func() {
		x.finish(ok)
		tr.Update(fr.Bytes, fr.Files)
		tr.Done(ok)
	}()
	if fs.Incremental {
		err = restoreChain(ctx, st, b, fs, sums, dir, x, opts)
	} else {
		err = streamArchive(ctx, st, b, fs, sums, dir, x, nil, opts.Identities)
	}
	if err != nil {
		return fr, err
	}
	fr.Verified, ok = true, true
	return fr, nil
}

// streamArchive extracts the entries of one archive that keep accepts
// (nil: all) through x, verifying the whole archive's SHA-256.
func streamArchive(ctx context.Context, st store.Store, b *catalog.Backup, fs manifest.Filesystem, sums catalog.Sums, dir string, x *extractor, keep func(path string) bool, ids *crypt.Identities) error {
	fr := x.res
	partial := func(err error) error {
		return fail.Hint(&PartialError{Archive: fs.Archive, Dir: dir, Files: fr.Files, Bytes: fr.Bytes, Err: err},
			"voltar verify %s", b.FullID())
	}
	s, err := objio.Open(ctx, st, b.Key(fs.Archive), ids)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Archive, err)
	}
	defer s.Close()
	// broken explains a failed read: if the stored bytes do not hash as
	// recorded, the archive is corrupt (ErrChecksum), else the store, the
	// decoder or ctx failed.
	broken := func(err error) error {
		d, _ := s.Finish()
		if d.Complete {
			fr.SHA256 = d.SHA256
		}
		if msg := verify.DigestMismatch(d, fs, sums); msg != "" {
			return partial(fmt.Errorf("%w: %s (%v)", ErrChecksum, msg, err))
		}
		return partial(err)
	}
	for {
		h, err := s.Tar.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return broken(fmt.Errorf("read archive after %d entries: %w", fr.Entries, err))
		}
		if keep != nil && !keep(index.FromTar(h.Name)) {
			continue
		}
		if err := x.entry(h, s.Tar); err != nil {
			var se *streamError
			if errors.As(err, &se) {
				return broken(err)
			}
			return partial(err)
		}
	}
	d, err := s.Finish()
	fr.SHA256 = d.SHA256
	msg := verify.DigestMismatch(d, fs, sums)
	switch {
	case msg != "":
		return partial(fmt.Errorf("%w: %s", ErrChecksum, msg))
	case err != nil:
		return partial(err)
	}
	return nil
}
