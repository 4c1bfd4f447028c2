// Package image backs up raw disk-image files. The point-in-time copy is a
// reflink clone (FICLONE) when the filesystem can share extents, otherwise a
// sparse-aware copy to a scratch directory; an image declared offline is read
// in place, read-only.
package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"voltar/internal/fail"
	"voltar/internal/volume"
)

// ClonePrefix starts the name of every clone voltar makes, so a later run
// can recognise and remove the clones of a run that was killed.
const ClonePrefix = ".voltar-clone-"

// Snapshotter clones image files.
type Snapshotter struct {
	// Scratch receives full copies when a reflink is impossible.
	Scratch string
	// Scope goes into every clone's name (CloneName), so the sweep of one
	// voltar installation leaves another one's clones alone.
	Scope  string
	Logger *slog.Logger
}

// CloneName is the file name of a clone or copy of the image named name,
// made by run runID of the installation with scope.
func CloneName(scope, runID, name string) string {
	return ClonePrefix + scope + "-" + runID + "-" + name
}

var _ volume.Snapshotter = (*Snapshotter)(nil)

// Resolve turns a path into a Volume, rejecting what is not an image file.
func Resolve(path string, offline bool) (volume.Volume, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return volume.Volume{}, err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return volume.Volume{}, fail.Usage(fail.Hint(fmt.Errorf("volume %s: no such file", path),
			"VOLUME is vg/lv, /dev/vg/lv or the path of a raw disk image; check the path"))
	}
	if err != nil {
		return volume.Volume{}, fmt.Errorf("volume %s: %w", path, err)
	}
	switch {
	case fi.IsDir():
		return volume.Volume{}, fail.Usage(fail.Hint(fmt.Errorf("volume %s is a directory, not a volume", path),
			"voltar backs up block volumes: give vg/lv, /dev/vg/lv or a raw image file"))
	case !fi.Mode().IsRegular():
		return volume.Volume{}, fail.Usage(fail.Hint(fmt.Errorf("volume %s is not a regular file or logical volume", path),
			"for a logical volume use vg/lv or /dev/vg/lv"))
	case fi.Size() < 4096:
		return volume.Volume{}, fail.Usage(fail.Hint(fmt.Errorf("volume %s is only %d bytes, too small to hold a disk image", path, fi.Size()),
			"give the path of a raw disk image (qcow2 and other formats are not read)"))
	}
	return volume.Volume{
		Kind: volume.KindImage, Group: "image", Name: filepath.Base(abs),
		Path: abs, Size: fi.Size(), Offline: offline,
	}, nil
}

// Create implements volume.Snapshotter.
func (s *Snapshotter) Create(ctx context.Context, v volume.Volume, runID string) (*volume.Snapshot, error) {
	if v.Offline {
		return &volume.Snapshot{Kind: "none", Name: v.Path, Path: v.Path, Size: v.Size, ReadOnly: true}, nil
	}
	src, err := os.Open(v.Path)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", v.Path, err)
	}
	defer src.Close()

	// A reflink must stay on the image's filesystem: try next to the image.
	clone := filepath.Join(filepath.Dir(v.Path), CloneName(s.Scope, runID, v.Name))
	if err := reflink(src, clone); err == nil {
		return &volume.Snapshot{Kind: "reflink", Name: clone, Path: clone, Size: v.Size}, nil
	} else if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return nil, fmt.Errorf("clone %s: %w", v.Path, err)
	}

	if err := os.MkdirAll(s.Scratch, 0o700); err != nil {
		return nil, fail.Hint(fmt.Errorf("scratch directory: %w", err), "set scratch_dir to a writable directory")
	}
	copyPath := filepath.Join(s.Scratch, CloneName(s.Scope, runID, v.Name))
	if s.Logger != nil {
		s.Logger.Warn("filesystem cannot reflink; copying the image, which is only consistent if nothing writes to it meanwhile",
			"image", v.Path, "copy", copyPath)
	}
	if err := sparseCopy(ctx, src, copyPath, v.Size); err != nil {
		os.Remove(copyPath)
		if errors.Is(err, unix.ENOSPC) {
			err = fail.Hint(err, "free space in %s or set scratch_dir; or put images on a filesystem with reflinks (xfs, btrfs); or mark the image offline: true", s.Scratch)
		}
		return nil, fmt.Errorf("copy %s: %w", v.Path, err)
	}
	return &volume.Snapshot{Kind: "copy", Name: copyPath, Path: copyPath, Size: v.Size}, nil
}

// Release implements volume.Snapshotter.
func (s *Snapshotter) Release(ctx context.Context, snap *volume.Snapshot) error {
	if snap == nil || snap.Kind == "none" {
		return nil
	}
	if !strings.HasPrefix(filepath.Base(snap.Path), ClonePrefix) {
		return fmt.Errorf("refusing to remove %s: not a voltar clone", snap.Path)
	}
	if err := os.Remove(snap.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove clone %s: %w", snap.Path, err)
	}
	return nil
}

// Check implements volume.Snapshotter: clones and copies cannot overflow.
func (s *Snapshotter) Check(ctx context.Context, snap *volume.Snapshot) (float64, error) {
	return 0, nil
}

func reflink(src *os.File, dst string) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := unix.IoctlFileClone(int(f.Fd()), int(src.Fd())); err != nil {
		f.Close()
		os.Remove(dst)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}

// sparseCopy copies only the data extents of src, so a mostly empty image
// costs only its used space.
func sparseCopy(ctx context.Context, src *os.File, dst string, size int64) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		return err
	}
	fd := int(src.Fd())
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		if err := copyRange(ctx, src, out, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	// No fsync: the copy is read back at once and thrown away; a crash
	// leaves it to the sweep, which deletes it anyway.
	return out.Close()
}

// copyRange copies [off, off+n) of src to the same offsets of dst in
// chunks, checking ctx between them: copy_file_range, or a plain read and
// write where the kernel cannot (e.g. across some filesystems).
func copyRange(ctx context.Context, src, dst *os.File, off, n int64) error {
	plain := false
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := min(n, 64<<20)
		var w int
		var err error
		if !plain {
			in, out := off, off
			w, err = unix.CopyFileRange(int(src.Fd()), &in, int(dst.Fd()), &out, int(chunk), 0)
			if err != nil || w == 0 {
				plain = true
				continue
			}
		} else {
			var k int64
			k, err = io.Copy(io.NewOffsetWriter(dst, off), io.NewSectionReader(src, off, chunk))
			if err == nil && k < chunk {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return err
			}
			w = int(k)
		}
		off += int64(w)
		n -= int64(w)
	}
	return nil
}
