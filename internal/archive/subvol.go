package archive

import (
	"archive/tar"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"voltar/internal/btrfs"
)

// subvolume reports whether the directory at abs, on another device than
// its parent, is a subvolume of root's btrfs filesystem rather than
// another filesystem: btrfs gives each subvolume its own st_dev, its root
// directory inode 256, and it is no mount point.
func (a *archiver) subvolume(abs string, st *unix.Stat_t) bool {
	if !a.btrfs || st.Ino != btrfs.FirstFreeObjectID {
		return false
	}
	var stx unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, abs, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_INO, &stx)
	if err != nil || stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false // cannot tell: treat it as another filesystem
	}
	return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0
}

// enterSubvolume archives a btrfs subvolume's root directory and, unless
// it is a read-only snapshot to skip, its tree.
func (a *archiver) enterSubvolume(abs, rel string, st *unix.Stat_t) error {
	info, err := btrfs.Info(a.ctx, abs)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	sv := Subvolume{Path: rel, Info: info}
	hdr := &tar.Header{Typeflag: tar.TypeDir, Name: "./" + rel + "/"}
	if info.Snapshot() && !a.opts.BtrfsSnapshots {
		// Its data is (mostly) that of the subvolume it was taken of;
		// keep the directory so the tree keeps its shape.
		sv.Skipped = "read-only snapshot, skipped (btrfs_snapshots: skip)"
		a.res.Subvolumes = append(a.res.Subvolumes, sv)
		a.notEntered(rel, sv.Skipped)
		return a.writeHeader(abs, st, a.emptyDir(hdr.Name))
	}
	a.res.Subvolumes = append(a.res.Subvolumes, sv)
	a.count(st)
	return a.dir(abs, rel, st, hdr)
}

// notEntered records a path left out with its reason.
func (a *archiver) notEntered(rel, reason string) {
	a.res.NotEntered = append(a.res.NotEntered, NotEntered{Path: rel, Reason: reason})
	a.log.Warn("archive: not entered: "+reason, "path", "./"+rel)
}

// count counts st's inode in Result.Inodes once, however many names it
// has and whether they were archived or excluded.
func (a *archiver) count(st *unix.Stat_t) {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
		id := fileID{st.Dev, st.Ino}
		if left, ok := a.seen[id]; ok {
			if left <= 1 {
				delete(a.seen, id)
			} else {
				a.seen[id] = left - 1
			}
			return
		}
		a.seen[id] = st.Nlink - 1
	}
	a.res.Inodes++
}

// countExcluded counts the inodes of an excluded entry and, for a
// directory, of everything below it on the same device, reading no data.
func (a *archiver) countExcluded(abs string, st *unix.Stat_t, dev uint64) error {
	if st.Dev != dev {
		if st.Mode&unix.S_IFMT == unix.S_IFDIR && a.subvolume(abs, st) {
			// Recorded, so the subvolume list finds it accounted for.
			info, err := btrfs.Info(a.ctx, abs)
			if err != nil {
				return fmt.Errorf("archive: %w", err)
			}
			rel := strings.TrimPrefix(strings.TrimPrefix(abs, a.root), "/")
			a.res.Subvolumes = append(a.res.Subvolumes, Subvolume{Path: rel, Info: info, Skipped: "excluded by a pattern"})
			dev = st.Dev
		} else {
			return nil // another filesystem's
		}
	}
	a.count(st)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	if err := a.ctx.Err(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	f, err := openRead(abs, 0)
	if err != nil {
		return fmt.Errorf("archive: count excluded: %w", err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("archive: count excluded: %w", err)
	}
	for _, n := range names {
		var cst unix.Stat_t
		if err := unix.Lstat(abs+"/"+n, &cst); err != nil {
			return fmt.Errorf("archive: count excluded: %w", &os.PathError{Op: "lstat", Path: abs + "/" + n, Err: err})
		}
		if err := a.countExcluded(abs+"/"+n, &cst, st.Dev); err != nil {
			return err
		}
	}
	return nil
}
