package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"voltar/internal/backup"
	"voltar/internal/fail"
	"voltar/internal/sysexec"
	"voltar/internal/units"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
	"voltar/internal/volume/lvm"
)

// lvm returns the LVM snapshotter configured by the config.
func (a *app) lvm() (*lvm.Snapshotter, error) {
	if _, err := exec.LookPath("lvcreate"); err != nil {
		return nil, fail.Hint(fmt.Errorf("LVM tools not found"), "install lvm2 to back up logical volumes")
	}
	pol, err := lvm.ParsePolicy(a.cfg.LVM.SnapshotSize)
	if err != nil {
		return nil, fail.Usage(fmt.Errorf("lvm.snapshot_size: %w", err))
	}
	return &lvm.Snapshotter{Runner: sysexec.Exec{}, Policy: pol, Logger: a.log, Scope: backup.Scope(a.cfg.RuntimeDir)}, nil
}

// images returns the image snapshotter: clones go next to each image or,
// where no reflink is possible, into the scratch directory.
func (a *app) images() *image.Snapshotter {
	s := &image.Snapshotter{Scratch: a.cfg.Scratch(), Scope: backup.Scope(a.cfg.RuntimeDir), Logger: a.log}
	for _, im := range a.cfg.Images {
		s.Dirs = append(s.Dirs, filepath.Dir(im.Path))
	}
	return s
}

// candidate is one volume `run` would or would not back up, and why.
type candidate struct {
	Volume   string `json:"volume"`
	Kind     string `json:"kind"`
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	Selected bool   `json:"selected"`
	Reason   string `json:"reason,omitempty"`
}

// selection lists what the config selects, with reasons for the rest.
func (a *app) selection(ctx context.Context) ([]candidate, []volume.Volume, error) {
	var out []candidate
	var vols []volume.Volume
	if len(a.cfg.LVM.VolumeGroups) > 0 {
		s, err := a.lvm()
		if err != nil {
			return nil, nil, err
		}
		cs, err := s.List(ctx, a.cfg.LVM.VolumeGroups, lvm.Filter{Include: a.cfg.LVM.Include, Exclude: a.cfg.LVM.Exclude})
		if err != nil {
			return nil, nil, err
		}
		for _, c := range cs {
			out = append(out, candidate{Volume: c.Volume.ID(), Kind: c.Volume.Kind, Path: c.Volume.Path, Size: c.Volume.Size, Selected: c.Selected, Reason: c.Reason})
			if c.Selected {
				vols = append(vols, c.Volume)
			}
		}
	}
	for _, im := range a.cfg.Images {
		v, err := image.Resolve(im.Path, im.Offline)
		if err != nil {
			out = append(out, candidate{Volume: "image/" + im.Path, Kind: volume.KindImage, Path: im.Path, Reason: err.Error()})
			continue
		}
		out = append(out, candidate{Volume: v.ID(), Kind: v.Kind, Path: v.Path, Size: v.Size, Selected: true})
		vols = append(vols, v)
	}
	return out, vols, nil
}

func (a *app) volumesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "volumes",
		Short: "List the volumes `voltar run` would back up, and why others not",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			a.sweepIfIdle(ctx)
			cs, _, err := a.selection(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(cs)
			}
			if len(cs) == 0 {
				fmt.Fprintln(a.stdout, "no volumes configured: set lvm.volume_groups or images in the config")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VOLUME\tKIND\tSIZE\tBACKED UP\tWHY NOT")
			for _, c := range cs {
				yes := "yes"
				if !c.Selected {
					yes = "no"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Volume, c.Kind, units.Bytes(c.Size), yes, c.Reason)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

var _ volume.Preflighter = (*lvm.Snapshotter)(nil)
