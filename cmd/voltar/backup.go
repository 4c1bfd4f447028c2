package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"voltar/internal/backup"
	"voltar/internal/codec"
	"voltar/internal/fail"
	"voltar/internal/manifest"
	"voltar/internal/progress"
	"voltar/internal/units"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
)

func (a *app) backupCmd() *cobra.Command {
	var to, compress string
	var excludes []string
	var asJSON, offline bool
	cmd := &cobra.Command{
		Use:   "backup [--to STORE] [--compress zstd|gzip|none] [--exclude GLOB]... VOLUME...",
		Short: "Back up volumes now",
		Long: `Back up each VOLUME: vg/lv, /dev/vg/lv, or the path of a raw disk image.
Each gets a snapshot, its partitions' filesystems are archived from the
snapshot, and the snapshot is removed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if cmd.Flags().Changed("to") {
				a.cfg.Store.Path = to
			}
			if cmd.Flags().Changed("compress") {
				if !codec.Valid(compress) {
					return fail.Usage(fmt.Errorf("--compress %q: want zstd, gzip or none", compress))
				}
				a.cfg.Compression, a.cfg.CompressionLevel = compress, 0
			}
			st, host, err := a.storeAndHost(ctx)
			if err != nil {
				return err
			}
			rcpt, err := a.recipients()
			if err != nil {
				return err
			}
			// Resolve every volume before touching anything, so a typo in the
			// third argument does not leave the first two half done.
			var vols []volume.Volume
			var snaps []volume.Snapshotter
			for _, arg := range args {
				v, s, err := a.resolve(ctx, arg, offline)
				if err != nil {
					return err
				}
				for _, o := range vols {
					if o.ID() == v.ID() {
						return fail.Usage(fail.Hint(fmt.Errorf("%s and %s are both the volume %s", o.Path, v.Path, v.ID()),
							"back up one at a time only if they are the same volume; image files need distinct names"))
					}
				}
				vols = append(vols, v)
				snaps = append(snaps, s)
			}
			l, err := a.lockAndSweep(ctx, hasLVM(vols))
			if err != nil {
				return err
			}
			defer l.Release()
			runID, j, err := a.startJournal()
			if err != nil {
				return err
			}
			defer a.finishJournal(j)
			settings := a.writerSettings(st, host, rcpt, j)
			bars := progress.New(stderrFile(a))
			var results []*manifest.Manifest
			var errs []error
			for i, v := range vols {
				if ctx.Err() != nil {
					break
				}
				m, err := backup.Volume(ctx, v, backup.Options{
					Settings: settings, Excludes: a.excludesFor(v, excludes),
					BtrfsSnapshots: a.cfg.IncludeBtrfsSnapshots(v.ID()),
					RuntimeDir:     a.cfg.RuntimeDir, RunID: runID, Snapshotter: snaps[i], Progress: bars,
				})
				if err != nil {
					errs = append(errs, err)
					continue
				}
				results = append(results, m)
			}
			bars.Wait()
			if asJSON {
				if err := a.printJSON(results); err != nil {
					return err
				}
			} else {
				for _, m := range results {
					printBackup(a, m)
				}
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if len(errs) == 1 {
				return errs[0]
			}
			if len(errs) > 1 {
				return fmt.Errorf("%d of %d volumes failed:\n%w", len(errs), len(vols), errors.Join(errs...))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "store: a directory or s3://bucket/prefix (default: store: from the config)")
	f.StringVar(&compress, "compress", "", "compression: zstd, gzip or none (default: compression: from the config, else zstd)")
	f.StringArrayVar(&excludes, "exclude", nil, "leave out paths matching this glob (repeatable); a pattern without / matches names at any depth")
	f.BoolVar(&asJSON, "json", false, "print the manifests as JSON")
	f.BoolVar(&offline, "offline", false, "image files are not in use: read them in place instead of cloning")
	return cmd
}

// excludesFor merges the global, per-volume and command-line patterns.
func (a *app) excludesFor(v volume.Volume, extra []string) []string {
	out := append([]string{}, a.cfg.Excludes...)
	out = append(out, a.cfg.VolumeExcludes[v.ID()]...)
	return append(out, extra...)
}

// resolve turns a VOLUME argument into a volume and the snapshotter for it.
func (a *app) resolve(ctx context.Context, arg string, offline bool) (volume.Volume, volume.Snapshotter, error) {
	if isLVMSpec(arg) {
		s, err := a.lvm()
		if err != nil {
			return volume.Volume{}, nil, err
		}
		v, err := s.Resolve(ctx, arg)
		if err != nil {
			return volume.Volume{}, nil, fail.Usage(err)
		}
		return v, s, nil
	}
	for _, im := range a.cfg.Images {
		if im.Path == arg {
			offline = offline || im.Offline
		}
	}
	v, err := image.Resolve(arg, offline)
	if err != nil {
		return volume.Volume{}, nil, err
	}
	return v, &image.Snapshotter{Scratch: a.cfg.Scratch(), Scope: backup.Scope(a.cfg.RuntimeDir), Logger: a.log}, nil
}

// snapshotter returns what snapshots v.
func (a *app) snapshotter(v volume.Volume) (volume.Snapshotter, error) {
	if v.Kind == volume.KindLVM {
		return a.lvm()
	}
	return &image.Snapshotter{Scratch: a.cfg.Scratch(), Scope: backup.Scope(a.cfg.RuntimeDir), Logger: a.log}, nil
}

// isLVMSpec tells vg/lv and /dev/vg/lv from image paths: an existing regular
// file is always an image.
func isLVMSpec(arg string) bool {
	if fi, err := os.Stat(arg); err == nil && fi.Mode().IsRegular() {
		return false
	}
	if strings.HasPrefix(arg, "/dev/") {
		return strings.Count(strings.TrimPrefix(arg, "/dev/"), "/") == 1 && !strings.HasPrefix(arg, "/dev/loop")
	}
	return !strings.HasPrefix(arg, "/") && !strings.HasPrefix(arg, ".") && strings.Count(arg, "/") == 1
}

func hasLVM(vols []volume.Volume) bool {
	for _, v := range vols {
		if v.Kind == volume.KindLVM {
			return true
		}
	}
	return false
}

func printBackup(a *app, m *manifest.Manifest) {
	var fss []string
	for _, f := range m.Filesystems {
		s := f.Name + ":" + f.Type
		if f.Mode == manifest.ModeSkipped {
			s += " (skipped: " + f.Reason + ")"
		}
		// What the archive lacks is said here, not only in the log.
		var notes []string
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
	fmt.Fprintf(a.stdout, "%s  %s  %s stored, %s source, %d files, in %s  [%s]\n",
		m.ID, m.Status, units.Bytes(m.StoredBytes()), units.Bytes(m.SourceBytes()), m.Files(),
		units.Duration(m.Finished.Sub(m.Started)), strings.Join(fss, ", "))
}

func stderrFile(a *app) *os.File {
	if f, ok := a.stderr.(*os.File); ok {
		return f
	}
	return nil
}
