package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"voltar/internal/catalog"
	"voltar/internal/fail"
	"voltar/internal/mountfs"
)

func (a *app) mountCmd() *cobra.Command {
	var allowOther bool
	cmd := &cobra.Command{
		Use:   "mount MOUNTPOINT [--allow-other]",
		Short: "Serve every backup of the store as a read-only file system",
		Long: `Mount the store read-only at MOUNTPOINT (FUSE) and serve it until interrupted
(Ctrl-C, SIGTERM), then unmount:

  MOUNTPOINT/<host>/<vg>/<volume>/<timestamp>/<p1|p2|...|fs>/...

Directories and attributes (sizes, modes, owners, times, symlinks, extended
attributes) come from the backups' file indexes. Reading a file fetches only
the archive frames that hold it, each checked against its SHA-256 first: a
damaged frame fails the read with an I/O error and a log line, never with
wrong bytes. A mount left behind by a killed voltar mount is unmounted by the
next voltar command. --allow-other lets other users in; the kernel still checks
each file's mode against the caller.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runMount(cmd.Context(), args[0], allowOther)
		},
	}
	cmd.Flags().BoolVar(&allowOther, "allow-other", false, "let users other than root use the mount")
	return cmd
}

func (a *app) runMount(ctx context.Context, dir string, allowOther bool) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fail.Usage(fail.Hint(fmt.Errorf("mount point %s is not a directory", dir), "create it: mkdir -p %s", dir))
	}
	a.sweepIfIdle(ctx)
	st, _, err := a.storeAndHost(ctx)
	if err != nil {
		return err
	}
	ids, err := a.identities()
	if err != nil {
		return err
	}
	srv, err := mountfs.Mount(ctx, st, dir, mountfs.Options{AllowOther: allowOther, Identities: ids, Logger: a.log,
		Check: func(ctx context.Context, b *catalog.Backup) error { return a.checkSignature(ctx, st, b) }})
	if err != nil {
		return fail.Hint(err, "voltar mount needs /dev/fuse and fusermount3 (Debian package fuse3)")
	}
	done, err := mountfs.Register(a.cfg.RuntimeDir, dir)
	if err != nil {
		srv.Unmount()
		return err
	}
	defer done()
	a.log.Info("serving the store read-only; stop with Ctrl-C or SIGTERM", "store", st.String(), "mountpoint", dir)
	served := make(chan struct{})
	go func() { srv.Wait(); close(served) }()
	select {
	case <-served: // unmounted from outside (fusermount -u)
		return nil
	case <-ctx.Done():
	}
	if err := srv.Unmount(); err != nil {
		return fail.Hint(fmt.Errorf("unmount %s: %w", dir, err), "a process still uses it: leave it (cd out, close files), then fusermount3 -u %s", dir)
	}
	<-served
	return nil // stopping the mount is its normal end
}
