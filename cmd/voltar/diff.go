package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"voltar/internal/browse"
	"voltar/internal/index"
)

func (a *app) diffCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "diff BACKUP1 BACKUP2 [--json]",
		Short: "Show what was added, removed or changed between two backups",
		Long: `Compare two backups of a volume from their file indexes: one line per entry,
"+" added, "-" removed, "~" changed with what changed (type, content: size or
link target, mode, owner, xattrs, mtime, links). A file rewritten with the same
size shows as mtime only: the index holds no content hashes. Directory mtimes
are not compared (they change with every entry added or removed).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runDiff(cmd.Context(), args[0], args[1], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the changes as JSON")
	return cmd
}

func (a *app) runDiff(ctx context.Context, id1, id2 string, asJSON bool) error {
	b1, close1, err := a.openBrowse(ctx, id1)
	if err != nil {
		return err
	}
	defer close1()
	b2, close2, err := a.openBrowse(ctx, id2)
	if err != nil {
		return err
	}
	defer close2()
	empty := &index.Index{}
	open := func(bk *browse.Backup, name string) (*index.Index, error) {
		for _, m := range bk.Filesystems() {
			if m.Name == name && m.Mode == "files" {
				f, err := bk.FS(ctx, name)
				if err != nil {
					return nil, err
				}
				a.streamedNote(f)
				return f.Index, nil
			}
		}
		return empty, nil
	}
	names := []string{}
	seen := map[string]bool{}
	for _, bk := range []*browse.Backup{b1, b2} {
		for _, m := range bk.Filesystems() {
			if !seen[m.Name] && m.Mode == "files" {
				seen[m.Name] = true
				names = append(names, m.Name)
			}
		}
	}
	out := []browse.Change{}
	for _, name := range names {
		i1, err := open(b1, name)
		if err != nil {
			return err
		}
		i2, err := open(b2, name)
		if err != nil {
			return err
		}
		for _, c := range browse.Diff(i1, i2) {
			if len(names) > 1 {
				c.Path = strings.TrimSuffix(name+"/"+c.Path, "/.")
			}
			out = append(out, c)
		}
	}
	if asJSON {
		return a.printJSON(out)
	}
	w := bufio.NewWriterSize(a.stdout, 64<<10)
	defer w.Flush()
	for _, c := range out {
		switch c.Kind {
		case "added":
			fmt.Fprintf(w, "+ %s\n", quoteName(c.Path))
		case "removed":
			fmt.Fprintf(w, "- %s\n", quoteName(c.Path))
		default:
			fmt.Fprintf(w, "~ %s (%s)\n", quoteName(c.Path), strings.Join(c.What, ", "))
		}
	}
	return nil
}
