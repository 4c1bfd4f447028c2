package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"voltar/internal/fail"
)

// genDocsCmd writes the manual pages from the commands themselves, so that
// they never drift from --help. Hidden: it serves the package build
// (scripts/build-deb.sh), not users.
func (a *app) genDocsCmd() *cobra.Command {
	var manDir string
	cmd := &cobra.Command{
		Use:    "gen-docs --man DIR",
		Short:  "Write voltar(8) and one manual page per command into DIR",
		Hidden: true,
		Args:   cobra.NoArgs,
		// No config, no logger: the root's set-up must not read
		// /etc/voltar/voltar.yaml on a build machine.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			if manDir == "" {
				return fail.Usage(fmt.Errorf("gen-docs: --man DIR is required"))
			}
			if err := os.MkdirAll(manDir, 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			literalLong(root)
			header := &doc.GenManHeader{
				Section: "8",
				Source:  "voltar " + version,
				Manual:  "System Administration",
			}
			if err := doc.GenManTree(root, header, manDir); err != nil {
				return fmt.Errorf("gen-docs: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "directory for the manual pages (section 8)")
	return cmd
}

// literalLong makes every command's long help print in the manual page as
// it does in --help. cobra/doc reads it as Markdown, which drops
// <placeholders> as HTML and re-flows the aligned option lists; a fenced
// block keeps it verbatim.
func literalLong(c *cobra.Command) {
	if c.Long != "" {
		c.Long = "```\n" + c.Long + "\n```"
	}
	for _, sub := range c.Commands() {
		literalLong(sub)
	}
}
