package restore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"voltar/internal/btrfs"
	"voltar/internal/manifest"
	"voltar/internal/sysexec"
)

// makeSubvolumes re-creates the recorded btrfs subvolumes of fs in the new
// filesystem mounted (at its top level) on dir, parents first, before the
// archive is extracted into them. A skipped one (a read-only snapshot not
// archived) is not made: its directory comes back empty, as a plain one.
func makeSubvolumes(ctx context.Context, fs manifest.Filesystem, dir string) error {
	svs := append([]manifest.Subvolume(nil), fs.Subvolumes...)
	sort.SliceStable(svs, func(i, j int) bool { return strings.Count(svs[i].Path, "/") < strings.Count(svs[j].Path, "/") })
	for _, sv := range svs {
		if sv.Skipped {
			continue
		}
		p, err := subvolPath(dir, sv.Path)
		if err != nil {
			return err
		}
		// A subvolume may sit in a plain directory: that comes from the
		// archive, which gives it its metadata.
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("subvolume %s: %w", sv.Path, err)
		}
		if err := btrfs.Create(ctx, sysexec.Exec{}, p); err != nil {
			return err
		}
	}
	return nil
}

// finishSubvolumes sets the default subvolume and then the read-only flags
// recorded, once the archive is in. Subvolume ids differ after re-creation,
// so the default is found by its path.
func finishSubvolumes(ctx context.Context, fs manifest.Filesystem, dir string) error {
	for _, sv := range fs.Subvolumes {
		if !sv.Default || sv.Skipped {
			continue
		}
		p, err := subvolPath(dir, sv.Path)
		if err != nil {
			return err
		}
		info, err := btrfs.Info(ctx, p)
		if err != nil {
			return err
		}
		if err := btrfs.SetDefault(ctx, sysexec.Exec{}, info.ID, dir); err != nil {
			return err
		}
	}
	for _, sv := range fs.Subvolumes {
		if !sv.ReadOnly || sv.Skipped {
			continue
		}
		p, err := subvolPath(dir, sv.Path)
		if err != nil {
			return err
		}
		if err := btrfs.SetReadOnly(ctx, sysexec.Exec{}, p); err != nil {
			return err
		}
	}
	return nil
}

// subvolPath joins a recorded subvolume path to dir, refusing one that
// would leave it (the manifest is data, not trusted to be well-formed).
func subvolPath(dir, rel string) (string, error) {
	clean := filepath.Clean("/" + rel)
	if rel == "" || clean == "/" || clean[1:] != rel {
		return "", fmt.Errorf("subvolume path %q in the manifest is not a plain relative path", rel)
	}
	return filepath.Join(dir, rel), nil
}

// subvolumeWarnings says which subvolumes the backup holds only as empty
// directories and, with plain (ToDir), that the others become plain
// directories.
func subvolumeWarnings(fs manifest.Filesystem, plainDirs bool) []string {
	var ws, plain, skipped []string
	for _, sv := range fs.Subvolumes {
		if sv.Skipped {
			skipped = append(skipped, sv.Path+" ("+sv.Reason+")")
		} else {
			plain = append(plain, sv.Path)
		}
	}
	if plainDirs && len(plain) > 0 {
		ws = append(ws, fmt.Sprintf("%s (btrfs): subvolumes %s restored as plain directories; --to-image or --to-device re-creates them as subvolumes",
			fs.Name, strings.Join(plain, ", ")))
	}
	if len(skipped) > 0 {
		ws = append(ws, fmt.Sprintf("%s (btrfs): subvolumes whose contents are not in the backup, restored as empty directories: %s",
			fs.Name, strings.Join(skipped, ", ")))
	}
	return ws
}
