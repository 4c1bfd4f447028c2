package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"voltar/internal/backup"
	"voltar/internal/dump"
	"voltar/internal/fail"
	"voltar/internal/progress"
	"voltar/internal/restore"
)

// restoreFlags are the flags of `voltar restore`.
type restoreFlags struct {
	partition, toDir, toImage, toDevice string
	format                              string
	force                               bool
	paths                               []string
}

func (a *app) restoreCmd() *cobra.Command {
	var o restoreFlags
	cmd := &cobra.Command{
		Use:   "restore BACKUP [--partition pN] [--path PATTERN]... --to DIR | --to-image FILE | --to-device DEV",
		Short: "Restore a backup into a directory, or re-create the whole volume",
		Long: `Restore BACKUP (<vg>/<volume>/<timestamp>, or .../latest), checking every byte
against its SHA-256 while reading.

  --to DIR          extract the filesystems into DIR (one filesystem directly,
                    several as DIR/p1, DIR/p2 ...); --partition picks one,
                    --path restores only matching entries (a directory brings
                    its subtree; patterns as voltar find takes them), reading
                    only the archive frames that hold them
  --to-image FILE   re-create the volume in a new sparse image file: the
                    partition table, each filesystem with its type, UUID and
                    label, and its files; --format qcow2 makes it a
                    qcow2 image instead (qemu-img, qemu-storage-daemon)
  --to-device DEV   the same onto a block device; refused if it is mounted,
                    in use, or smaller than the volume

--to-image and --to-device re-make each filesystem with its recorded mkfs
parameters, and refuse before writing one whose files would not fit once
the data they shared (reflinks, snapshots) is written once per file.

Entries that would land outside the target (.., absolute paths, paths through
symlinks) are refused and reported. An encrypted backup is decrypted with
encryption.identity_file (or $VOLTAR_AGE_IDENTITY_FILE). With
signing.allowed_signers set, a backup whose manifest.json.sig is missing or
not made by a key that file lists is refused before anything is written.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runRestore(cmd.Context(), o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.partition, "partition", "", "restore only this filesystem (p1, p2, ... or fs)")
	f.StringVar(&o.toDir, "to", "", "extract into this directory (must be empty or missing, unless --force)")
	f.StringVar(&o.toImage, "to-image", "", "re-create the volume in this new image file")
	f.StringVar(&o.format, "format", "raw", "with --to-image: the image's format, raw or qcow2")
	f.StringVar(&o.toDevice, "to-device", "", "re-create the volume on this block device (overwrites it)")
	f.BoolVar(&o.force, "force", false, "with --to: write into a non-empty directory")
	f.StringArrayVar(&o.paths, "path", nil, "with --to: restore only entries matching this pattern (repeatable)")
	return cmd
}

func restoreError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, restore.ErrChecksum):
		return fail.Hint(err, "the stored archive is damaged; restore an older backup (voltar list) and run voltar verify")
	case errors.Is(err, restore.ErrSkippedEntries):
		return fmt.Errorf("restore finished, but not every entry was restored: %w", err)
	}
	return err
}

// runRestore restores the backup args[0] names into a directory, or
// re-creates its volume in an image file or on a device.
func (a *app) runRestore(ctx context.Context, o restoreFlags, args []string) error {
	n := 0
	for _, t := range []string{o.toDir, o.toImage, o.toDevice} {
		if t != "" {
			n++
		}
	}
	if n != 1 {
		return fail.Usage(fail.Hint(errors.New("restore needs exactly one of --to, --to-image or --to-device"), "usage: voltar restore BACKUP --to DIR"))
	}
	if len(o.paths) > 0 && o.toDir == "" {
		return fail.Usage(errors.New("--path works with --to DIR only"))
	}
	if o.partition != "" && o.toDir == "" {
		return fail.Usage(errors.New("--partition works with --to DIR only; --to-image and --to-device re-create the whole volume"))
	}
	if o.format != restore.FormatRaw && o.format != restore.FormatQcow2 {
		return fail.Usage(fmt.Errorf("--format %q: want raw or qcow2", o.format))
	}
	if o.format != restore.FormatRaw && o.toImage == "" {
		return fail.Usage(errors.New("--format works with --to-image only"))
	}
	st, host, err := a.storeAndHost(ctx)
	if err != nil {
		return err
	}
	opts := restore.Options{Partition: o.partition, Overwrite: o.force, Logger: a.log}
	// A bar per filesystem on a terminal: a big restore is long.
	bars := progress.New(stderrFile(a))
	defer bars.Wait()
	opts.Progress = func(name string, total int64) restore.Tracker {
		return bars.Start(args[0]+" "+name, total)
	}
	var res restore.Result
	if o.toDir != "" {
		a.sweepIfIdle(ctx)
		b, err := a.resolveSigned(ctx, st, host, args[0])
		if err != nil {
			return err
		}
		if dump.IsDump(b.Manifest) {
			return a.restoreDump(ctx, st, b, o.toDir, o.partition, o.force)
		}
		if opts.Identities, err = a.identitiesFor(b); err != nil {
			return err
		}
		if len(o.paths) > 0 {
			res, err = restore.Paths(ctx, st, b, o.toDir, o.paths, opts)
		} else {
			res, err = restore.ToDir(ctx, st, b, o.toDir, opts)
		}
		bars.Wait()
		restore.WriteText(a.stdout, res)
		return restoreError(err)
	}
	// Re-creating a volume maps loop devices and mounts: take the
	// lock, and name them so a crash sweep finds them.
	ses, err := a.begin(ctx, false, false)
	if err != nil {
		return err
	}
	defer ses.end()
	b, err := a.resolveSigned(ctx, st, host, args[0])
	if err != nil {
		return err
	}
	if dump.IsDump(b.Manifest) {
		return errDumpNotVolume(b)
	}
	if opts.Identities, err = a.identitiesFor(b); err != nil {
		return err
	}
	runID := backup.NewRunID(time.Now())
	opts.LoopTag = backup.LoopTag(a.cfg.RuntimeDir, runID)
	opts.Format, opts.ExportScope = o.format, backup.Scope(a.cfg.RuntimeDir)
	opts.MountDir = filepath.Join(a.cfg.RuntimeDir, runID)
	if err := os.MkdirAll(opts.MountDir, 0o700); err != nil {
		return fmt.Errorf("mount directory: %w", err)
	}
	defer os.Remove(opts.MountDir)
	if o.toImage != "" {
		res, err = restore.ToImage(ctx, st, b, o.toImage, opts)
	} else {
		res, err = restore.ToDevice(ctx, st, b, o.toDevice, opts)
	}
	bars.Wait()
	restore.WriteText(a.stdout, res)
	return restoreError(err)
}
