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
	Scope string
	// Dirs hold the images of this installation: a reflink clone lives
	// next to its image, and a kill between its creation and its journal
	// entry leaves only its name to find it by (Sweep).
	Dirs   []string
	Logger *slog.Logger
}

// CloneName is the file name of a clone or copy of the image named name,
// made by run runID of the installation with scope.
func CloneName(scope, runID, name string) string {
	return ClonePrefix + scope + "-" + runID + "-" + name
}

var (
	_ volume.Snapshotter = (*Snapshotter)(nil)
	_ volume.Replayer    = (*Snapshotter)(nil)
	_ volume.Sweeper     = (*Snapshotter)(nil)
	_ volume.Planner     = (*Snapshotter)(nil)
)

// Planned implements volume.Planner: a clone next to the image and a copy
// in the scratch directory, for the image (part "") or a writable copy of
// one of its filesystems; nothing for an offline image's snapshot, which
// is the image itself.
func (s *Snapshotter) Planned(v volume.Volume, runID, part string) []volume.Planned {
	name := v.Name
	if part != "" {
		name += "." + part
	} else if v.Offline {
		return nil
	}
	return []volume.Planned{
		{Kind: volume.KindReflink, Ref: s.clonePath(v, runID, name)},
		{Kind: volume.KindCopy, Ref: s.copyPath(runID, name)},
	}
}

// clonePath is where a reflink clone named for name goes: next to the
// image, since a reflink stays on its filesystem.
func (s *Snapshotter) clonePath(v volume.Volume, runID, name string) string {
	return filepath.Join(filepath.Dir(v.Path), CloneName(s.Scope, runID, name))
}

// copyPath is where a copy named for name goes: the scratch directory.
func (s *Snapshotter) copyPath(runID, name string) string {
	return filepath.Join(s.Scratch, CloneName(s.Scope, runID, name))
}

// Resolve turns a path into a Volume, rejecting what is not an image file.
func Resolve(path string, offline bool) (volume.Volume, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return volume.Volume{}, err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return volume.Volume{}, fail.Usage(fail.Hint(fmt.Errorf("volume %s: no such file", path),
			"VOLUME is vg/lv, /dev/vg/lv or the path of a disk image (raw or qcow2); check the path"))
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
			"give the path of a raw or qcow2 disk image"))
	}
	return volume.Volume{
		Kind: volume.KindImage, Group: "image", Name: filepath.Base(abs),
		Path: abs, Size: fi.Size(), Offline: offline,
	}, nil
}

// Create implements volume.Snapshotter.
func (s *Snapshotter) Create(ctx context.Context, v volume.Volume, runID string) (*volume.Snapshot, error) {
	if v.Offline {
		return &volume.Snapshot{Kind: volume.KindNone, Name: v.Path, Path: v.Path, Size: v.Size, ReadOnly: true}, nil
	}
	src, err := os.Open(v.Path)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", v.Path, err)
	}
	defer src.Close()

	if clone, err := s.clone(src, v, runID, v.Name); err != nil || clone != "" {
		if err != nil {
			return nil, err
		}
		return &volume.Snapshot{Kind: volume.KindReflink, Name: clone, Path: clone, Size: v.Size}, nil
	}
	if s.Logger != nil {
		s.Logger.Warn("filesystem cannot reflink; copying the image, which is only consistent if nothing writes to it meanwhile",
			"image", v.Path, "scratch", s.Scratch)
	}
	copyPath, err := s.copyRegion(ctx, src, v.Name, runID, 0, v.Size)
	if err != nil {
		return nil, err
	}
	return &volume.Snapshot{Kind: volume.KindCopy, Name: copyPath, Path: copyPath, Size: v.Size}, nil
}

// clone makes a reflink clone of src named for name next to the image (a
// reflink must stay on the image's filesystem). It returns "" and no error
// when the filesystem cannot share extents.
func (s *Snapshotter) clone(src *os.File, v volume.Volume, runID, name string) (string, error) {
	clone := s.clonePath(v, runID, name)
	err := reflink(src, clone)
	switch {
	case err == nil:
		return clone, nil
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EXDEV), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOTTY):
		return "", nil
	}
	return "", fmt.Errorf("clone %s: %w", v.Path, err)
}

// copyRegion copies the data of the size bytes at off of src into a new
// file of the scratch directory, named as a clone of name.
func (s *Snapshotter) copyRegion(ctx context.Context, src *os.File, name, runID string, off, size int64) (string, error) {
	if err := os.MkdirAll(s.Scratch, 0o700); err != nil {
		return "", fail.Hint(fmt.Errorf("scratch directory: %w", err), "set scratch_dir to a writable directory")
	}
	copyPath := s.copyPath(runID, name)
	if err := sparseCopy(ctx, src, copyPath, off, size); err != nil {
		os.Remove(copyPath)
		if errors.Is(err, unix.ENOSPC) {
			err = fail.Hint(err, "free space in %s or set scratch_dir; or put images on a filesystem with reflinks (xfs, btrfs); or mark the image offline: true", s.Scratch)
		}
		return "", fmt.Errorf("copy %s: %w", src.Name(), err)
	}
	return copyPath, nil
}

// Writable implements volume.Replayer for images read in place (offline):
// a reflink clone of the whole image next to it (instant, shares every
// extent), else a copy of only the region's data into the scratch
// directory. The image itself is only read.
func (s *Snapshotter) Writable(ctx context.Context, v volume.Volume, snap *volume.Snapshot, runID, part string, off, size int64) (*volume.Snapshot, int64, error) {
	src, err := os.Open(snap.Path)
	if err != nil {
		return nil, 0, fmt.Errorf("writable copy of %s: %w", snap.Path, err)
	}
	defer src.Close()
	name := v.Name + "." + part
	if clone, err := s.clone(src, v, runID, name); err != nil || clone != "" {
		if err != nil {
			return nil, 0, err
		}
		return &volume.Snapshot{Kind: volume.KindReflink, Name: clone, Path: clone, Size: v.Size}, off, nil
	}
	copyPath, err := s.copyRegion(ctx, src, name, runID, off, size)
	if err != nil {
		return nil, 0, err
	}
	return &volume.Snapshot{Kind: volume.KindCopy, Name: copyPath, Path: copyPath, Size: size}, 0, nil
}

// Release implements volume.Snapshotter.
func (s *Snapshotter) Release(ctx context.Context, snap *volume.Snapshot) error {
	if snap == nil || snap.Kind == volume.KindNone {
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

// Kinds implements volume.Sweeper.
func (s *Snapshotter) Kinds() []volume.SnapshotKind {
	return []volume.SnapshotKind{volume.KindReflink, volume.KindCopy}
}

// RemoveLeftover implements volume.Sweeper: ref is the clone's path.
func (s *Snapshotter) RemoveLeftover(ctx context.Context, ref string) error {
	if !strings.HasPrefix(filepath.Base(ref), ClonePrefix) {
		return fmt.Errorf("%s is not a voltar clone", ref)
	}
	if err := os.Remove(ref); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Sweep implements volume.Sweeper: it removes the clones of this
// installation (its scope in the name; another one's may be in use) from
// the scratch directory and Dirs.
func (s *Snapshotter) Sweep(ctx context.Context) (int, error) {
	var clones []string
	for _, d := range append([]string{s.Scratch}, s.Dirs...) {
		m, _ := filepath.Glob(filepath.Join(d, ClonePrefix+s.Scope+"-*"))
		clones = append(clones, m...)
	}
	n := 0
	var errs []error
	for _, c := range clones {
		switch err := os.Remove(c); {
		case err == nil:
			n++
			if s.Logger != nil {
				s.Logger.Info("removed leftover image clone of a dead run", "file", c)
			}
		case !errors.Is(err, os.ErrNotExist):
			errs = append(errs, fmt.Errorf("remove leftover image clone: %w", err))
		}
	}
	return n, errors.Join(errs...)
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

// sparseCopy copies only the data extents of the size bytes at off of src
// into a new file dst of size bytes, so a mostly empty image costs only its
// used space.
func sparseCopy(ctx context.Context, src *os.File, dst string, off, size int64) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		return err
	}
	fd := int(src.Fd())
	end := off + size
	for pos := off; pos < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) || (err == nil && data >= end) {
			break // only a hole remains
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		hole = min(hole, end)
		if err := copyRange(ctx, src, out, data, data-off, hole-data); err != nil {
			return err
		}
		pos = hole
	}
	// No fsync: the copy is read back at once and thrown away; a crash
	// leaves it to the sweep, which deletes it anyway.
	return out.Close()
}

// copyRange copies n bytes at off of src to dstOff of dst in chunks,
// checking ctx between them: copy_file_range, or a plain read and write
// where the kernel cannot (e.g. across some filesystems).
func copyRange(ctx context.Context, src, dst *os.File, off, dstOff, n int64) error {
	plain := false
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := min(n, 64<<20)
		var w int
		var err error
		if !plain {
			in, out := off, dstOff
			w, err = unix.CopyFileRange(int(src.Fd()), &in, int(dst.Fd()), &out, int(chunk), 0)
			if err != nil || w == 0 {
				plain = true
				continue
			}
		} else {
			var k int64
			k, err = io.Copy(io.NewOffsetWriter(dst, dstOff), io.NewSectionReader(src, off, chunk))
			if err == nil && k < chunk {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return err
			}
			w = int(k)
		}
		off += int64(w)
		dstOff += int64(w)
		n -= int64(w)
	}
	return nil
}

// CanReflink reports whether the filesystem holding dir can clone files
// with a reflink: it clones one block between two unnamed files
// (O_TMPFILE), so nothing is left behind whatever happens.
func CanReflink(dir string) bool {
	src, err := os.OpenFile(dir, unix.O_TMPFILE|os.O_RDWR, 0o600)
	if err != nil {
		return false
	}
	defer src.Close()
	if _, err := src.Write(make([]byte, 4096)); err != nil {
		return false
	}
	dst, err := os.OpenFile(dir, unix.O_TMPFILE|os.O_RDWR, 0o600)
	if err != nil {
		return false
	}
	defer dst.Close()
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil
}
