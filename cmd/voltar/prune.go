package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"voltar/internal/prune"
	"voltar/internal/units"
)

// pruneFlags are the flags of `voltar prune`.
type pruneFlags struct{ dryRun, asJSON bool }

func (a *app) pruneCmd() *cobra.Command {
	var o pruneFlags
	cmd := &cobra.Command{
		Use:   "prune [--dry-run] [VOLUME]",
		Short: "Delete backups the retention policy no longer keeps",
		Long: `Apply the retention policy (retention: in the config) to every volume's
backups of this host, or VOLUME's. Chains are kept whole: a backup that a
kept incremental backup builds on is never deleted, and the newest
restorable backup of a volume (one whose whole chain is there and complete)
is never deleted either. Folders without manifest.json older than
incomplete_grace are. --dry-run prints every decision with its reasons,
such as which kept backup needs a parent, and deletes nothing.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runPrune(cmd.Context(), o, args)
		},
	}
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print the decisions, delete nothing")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print decisions as JSON")
	return cmd
}

// runPrune applies the retention policy to this host's backups, or to
// those of the volume args name.
func (a *app) runPrune(ctx context.Context, o pruneFlags, args []string) error {
	po, err := a.pruneOptions(o.dryRun)
	if err != nil {
		return err
	}
	st, host, err := a.storeAndHost(ctx)
	if err != nil {
		return err
	}
	ses, err := a.begin(ctx, false, false)
	if err != nil {
		return err
	}
	defer ses.end()
	filter := ""
	if len(args) == 1 {
		filter = args[0]
	}
	res, err := prune.Store(ctx, st, host, filter, po)
	if res == nil && err != nil {
		return err // nothing decided: no summary to print
	}
	if o.asJSON {
		if jerr := a.printJSON(res); jerr != nil {
			return jerr
		}
		return err
	}
	fmt.Fprintf(a.stdout, "policy: %s\n", po.Policy)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKUP\tDECISION\tBYTES\tWHY")
	var removed, kept int
	for _, v := range res {
		for _, d := range v.Decisions {
			what := "keep"
			switch {
			case d.Keep:
				kept++
			case d.Removed:
				what, removed = "removed", removed+1
			case o.dryRun:
				what, removed = "would remove", removed+1
			default:
				what = "remove FAILED: " + d.Error
			}
			id := d.ID
			if d.Level > 0 {
				id += fmt.Sprintf(" (incr %d)", d.Level)
			}
			switch {
			case d.Damaged:
				id += " (damaged)"
			case !d.Complete:
				id += " (incomplete)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", id, what, units.Bytes(d.Bytes), strings.Join(d.Reasons, "; "))
		}
	}
	tw.Flush()
	verb := "removed"
	if o.dryRun {
		verb = "would remove"
	}
	fmt.Fprintf(a.stdout, "%d kept, %s %d\n", kept, verb, removed)
	return err
}
