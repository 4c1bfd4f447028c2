package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"voltar/internal/config"
	"voltar/internal/fail"
)

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the configuration file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fail.Usage(fail.Hint(errors.New("config needs a subcommand"), "voltar config check"))
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check [--config FILE]",
		Short: "Validate the configuration and print what voltar run would do",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runConfigCheck(cmd.Context())
		},
	})
	return cmd
}

// runConfigCheck validates the config as a run would read it and prints
// what the run would do.
func (a *app) runConfigCheck(ctx context.Context) error {
	cfg := a.cfg
	// Every command that reads or writes backups needs it; only backup
	// --to can do without.
	if cfg.Store.Path == "" {
		return fail.Usage(fail.Hint(fmt.Errorf("config %s sets no store", a.cfgPath),
			"set store: to a directory (store: /srv/backup/voltar) or s3://bucket/prefix"))
	}
	// The global policy and each dump's own, as run would use them.
	po, err := a.pruneOptions(false)
	if err != nil {
		return err
	}
	pol := po.Policy
	out, err := a.outputs()
	if err != nil {
		return err
	}
	mail := out.Mail
	host, err := cfg.HostName()
	if err != nil {
		return err
	}
	rcpt, err := a.recipients()
	if err != nil {
		return err
	}
	if _, err := a.identities(); err != nil {
		return err
	}
	// Checked as backup and verify check them: a bad key fails here.
	if _, err := a.signer(ctx); err != nil {
		return err
	}
	if _, err := a.verifier(); err != nil {
		return err
	}
	w := a.stdout
	fmt.Fprintf(w, "config %s is valid\n\n", a.cfgPath)
	fmt.Fprintf(w, "store        %s (host folder %s/)\n", cfg.Store.Path, host)
	if cfg.Store.RequireMount != "" {
		fmt.Fprintf(w, "             must be mounted at %s\n", cfg.Store.RequireMount)
	}
	if set, err := cfg.Store.S3(cfg.Store.Path); config.IsS3(cfg.Store.Path) && err == nil {
		scheme := "https"
		if !set.Secure {
			scheme = "http"
		}
		fmt.Fprintf(w, "             on %s://%s (not contacted by config check)\n", scheme, set.Endpoint)
	}
	level := "default level"
	if cfg.CompressionLevel != 0 {
		level = fmt.Sprintf("level %d", cfg.CompressionLevel)
	}
	fmt.Fprintf(w, "compression  %s, %s\n", cfg.Compression, level)
	if rcpt != nil {
		fmt.Fprintf(w, "encryption   age, to %d recipient(s)\n", len(rcpt.Keys()))
	} else {
		fmt.Fprintln(w, "encryption   none")
	}
	if p := a.identityFile(); p != "" {
		fmt.Fprintf(w, "identity     %s (verify and restore decrypt with it)\n", p)
	}
	switch {
	case cfg.Signing.KeyFile != "":
		fmt.Fprintf(w, "signing      manifests signed with %s\n", cfg.Signing.KeyFile)
	default:
		fmt.Fprintln(w, "signing      none")
	}
	if cfg.Signing.AllowedSigners != "" {
		fmt.Fprintf(w, "signers      %s (verify and restore require a good signature)\n", cfg.Signing.AllowedSigners)
	}
	fmt.Fprintf(w, "concurrency  %d volume(s) at a time\n", cfg.Concurrency)
	fmt.Fprintf(w, "isolation    %s", cfg.Isolation)
	if n := len(cfg.VolumeIsolation); n > 0 {
		fmt.Fprintf(w, " (%d volume(s) set apart in volume_isolation)", n)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "snapshots    LVM %s\n", cfg.LVM.SnapshotSize)
	fmt.Fprintf(w, "retention    %s\n", pol)
	if mail.Host != "" {
		fmt.Fprintf(w, "mail         via %s to %v\n", mail.Host, mail.To)
	} else {
		fmt.Fprintln(w, "mail         none")
	}
	if cfg.Report.JSONFile != "" {
		fmt.Fprintf(w, "json report  %s\n", cfg.Report.JSONFile)
	}
	if cfg.Report.PrometheusTextfile != "" {
		fmt.Fprintf(w, "metrics      %s\n", cfg.Report.PrometheusTextfile)
	}
	cs, _, err := a.selection(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nvolumes:\n")
	for _, c := range cs {
		state := "backed up"
		switch {
		case c.Missing:
			state = "MISSING (voltar run fails it): " + c.Reason
		case !c.Selected:
			state = "not backed up: " + c.Reason
		}
		if c.Selected && !c.Missing {
			state += ", isolation: " + c.Isolation
		}
		fmt.Fprintf(w, "  %-40s %s\n", c.Volume, state)
		if !c.Selected || c.Missing {
			continue
		}
		h := cfg.HooksFor(c.Volume)
		for _, x := range []struct {
			name string
			argv []string
		}{{"pre_backup", h.PreBackup}, {"pre_snapshot", h.PreSnapshot}, {"post_snapshot", h.PostSnapshot}, {"post_backup", h.PostBackup}} {
			if len(x.argv) > 0 {
				fmt.Fprintf(w, "  %-40s %s %q\n", "", x.name, x.argv)
			}
		}
		if inc := cfg.IncrementalFor(c.Volume); inc.MaxChain > 0 {
			fmt.Fprintf(w, "  %-40s incremental: max_chain %d, full_every %s\n", "", inc.MaxChain, inc.FullEvery)
		}
	}
	if len(cs) == 0 {
		fmt.Fprintln(w, "  none: set lvm.volume_groups or images")
	}
	return nil
}
