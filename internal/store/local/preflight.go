package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"voltar/internal/disk"
	"voltar/internal/fail"
	"voltar/internal/store"
)

var _ store.Preflighter = (*Store)(nil)

// Preflight implements store.Preflighter: the directory exists, is on the
// mount o.RequireMount names, and takes a new file.
func (s *Store) Preflight(ctx context.Context, o store.PreflightOptions) error {
	fi, err := os.Stat(s.root)
	if err != nil {
		return fail.Hint(fmt.Errorf("store %s: %w", s.root, err), "create it (mkdir -m 0700) or mount the backup disk")
	}
	if !fi.IsDir() {
		return fail.Hint(fmt.Errorf("store %s is not a directory", s.root), "store.path must name a directory (or the mount point of the backup disk)")
	}
	if o.RequireMount != "" {
		ok, err := isMountPoint(o.RequireMount)
		if err != nil {
			return fail.Hint(fmt.Errorf("store: store.require_mount %s: %w", o.RequireMount, err), "mount the backup filesystem there, or fix store.require_mount")
		}
		if !ok {
			return fail.Hint(fmt.Errorf("store: %s is not mounted (store.require_mount)", o.RequireMount),
				"mount the backup filesystem; voltar will not fill the filesystem underneath")
		}
	}
	probe, err := os.CreateTemp(s.root, ".voltar-probe-")
	if err != nil {
		return fail.Hint(fmt.Errorf("store %s is not writable: %w", s.root, err), "check its permissions and that it is not mounted read-only")
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

func isMountPoint(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	mounts, err := disk.MountsUnder(abs)
	if err != nil {
		return false, fmt.Errorf("read mounts: %w", err)
	}
	for _, m := range mounts {
		if m == abs {
			return true, nil
		}
	}
	return false, nil
}
