// Package qcow2 backs up qcow2 image files, backing chains included,
// without the nbd kernel module: qemu-storage-daemon exports the
// guest-visible disk as a raw view, a FUSE-mounted file that the rest of
// the pipeline maps and mounts like a raw image.
//
// The export always goes through a throwaway qcow2 overlay in the scratch
// directory, so the kernel's journal replay (an image whose guest crashed)
// lands in the overlay and never in the image or its backing files. A live
// image is first cloned with a reflink next to it (the point-in-time view;
// its backing files are read-only to qemu anyway); an image that cannot be
// cloned is refused unless it is marked offline, when it is read in place.
package qcow2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"voltar/internal/fail"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
)

// Snapshotter exports qcow2 images through qemu-storage-daemon.
type Snapshotter struct {
	// Scratch receives the overlays.
	Scratch string
	// Scope names this installation in every clone, overlay and export.
	Scope string
	// RuntimeDir holds the exports (<RuntimeDir>/<run>-image-<name>.export/).
	RuntimeDir string
	// Daemon and QemuImg are the programs' paths; empty: looked up in PATH.
	Daemon, QemuImg string
	Logger          *slog.Logger

	mu      sync.Mutex
	running map[string]*daemon // by export path
}

var (
	_ volume.Snapshotter = (*Snapshotter)(nil)
	_ volume.Planner     = (*Snapshotter)(nil)
	_ volume.Sweeper     = (*Snapshotter)(nil)
)

// Resolve turns the path of a qcow2 image into a Volume: its virtual size
// and its backing chain. The caller has checked that the file is a regular
// file starting with the qcow2 magic (IsQcow2).
func Resolve(path string, offline bool) (volume.Volume, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return volume.Volume{}, err
	}
	h, chain, err := Chain(abs)
	if err != nil {
		return volume.Volume{}, fmt.Errorf("volume %s: %w", path, err)
	}
	return volume.Volume{
		Kind: volume.KindImage, Group: "image", Name: filepath.Base(abs), Path: abs,
		Size: h.VirtualSize, Offline: offline, Format: volume.FormatQcow2, Backing: chain,
	}, nil
}

// names are the files one snapshot of v in runID may make.
type names struct {
	clone, overlay, dir, export string
}

func (s *Snapshotter) names(v volume.Volume, runID string) names {
	dir := filepath.Join(s.RuntimeDir, runID+"-"+v.Group+"-"+v.Name+".export")
	return names{
		clone:   filepath.Join(filepath.Dir(v.Path), image.CloneName(s.Scope, runID, v.Name)),
		overlay: filepath.Join(s.Scratch, image.CloneName(s.Scope, runID, v.Name+".overlay")),
		dir:     dir,
		export:  filepath.Join(dir, "disk.raw"),
	}
}

// Planned implements volume.Planner: a reflink clone of the image next to
// it (not for an offline image), the overlay in the scratch directory and
// the export, in the order they are made (a sweep releases them newest
// first). Part is never asked for: the snapshot is writable.
func (s *Snapshotter) Planned(v volume.Volume, runID, part string) []volume.Planned {
	if part != "" {
		return nil
	}
	n := s.names(v, runID)
	var out []volume.Planned
	if !v.Offline {
		out = append(out, volume.Planned{Kind: volume.KindReflink, Ref: n.clone})
	}
	return append(out,
		volume.Planned{Kind: volume.KindCopy, Ref: n.overlay},
		volume.Planned{Kind: volume.KindExport, Ref: n.export})
}

// Create implements volume.Snapshotter: clone (live), overlay, export. The
// snapshot is the exported file, writable (its writes land in the
// overlay), of the image's virtual size.
func (s *Snapshotter) Create(ctx context.Context, v volume.Volume, runID string) (_ *volume.Snapshot, err error) {
	if v.Format != volume.FormatQcow2 {
		return nil, fmt.Errorf("%s is not a qcow2 volume", v.Path)
	}
	n := s.names(v, runID)
	snap := &volume.Snapshot{Kind: volume.KindNone, Name: v.Path, Path: n.export, Size: v.Size}
	defer func() {
		// What was made of it goes again: the caller gets no snapshot
		// to release.
		if err != nil {
			if rerr := s.Release(context.WithoutCancel(ctx), snap); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	top := v.Path
	if !v.Offline {
		if err := cloneFile(v.Path, n.clone); err != nil {
			if errors.Is(err, errNoReflink) {
				return nil, fail.Hint(fmt.Errorf("%s cannot be cloned with a reflink (%v), and a copy of a qcow2 image in use is not consistent", v.Path, err),
					"keep qcow2 images on a filesystem with reflinks (xfs, btrfs), or stop the VM and mark the image offline: true (voltar backup --offline)")
			}
			return nil, fmt.Errorf("clone %s: %w", v.Path, err)
		}
		snap.Kind, snap.Name, top = volume.KindReflink, n.clone, n.clone
		snap.Holds = append(snap.Holds, volume.Planned{Kind: volume.KindReflink, Ref: n.clone})
	}
	if err := os.MkdirAll(s.Scratch, 0o700); err != nil {
		return nil, fail.Hint(fmt.Errorf("scratch directory: %w", err), "set scratch_dir to a writable directory")
	}
	snap.Holds = append(snap.Holds, volume.Planned{Kind: volume.KindCopy, Ref: n.overlay})
	if err := s.createOverlay(ctx, n.overlay, v.Size); err != nil {
		return nil, err
	}
	snap.Holds = append(snap.Holds, volume.Planned{Kind: volume.KindExport, Ref: n.export})
	d, err := s.start(ctx, n, s.graph(v, top, n))
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", v.Path, err)
	}
	s.mu.Lock()
	if s.running == nil {
		s.running = map[string]*daemon{}
	}
	s.running[n.export] = d
	s.mu.Unlock()
	return snap, nil
}

// Release implements volume.Snapshotter: stop the daemon (its export goes
// with it), remove the export file, the overlay and the clone. Safe to
// call twice.
func (s *Snapshotter) Release(ctx context.Context, snap *volume.Snapshot) error {
	if snap == nil {
		return nil
	}
	var errs []error
	for i := len(snap.Holds) - 1; i >= 0; i-- {
		h := snap.Holds[i]
		switch h.Kind {
		case volume.KindExport:
			s.mu.Lock()
			d := s.running[h.Ref]
			delete(s.running, h.Ref)
			s.mu.Unlock()
			if d != nil {
				d.stop()
			}
			if err := s.RemoveLeftover(ctx, h.Ref); err != nil {
				errs = append(errs, err)
			}
		default:
			if err := removeClone(h.Ref); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Check implements volume.Snapshotter: a clone and an overlay cannot
// overflow, but the daemon serving them can die.
func (s *Snapshotter) Check(ctx context.Context, snap *volume.Snapshot) (float64, error) {
	s.mu.Lock()
	d := s.running[snap.Path]
	s.mu.Unlock()
	if d != nil {
		if err := d.exited(); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// Kinds implements volume.Sweeper: the exports; clones and overlays are
// named as image clones, and the image sweeper removes them.
func (s *Snapshotter) Kinds() []volume.SnapshotKind {
	return []volume.SnapshotKind{volume.KindExport}
}

// RemoveLeftover implements volume.Sweeper for an export a journal names:
// the daemon serving it is stopped, the mount (if any is left) undone and
// the file and its directory removed.
func (s *Snapshotter) RemoveLeftover(ctx context.Context, ref string) error {
	if !strings.HasSuffix(filepath.Dir(ref), ".export") || filepath.Base(ref) != "disk.raw" {
		return fmt.Errorf("%s is not a voltar export", ref)
	}
	var errs []error
	for _, p := range daemons(func(args []string) bool { return exportsTo(args, ref) }) {
		if err := killDaemon(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeExport(ref); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Sweep implements volume.Sweeper: storage daemons of this installation
// (their export id carries the scope) whose run died without a journal
// entry, and their exports.
func (s *Snapshotter) Sweep(ctx context.Context) (int, error) {
	n, errs := s.stopDead(ctx, func(args []string) bool { return hasExportID(args, exportID(s.Scope)) })
	// Export directories whose daemon is gone (killed with the run).
	dirs, _ := filepath.Glob(filepath.Join(s.RuntimeDir, "*.export"))
	for _, d := range dirs {
		exp := filepath.Join(d, "disk.raw")
		s.mu.Lock()
		_, ours := s.running[exp]
		s.mu.Unlock()
		if ours {
			continue
		}
		if err := s.RemoveLeftover(ctx, exp); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// StopReaders stops this installation's storage daemons that read the
// image at path and are not this command's (a dead run's), and removes
// their exports. The sweep calls it before committing a libvirt overlay
// back into the image, which QEMU cannot do while another process holds
// the image open.
func (s *Snapshotter) StopReaders(ctx context.Context, path string) error {
	_, errs := s.stopDead(ctx, func(args []string) bool { return hasExportID(args, exportID(s.Scope)) && readsFile(args, path) }, "image", path)
	return errors.Join(errs...)
}

// stopDead kills the storage daemons whose arguments match that are not
// this command's, and removes their exports; it logs each, with the key
// and value pairs of what.
func (s *Snapshotter) stopDead(ctx context.Context, match func(args []string) bool, what ...any) (int, []error) {
	n := 0
	var errs []error
	for _, p := range daemons(match) {
		s.mu.Lock()
		_, ours := s.running[p.export]
		s.mu.Unlock()
		if ours {
			continue
		}
		if err := killDaemon(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if p.export != "" {
			if err := s.RemoveLeftover(ctx, p.export); err != nil {
				errs = append(errs, err)
			}
		}
		n++
		if s.Logger != nil {
			s.Logger.Info("stopped leftover qemu-storage-daemon of a dead run", append([]any{"pid", p.pid, "export", p.export}, what...)...)
		}
	}
	return n, errs
}

// errNoReflink: the filesystem cannot share extents.
var errNoReflink = errors.New("no reflink")

// cloneFile makes dst a reflink clone of src.
func cloneFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		out.Close()
		os.Remove(dst)
		switch {
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EXDEV), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOTTY):
			return fmt.Errorf("%w: %v", errNoReflink, err)
		}
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}

// removeClone removes a clone or overlay, refusing anything not named as
// voltar's.
func removeClone(p string) error {
	if !strings.HasPrefix(filepath.Base(p), image.ClonePrefix) {
		return fmt.Errorf("refusing to remove %s: not a voltar clone", p)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}
