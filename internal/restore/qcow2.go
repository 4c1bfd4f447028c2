package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"voltar/internal/catalog"
	"voltar/internal/fail"
	"voltar/internal/store"
	"voltar/internal/volume/qcow2"
)

// Image formats ToImage writes (Options.Format).
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

// toQcow2 re-creates the volume in a new qcow2 image: qemu-img creates it
// with the volume's size, qemu-storage-daemon exports it writable as a raw
// view (a FUSE-mounted file under MountDir), and the volume is restored
// into that view as into a raw image. Only what is written is allocated;
// no raw copy is made first. On failure the image is removed.
func toQcow2(ctx context.Context, st store.Store, b *catalog.Backup, file string, opts Options, res *Result) (err error) {
	plan, sums, err := prepareVolume(ctx, st, b, opts, res)
	if err != nil {
		return err
	}
	created, err := createQcow2(ctx, file, plan.size)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && !errors.Is(err, ErrSkippedEntries) {
			if created {
				os.Remove(file)
			} else {
				os.Truncate(file, 0)
			}
			err = fmt.Errorf("restore to image %s failed, image removed: %w", file, err)
		}
	}()
	// Next to the mount directory, where the crash sweep of the
	// installation looks for exports (<runtime_dir>/*.export).
	export := filepath.Join(opts.MountDir+".export", "disk.raw")
	if opts.MountDir == "" {
		d, err := os.MkdirTemp("", "voltar-restore-*.export")
		if err != nil {
			return err
		}
		export = filepath.Join(d, "disk.raw")
	}
	srv, err := qcow2.Serve(ctx, file, export, opts.ExportScope)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := srv.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("finish qcow2 image %s: %w", file, cerr))
		}
	}()
	f, err := os.OpenFile(srv.Path(), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	t := &volTarget{path: srv.Path(), name: file, f: f, sector: tableSector(plan.table), fresh: true}
	if err := restoreVolume(ctx, st, b, t, plan, sums, res, opts); err != nil {
		return err
	}
	return f.Sync()
}

// createQcow2 makes file a new qcow2 image of size bytes. Like a raw
// image, file must not exist or be an empty regular file.
func createQcow2(ctx context.Context, file string, size int64) (created bool, err error) {
	fi, err := os.Lstat(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		created = true
	case err != nil:
		return false, fmt.Errorf("create image: %w", err)
	case fi.Mode()&os.ModeDevice != 0:
		return false, fail.Hint(fail.Usage(fmt.Errorf("restore target %s is a device", file)), "use --to-device %s", file)
	case !fi.Mode().IsRegular() || fi.Size() != 0:
		return false, fail.Hint(fail.Usage(fmt.Errorf("restore target %s exists and is not empty; refusing to overwrite it", file)),
			"remove it or choose a new file name")
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", file, strconv.FormatInt(size, 10)).CombinedOutput()
	if err != nil {
		if created {
			os.Remove(file)
		}
		if errors.Is(err, exec.ErrNotFound) {
			return false, fail.Hint(fmt.Errorf("create qcow2 image: %w", err), "install qemu-utils (qemu-img) and qemu-system-common (qemu-storage-daemon) to restore into qcow2")
		}
		return false, fmt.Errorf("create qcow2 image %s: %v: %s", file, err, strings.TrimSpace(string(out)))
	}
	if err := os.Chmod(file, 0o600); err != nil {
		return created, err
	}
	return created, nil
}
