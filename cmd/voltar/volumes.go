package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"voltar/internal/units"
)

// candidate is one volume `run` would or would not back up, and why.
type candidate struct {
	Volume   string `json:"volume"`
	Kind     string `json:"kind"`
	Format   string `json:"format,omitempty"` // qcow2; absent for raw images and LVs
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	Selected bool   `json:"selected"`
	// Missing: selected by the config but not there (an image file that
	// is gone, a volume group that cannot be listed); `run` fails it.
	// Reason says why, Hints what to do; Size is -1 (null).
	Missing bool     `json:"missing,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Hints   []string `json:"hints,omitempty"`
	// Isolation is where its filesystems are parsed: kernel or sandbox.
	Isolation string `json:"isolation"`
	// Domain and Disk: a disk of a libvirt domain (domains:), by its
	// target name in the guest; its Volume is the volume it is backed up
	// as (or its source, when it is skipped).
	Domain string `json:"domain,omitempty"`
	Disk   string `json:"disk,omitempty"`
	err    error  // the missing source's error, for the run's report
}

// MarshalJSON writes an unknown size as null.
func (c candidate) MarshalJSON() ([]byte, error) {
	type plain candidate
	v := struct {
		plain
		Size *int64 `json:"size"`
	}{plain: plain(c)}
	if c.Size >= 0 {
		v.Size = &c.Size
	}
	return json.Marshal(v)
}

// volumesFlags are the flags of `voltar volumes`.
type volumesFlags struct{ asJSON bool }

func (a *app) volumesCmd() *cobra.Command {
	var o volumesFlags
	cmd := &cobra.Command{
		Use:   "volumes",
		Short: "List the volumes `voltar run` would back up, and why others not",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runVolumes(cmd.Context(), o, args)
		},
	}
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print as JSON")
	return cmd
}

// runVolumes prints what `voltar run` would back up, and why not the rest.
func (a *app) runVolumes(ctx context.Context, o volumesFlags, args []string) error {
	a.sweepIfIdle(ctx)
	cs, _, err := a.selection(ctx)
	if err != nil {
		return err
	}
	if o.asJSON {
		return a.printJSON(cs)
	}
	if len(cs) == 0 {
		fmt.Fprintln(a.stdout, "no volumes configured: set lvm.volume_groups, images or domains in the config")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tKIND\tSIZE\tBACKED UP\tISOLATION\tWHY NOT")
	var missing []candidate
	for _, c := range cs {
		yes, size := "yes", "-"
		switch {
		case c.Missing:
			yes = "MISSING"
			missing = append(missing, c)
		case !c.Selected:
			yes = "no"
		}
		if c.Size >= 0 {
			size = units.Bytes(c.Size)
		}
		kind := c.Kind
		if c.Format != "" {
			kind += " (" + c.Format + ")"
		}
		if n := domainNote(c); n != "" {
			kind += ", " + n
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Volume, kind, size, yes, c.Isolation, c.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range missing {
		fmt.Fprintf(a.stdout, "\n%s is selected but missing: voltar run reports it as failed\n", c.Volume)
		for _, h := range c.Hints {
			fmt.Fprintf(a.stdout, "hint: %s\n", h)
		}
	}
	return nil
}
