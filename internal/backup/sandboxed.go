package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"time"

	"voltar/internal/archive"
	"voltar/internal/cleanup"
	"voltar/internal/disk"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/progress"
	"voltar/internal/sandbox"
	"voltar/internal/store"
)

// Isolation modes (config isolation:).
const (
	IsolationKernel  = "kernel"
	IsolationSandbox = "sandbox"
)

// sandboxed archives p in a sandbox (internal/sandbox): the host maps the
// partition as a read-only loop device and never mounts it; a User-Mode
// Linux kernel, run as an unprivileged user, mounts it over a
// copy-on-write file (a journal is replayed into that file, so a
// read-only snapshot needs no writable copy) and sends the tar stream
// back. The stream goes through the same objio pipeline, and the guest's
// statfs and btrfs subvolume list feed the same completeness check.
func (r *run) sandboxed(ctx context.Context, p part, fs manifest.Filesystem, log *slog.Logger) (manifest.Filesystem, error) {
	if err := r.inject(StageMap); err != nil {
		return fs, err
	}
	ro := *r.snap
	ro.ReadOnly = true
	loop, err := r.attach(ctx, &ro, p.start, p.size)
	if err != nil {
		return fs, err
	}
	if err := r.inject(StageMount); err != nil {
		return fs, err
	}
	// The sandbox mounts its private tmpfs here, in its own mount
	// namespace; journaled like a mount point, so a sweep removes it.
	dir, err := r.makeMountDir(p.name)
	if err != nil {
		return fs, err
	}
	r.onRelease(func(context.Context) error {
		if err := disk.Unmount(dir); err != nil {
			return err
		}
		os.Remove(dir)
		r.done(cleanup.Mount, dir)
		return nil
	})
	if err := r.inject(StageArchive); err != nil {
		return fs, err
	}
	fs.Mode = manifest.ModeFiles
	fs.Archive = r.o.Encoding.Object(p.name, layout.Tar)
	fs.Excludes = r.o.Excludes
	var (
		w   *archiveOut
		bar *progress.Bar
		res sandbox.Result
	)
	for attempt := 1; ; attempt++ {
		// The filesystem's used size is known only inside: the partition
		// bounds the archive (sparse files stay sparse) and the progress.
		// A retry starts both the archive and its index over.
		w, err = r.createArchive(ctx, &fs, store.PutOptions{SizeHint: p.size + p.size/4 + 64<<20})
		if err != nil {
			return fs, err
		}
		bar = r.o.Progress.Start(r.v.ID()+" "+p.name+" (sandbox)", p.size)
		log.Info("archiving in a sandbox", "device", loop.Path)
		res, err = sandbox.Archive(ctx, sandbox.Config{
			Device: loop.Path, FSType: p.fs.Type, Dir: dir,
			Excludes: r.o.Excludes, BtrfsSnapshots: r.o.BtrfsSnapshots, BootRaw: r.o.BootRaw,
			NoProjectIDs: noProjectIDs(&fs),
			Limits:       r.o.Sandbox, Logger: log,
			Progress: func(pr archive.Progress) { bar.Update(pr.Bytes, pr.Files) },
			Index:    w.ix.Add,
		}, w)
		if !errors.Is(err, sandbox.ErrLost) || attempt == 2 {
			break
		}
		// A transport failure, not the filesystem's: once more, from
		// the start (the objects written so far are dropped).
		bar.Done(false)
		if serr := w.abort(err); serr != nil {
			return fs, serr
		}
		log.Warn("the sandbox's stream was lost; running it again", "err", err)
	}
	if err == nil && res.Syslinux != "" && r.o.BootRaw {
		err = errBootRaw
	}
	if err != nil {
		bar.Done(false)
		if serr := w.abort(err); serr != nil && !errors.Is(err, errBootRaw) {
			return fs, serr
		}
		switch {
		case errors.Is(err, errBootRaw):
			where := path.Join("/", res.Syslinux, "ldlinux.sys")
			log.Warn("syslinux/extlinux found: storing the filesystem raw (boot_partitions: raw)", "file", where)
			return r.raw(ctx, p, fs, "syslinux/extlinux ("+where+") points at its blocks (boot_partitions: raw), stored raw")
		case errors.Is(err, archive.ErrEncrypted):
			log.Warn("fscrypt-encrypted files found: storing the filesystem raw", "err", err)
			fs.Excludes = nil
			return r.raw(ctx, p, fs, "it holds fscrypt-encrypted directories ("+err.Error()+"), stored raw so the key still opens them")
		case errors.Is(err, disk.ErrUnsupportedFS):
			return r.raw(ctx, p, fs, p.fs.Type+": the sandbox's kernel cannot mount it, stored raw")
		}
		return fs, orHint(fmt.Errorf("archive in the sandbox: %w", err),
			"the filesystem could not be read in the sandbox; check a copy of the snapshot with fsck (VOLTAR_SANDBOX_CONSOLE=1 prints the guest kernel's messages); only for a guest you trust, volume_isolation: kernel mounts it on the host instead")
	}
	sum, err := w.commit(&fs, res.TarBytes)
	bar.Done(err == nil)
	if err != nil {
		return fs, err
	}
	if p.recovery == disk.RecoveryNeeded {
		fs.Recovery = "journal replayed in the sandbox into a throwaway copy-on-write file"
	}
	if res.Syslinux != "" {
		where := path.Join("/", res.Syslinux, "ldlinux.sys")
		fs.Warnings = append(fs.Warnings, "syslinux/extlinux ("+where+") points at the blocks of ldlinux.sys, which a restore places anew; "+disk.ReinstallAdvice)
		log.Warn("bootloader found", "bootloader", "syslinux/extlinux", "file", where, "advice", disk.ReinstallAdvice)
	}
	a := res.Archive
	fs.StoredBytes, fs.SHA256 = sum.Bytes, sum.SHA256
	fs.SourceBytes, fs.Files, fs.Entries = a.SourceBytes, a.Files, a.Entries
	for _, ne := range a.NotEntered {
		fs.NotEntered = append(fs.NotEntered, manifest.NotEntered{Path: ne.Path, Reason: ne.Reason})
	}
	switch p.fs.Type {
	case "btrfs":
		err = r.checkSubvolumes(res.Subvolumes, res.DefaultSubvolume, a, &fs)
	case "ext2", "ext3", "ext4", "xfs":
		err = r.checkInodes(ctx, p, res.Statfs.Files, res.Statfs.Ffree, a, &fs)
	}
	if err != nil {
		return fs, err
	}
	fs.Finished = time.Now().UTC()
	log.Info("archived in a sandbox", "files", a.Files, "source_bytes", a.SourceBytes, "stored_bytes", sum.Bytes, "excluded", a.Excluded,
		"not_entered", len(fs.NotEntered), "subvolumes", len(fs.Subvolumes), "subvolumes_skipped", fs.SkippedSubvolumes())
	return fs, nil
}

// errBootRaw: the sandbox found syslinux and boot_partitions is raw.
var errBootRaw = errors.New("syslinux found: stored raw")
