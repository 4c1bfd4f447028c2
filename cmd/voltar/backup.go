package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"voltar/internal/backup"
	"voltar/internal/manifest"
	"voltar/internal/progress"
	"voltar/internal/units"
)

// backupFlags are the flags of `voltar backup`; to and compress are nil
// unless given, as they override the config only then.
type backupFlags struct {
	to, compress    *string
	excludes        []string
	asJSON, offline bool
	full            bool
}

func (a *app) backupCmd() *cobra.Command {
	var o backupFlags
	cmd := &cobra.Command{
		Use:   "backup [--to STORE] [--compress zstd|gzip|none] [--exclude GLOB]... VOLUME...",
		Short: "Back up volumes now",
		Long: `Back up each VOLUME: vg/lv, /dev/vg/lv, or the path of a raw disk image.
Each gets a snapshot, its partitions' filesystems are archived from the
snapshot, and the snapshot is removed. With signing.key_file set, every
manifest is signed (manifest.json.sig). An LV another voltar installation
is backing up at the same moment fails (its lock is in /run/lock).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.to, o.compress = given(cmd, "to"), given(cmd, "compress")
			return a.runBackup(cmd.Context(), o, args)
		},
	}
	f := cmd.Flags()
	f.String("to", "", "store: a directory or s3://bucket/prefix (default: store: from the config)")
	f.String("compress", "", "compression: zstd, gzip or none (default: compression: from the config, else zstd)")
	f.StringArrayVar(&o.excludes, "exclude", nil, "leave out paths matching this glob (repeatable); a pattern without / matches names at any depth")
	f.BoolVar(&o.asJSON, "json", false, "print the manifests as JSON")
	f.BoolVar(&o.full, "full", false, "make a full backup even where incremental: would store only the changes")
	f.BoolVar(&o.offline, "offline", false, "image files are not in use: read them in place instead of cloning (a live qcow2 image needs a filesystem with reflinks, xfs or btrfs; otherwise stop its VM and use --offline)")
	return cmd
}

// runBackup backs up the volumes args name, one after the other.
func (a *app) runBackup(ctx context.Context, o backupFlags, args []string) error {
	if err := a.override(o.to, o.compress); err != nil {
		return err
	}
	st, host, err := a.storeAndHost(ctx)
	if err != nil {
		return err
	}
	rcpt, err := a.recipients()
	if err != nil {
		return err
	}
	sig, err := a.signer(ctx)
	if err != nil {
		return err
	}
	vols, snaps, err := a.resolveAll(ctx, args, o.offline)
	if err != nil {
		return err
	}
	ses, err := a.begin(ctx, hasLVM(vols), true)
	if err != nil {
		return err
	}
	defer ses.end()
	settings := a.writerSettings(st, host, rcpt, sig, ses.journal)
	bars := progress.New(stderrFile(a))
	var results []*manifest.Manifest
	var errs []error
	var stopped error // an interrupt before every volume was backed up
	for i, v := range vols {
		if stopped = ctx.Err(); stopped != nil {
			break
		}
		m, err := backup.Volume(ctx, v, backup.Options{
			Settings: settings, Excludes: a.excludesFor(v, o.excludes),
			BtrfsSnapshots: a.cfg.IncludeBtrfsSnapshots(v.ID()),
			Hooks:          a.hooksFor(v),
			BootRaw:        a.cfg.BootPartitions == "raw",
			Isolation:      a.cfg.IsolationFor(v.ID()),
			Incremental:    a.incrementalFor(v, o.full),
			RuntimeDir:     a.cfg.RuntimeDir, RunID: ses.runID, Snapshotter: snaps[i], Progress: bars,
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		results = append(results, m)
	}
	bars.Wait()
	if err := printResults(a, o.asJSON, results, results, printBackup); err != nil {
		return err
	}
	// A signal after the last backup completed does not undo it: only
	// volumes not backed up make the command interrupted.
	if stopped != nil {
		return stopped
	}
	if len(errs) == 1 {
		return errs[0]
	}
	if len(errs) > 1 {
		return fmt.Errorf("%d of %d volumes failed:\n%w", len(errs), len(vols), errors.Join(errs...))
	}
	return nil
}

func printBackup(a *app, m *manifest.Manifest) {
	var fss []string
	for _, f := range m.Filesystems {
		s := f.Name + ":" + f.What()
		if f.Mode == manifest.ModeRaw {
			s += " (raw)"
		}
		if f.Mode == manifest.ModeSkipped {
			s += " (skipped: " + f.Reason + ")"
		}
		// What the archive lacks is said here, not only in the log.
		var notes []string
		if f.Incremental {
			notes = append(notes, fmt.Sprintf("incremental: %d entries unchanged", f.Unchanged))
		}
		if len(f.Subvolumes) > 0 {
			notes = append(notes, fmt.Sprintf("%d subvolumes, %d skipped", len(f.Subvolumes), f.SkippedSubvolumes()))
		}
		if len(f.NotEntered) > 0 {
			notes = append(notes, fmt.Sprintf("%d not entered", len(f.NotEntered)))
		}
		if len(notes) > 0 {
			s += " (" + strings.Join(notes, "; ") + ")"
		}
		fss = append(fss, s)
	}
	if o := m.Outside; o != nil {
		fss = append(fss, fmt.Sprintf("outside the partitions: %s in %d runs", units.Bytes(o.SourceBytes), len(o.Runs)))
	}
	fmt.Fprintf(a.stdout, "%s  %s  %s stored, %s source, %d files, in %s  [%s]\n",
		m.ID, m.Status, units.Bytes(m.PublishedBytes), units.Bytes(m.DataBytes()), m.Files(),
		units.Duration(m.Finished.Sub(m.Started)), strings.Join(fss, ", "))
	if c := m.Chain; c != nil {
		fmt.Fprintf(a.stdout, "  incremental, level %d: builds on %s (full %s)\n", c.Level, c.Parent, c.Full)
	}
	for _, w := range m.AllWarnings() {
		fmt.Fprintf(a.stdout, "  warning: %s\n", w)
	}
}

func stderrFile(a *app) *os.File {
	if f, ok := a.stderr.(*os.File); ok {
		return f
	}
	return nil
}
