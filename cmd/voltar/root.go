package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"voltar/internal/domain"

	"github.com/spf13/cobra"

	"voltar/internal/config"
	"voltar/internal/fail"
	"voltar/internal/store"
	"voltar/internal/store/local"
	"voltar/internal/volume/lvm"
	"voltar/internal/volume/qcow2"
)

// app is what every command shares: flags, config, logger.
type app struct {
	stdout, stderr io.Writer
	cfgPath        string
	logLevel       string
	cfg            *config.Config
	log            *slog.Logger
	// lvmSnap is the one LVM snapshotter of a command: volumes backed up
	// at the same time reserve VG and pool space through it.
	lvmSnap *lvm.Snapshotter
	// qcowSnap is the one qcow2 snapshotter of a command: it keeps the
	// storage daemons it started until their snapshots are released.
	qcowSnap *qcow2.Snapshotter
	// virtClient is the one libvirt client of a command (domains:).
	virtClient *domain.Client
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "voltar",
		Short: "Snapshot-consistent, space-efficient backups of block volumes",
		Long: `voltar backs up LVM logical volumes and disk images (raw, qcow2), also as the disks
of libvirt domains (all of a VM's disks at one instant, the guest frozen): it snapshots each
volume, finds the partitions inside, mounts every filesystem read-only from the
snapshot and streams the used data into compressed tar archives with SHA-256
checksums. Every archive restores with plain sha256sum, zstd and tar.

Exit codes: 0 all good, 1 some volume failed, 2 usage or config error,
3 another run holds the lock, 130 interrupted (after cleanup).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// A word that is no command is a usage error (exit 2), not help
		// with exit 0.
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.setup(cmd)
		},
	}
	root.PersistentFlags().StringVar(&a.cfgPath, "config", config.DefaultPath, "configuration file")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fail.Usage(fail.Hint(err, "see `%s --help`", c.CommandPath()))
	})
	root.AddCommand(a.backupCmd(), a.runCmd(), a.listCmd(), a.verifyCmd(), a.restoreCmd(), a.pruneCmd(), a.dumpCmd(), a.volumesCmd(), a.configCmd(), a.versionCmd(), a.genDocsCmd(),
		a.lsCmd(), a.findCmd(), a.catCmd(), a.diffCmd(), a.mountCmd())
	var wrap func(c *cobra.Command)
	wrap = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			sub.Args = wrapArgs(sub.Args)
			wrap(sub)
		}
	}
	wrap(root)
	return root
}

// wrapArgs marks argument-count errors as usage errors.
func wrapArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	if check == nil {
		return nil
	}
	return func(c *cobra.Command, args []string) error {
		if err := check(c, args); err != nil {
			return fail.Usage(fail.Hint(err, "usage: %s", c.UseLine()))
		}
		return nil
	}
}

func (a *app) setup(cmd *cobra.Command) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return fail.Usage(fmt.Errorf("--log-level %q: want debug, info, warn or error", a.logLevel))
	}
	a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
	if !needsConfig(cmd) {
		return nil
	}
	cfg, err := config.Load(a.cfgPath, cmd.Flags().Changed("config"))
	if errors.Is(err, os.ErrNotExist) {
		return fail.Hint(err, "check the path given to --config; the default is /etc/voltar/voltar.yaml, and examples/voltar.yaml is a documented one to start from")
	}
	if err != nil {
		return fail.Hint(err, "every key is documented in examples/voltar.yaml")
	}
	a.cfg = cfg
	return nil
}

// needsConfig tells the commands that work without reading the config:
// version, help, shell completion, and the bare root and `config`, which
// only print help or a usage error.
func needsConfig(cmd *cobra.Command) bool {
	if cmd == cmd.Root() || !cmd.Runnable() {
		return false
	}
	for c := cmd; c != nil; c = c.Parent() {
		switch n := c.Name(); {
		case n == "version", n == "help", n == "completion", strings.HasPrefix(n, "__complete"):
			return false
		}
	}
	return cmd.Name() != "config"
}

// openStore opens a store by name: a directory or s3://bucket/prefix.
func (a *app) openStore(ctx context.Context, name string) (store.Store, error) {
	switch {
	case name == "":
		return nil, fail.Usage(fail.Hint(fmt.Errorf("no store given"), "set store: in the config or pass --to DIR"))
	case config.IsS3(name):
		return a.openS3(ctx, name)
	}
	fi, err := os.Stat(name)
	if err != nil {
		return nil, fail.Usage(fail.Hint(fmt.Errorf("store %s: %w", name, err), "create the directory (mkdir -m 0700 %s) or fix store: in the config", name))
	}
	if !fi.IsDir() {
		return nil, fail.Usage(fmt.Errorf("store %s is not a directory", name))
	}
	// Absolute, because a run's journal names its store for a later sweep
	// that may start in another directory.
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, err
	}
	return local.New(abs), nil
}

// storeAndHost opens the configured store and names this host in it. Every
// command that moves data calls it once its flags (--to, --compress) have
// amended the config, so the memory limit is set here, from the final one.
func (a *app) storeAndHost(ctx context.Context) (store.Store, string, error) {
	setMemoryLimit(a.cfg)
	st, err := a.openStore(ctx, a.cfg.Store.Path)
	if err != nil {
		return nil, "", err
	}
	host, err := a.cfg.HostName()
	if err != nil {
		return nil, "", err
	}
	return st, host, nil
}

// given returns the value of the string flag name when it was given on the
// command line, else nil: such a flag overrides the config only then.
func given(cmd *cobra.Command, name string) *string {
	if !cmd.Flags().Changed(name) {
		return nil
	}
	v, _ := cmd.Flags().GetString(name)
	return &v
}
