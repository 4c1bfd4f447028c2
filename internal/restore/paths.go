package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"

	"voltar/internal/browse"
	"voltar/internal/catalog"
	"voltar/internal/fail"
	"voltar/internal/index"
	"voltar/internal/objio"
	"voltar/internal/store"
)

// ErrNoMatch is returned by Paths when no entry matches its patterns.
var ErrNoMatch = errors.New("no entry matches")

// Paths restores only the entries of b that patterns select (see
// browse.Pattern and browse.Backup.Select: a directory brings its
// subtree, and the directories above come with their metadata) into dir,
// laid out as ToDir lays out the whole backup. Entries go through the
// same extraction as a full restore. From a seekable archive only the
// frames holding the selected entries are read, each checked against its
// SHA-256 before use; an archive without frames (no index, or gzip) is
// streamed whole and its SHA-256 checked, as ToDir does, and Result's
// warnings say so. A hard link whose target is not selected is restored
// as a file with the target's content.
func Paths(ctx context.Context, st store.Store, b *catalog.Backup, dir string, patterns []string, opts Options) (res Result, err error) {
	res = Result{ID: b.ID, Target: dir, Filesystems: []FSResult{}, Warnings: []string{}}
	defer func() { res.stopped(err) }()
	if err := validManifest(b); err != nil {
		return res, err
	}
	var pats []browse.Pattern
	for _, p := range patterns {
		pt, err := browse.ParsePattern(p)
		if err != nil {
			return res, err
		}
		pats = append(pats, pt)
	}
	bk := browse.OpenBackup(st, b, opts.Identities)
	defer bk.Close()
	type job struct {
		f   *browse.FS
		sel []*index.Entry
	}
	var jobs []job
	for _, m := range bk.Filesystems() {
		if opts.Partition != "" && m.Name != opts.Partition {
			continue
		}
		if m.Mode != "files" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s is stored %s: its files cannot be selected (restore it with --to-image)", m.Name, m.Mode))
			continue
		}
		f, err := bk.FS(ctx, m.Name)
		if err != nil {
			return res, err
		}
		sel := bk.Select(f, pats)
		if len(sel) == 0 {
			continue
		}
		jobs = append(jobs, job{f: f, sel: sel})
	}
	if len(jobs) == 0 {
		return res, fail.Usage(fail.Hint(fmt.Errorf("%w %v in %s", ErrNoMatch, patterns, b.ID),
			"voltar ls %s lists the backup; voltar find %s 'NAME' searches it", b.ID, b.ID))
	}
	var names []string
	for _, j := range jobs {
		names = append(names, j.f.FS.Name)
	}
	tg, err := checkTargets(dir, names, !bk.Single(), opts.Overwrite)
	if err != nil {
		return res, fmt.Errorf("backup %s: %w", b.ID, err)
	}
	if err := tg.open(); err != nil {
		return res, err
	}
	defer tg.close()
	for _, j := range jobs {
		fd, target, err := tg.of(j.f.FS.Name)
		if err != nil {
			return res, err
		}
		if j.f.Streamed {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: read whole (%s)", j.f.FS.Archive, j.f.Why))
		}
		fr, err := restoreSelected(ctx, j.f, j.sel, target, fd, opts)
		tg.release(fd)
		res.Filesystems = append(res.Filesystems, fr)
		if err != nil {
			return res, err
		}
	}
	return res, skippedError(&res)
}

// restoreSelected extracts the selected entries of one filesystem.
func restoreSelected(ctx context.Context, f *browse.FS, sel []*index.Entry, dir string, root int, opts Options) (fr FSResult, err error) {
	fr = FSResult{Name: f.FS.Name, Archive: f.FS.Archive, Dir: dir, Refused: []Skipped{}, Failed: []Skipped{}, Warnings: []string{}}
	x, err := newExtractor(root, opts.logger().With("backup", f.Backup.ID), &fr)
	if err != nil {
		return fr, err
	}
	defer x.close()
	ok := false
	defer func() { x.finish(ok) }()

	// A hard link whose target is not selected gets the target's data:
	// the first such name becomes the file, later ones link to it.
	// Entries are told apart by pointer: an increment's index holds
	// offsets into several archives.
	chosen := map[*index.Entry]bool{}
	for _, e := range sel {
		chosen[e] = true
	}
	rename := map[*index.Entry]string{} // target -> the name it is restored as
	relink := map[*index.Entry]string{} // link -> its new target
	var order []*index.Entry
	for _, e := range sel {
		if e.Type == index.Hardlink {
			t := f.Index.Target(e)
			if t != e && !chosen[t] {
				if n, ok := rename[t]; ok {
					relink[e] = n
				} else {
					rename[t] = e.Path
					order = append(order, t)
					continue
				}
			}
		}
		order = append(order, e)
	}
	fix := func(h *tar.Header, e *index.Entry) {
		if n, ok := rename[e]; ok {
			h.Name = "./" + n
		}
		if n, ok := relink[e]; ok {
			h.Linkname = "./" + n
		}
	}
	if f.Streamed && f.Index.Inherited > 0 {
		return fr, fail.Hint(fmt.Errorf("%s: %s, and it is an increment whose entries are in several archives", f.FS.Archive, f.Why),
			"restore the whole backup (voltar restore without --path), then copy what you need")
	}
	if !f.Streamed {
		for _, e := range order {
			if err := ctx.Err(); err != nil {
				return fr, err
			}
			en, err := f.OpenEntry(ctx, e)
			if errors.Is(err, browse.ErrDamaged) {
				return fr, fmt.Errorf("%w: %v", ErrChecksum, err)
			}
			if err != nil {
				return fr, err
			}
			fix(en.Header, e)
			if err := x.entry(en.Header, en.Data); err != nil {
				if errors.Is(err, browse.ErrDamaged) {
					return fr, fmt.Errorf("%w: %v", ErrChecksum, err)
				}
				return fr, err
			}
		}
		fr.Verified, ok = true, true
		return fr, nil
	}
	// Streamed: every selected entry in one pass, and the archive's
	// SHA-256 checked at its end before directory metadata is set.
	want := map[int64]*index.Entry{}
	for _, e := range order {
		want[e.Offset] = e
	}
	err = f.Stream(ctx, func(s *objio.Stream) error {
		for {
			h, off, err := s.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if e, ok := want[off]; ok {
				fix(h, e)
				if err := x.entry(h, s.Tar); err != nil {
					return err
				}
			}
		}
	})
	if errors.Is(err, browse.ErrDamaged) {
		return fr, fmt.Errorf("%w: %v", ErrChecksum, err)
	}
	if err != nil {
		return fr, err
	}
	fr.Verified, ok = true, true
	return fr, nil
}
