package main

import (
	"context"

	"github.com/spf13/cobra"

	"voltar/internal/catalog"
)

// listFlags are the flags of `voltar list`.
type listFlags struct{ asJSON, allHosts bool }

func (a *app) listCmd() *cobra.Command {
	var o listFlags
	cmd := &cobra.Command{
		Use:   "list [--json] [VOLUME]",
		Short: "List complete backups, and incomplete folders separately",
		Long: `List every complete backup (one with manifest.json) of this host, or of
VOLUME (vg/lv, lv or an image path). Folders without a manifest are shown
apart as incomplete, and folders whose manifest.json is there but unusable
(unreadable, invalid, or not matching manifest.json.sha256) as damaged:
neither are backups. LEVEL says whether a backup is full or an increment
("incr 2": two steps from its full); CHAIN names the backup an increment
builds on and its full, and says BROKEN, and why, when an ancestor is
missing, damaged, incomplete or was replaced since (--json: kind, level,
parent, full, chain_broken).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runList(cmd.Context(), o, args)
		},
	}
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print as JSON")
	cmd.Flags().BoolVar(&o.allHosts, "all-hosts", false, "list the backups of every host in the store")
	return cmd
}

// runList lists the backups of this host (or every host), or of the volume
// args names.
func (a *app) runList(ctx context.Context, o listFlags, args []string) error {
	a.sweepIfIdle(ctx)
	st, err := a.openStore(ctx, a.cfg.Store.Path)
	if err != nil {
		return err
	}
	host := ""
	if !o.allHosts {
		if host, err = a.cfg.HostName(); err != nil {
			return err
		}
	}
	filter := ""
	if len(args) == 1 {
		filter = args[0]
	}
	c, err := catalog.List(ctx, st, host, filter)
	if err != nil {
		return err
	}
	if o.asJSON {
		return a.printJSON(c)
	}
	return c.WriteText(a.stdout)
}
