package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"voltar/internal/units"
)

// candidate is one volume `run` would or would not back up, and why.
type candidate struct {
	Volume   string `json:"volume"`
	Kind     string `json:"kind"`
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	Selected bool   `json:"selected"`
	Reason   string `json:"reason,omitempty"`
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
}
