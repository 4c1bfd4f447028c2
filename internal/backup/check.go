package backup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"voltar/internal/archive"
	"voltar/internal/btrfs"
	"voltar/internal/fail"
	"voltar/internal/manifest"
	"voltar/internal/sysexec"
)

// inodeTolerance is how many used inodes may be missing from what the walk
// met, the filesystem's own reserved inodes taken into account, before a
// backup fails. Measured on ext2/ext4 and xfs (mkfs defaults and variants,
// hard links, excludes, lost+found, sockets), the accounting is exact: a
// complete archive leaves a difference of 0. See the README.
const inodeTolerance = 0

// errNoCount: the filesystem does not tell how many inodes it holds in a
// way the check can use.
var errNoCount = errors.New("no usable inode count")

// check is the net under every archive: it compares what the walk met with
// what the filesystem says it holds, and fails the filesystem's backup when
// something is missing, so that no backup is called complete while it
// silently lacks data. ext2/3/4 and xfs: used inodes from statfs against
// the inodes met (each once) plus the filesystem's reserved ones. btrfs:
// every subvolume in the filesystem's list was archived or recorded as
// skipped. vfat reports no inode counts: no check.
func (r *run) check(ctx context.Context, p part, dir string, res archive.Result, fs *manifest.Filesystem) error {
	switch p.fs.Type {
	case "btrfs":
		list, err := btrfs.List(ctx, sysexec.Exec{}, dir)
		if err != nil {
			return fail.Hint(fmt.Errorf("completeness check: %w", err), "voltar needs btrfs-progs to back up btrfs filesystems")
		}
		def, err := btrfs.Default(ctx, sysexec.Exec{}, dir)
		if err != nil {
			return fmt.Errorf("completeness check: %w", err)
		}
		return r.checkSubvolumes(list, def, res, fs)
	case "ext2", "ext3", "ext4", "xfs":
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return fmt.Errorf("completeness check: statfs %s: %w", dir, err)
		}
		return r.checkInodes(ctx, p, st.Files, st.Ffree, res, fs)
	}
	return nil
}

// checkInodes compares the inodes the walk met with statfs's files and
// ffree of the mounted filesystem (measured on the host, or in the sandbox).
func (r *run) checkInodes(ctx context.Context, p part, files, ffree uint64, res archive.Result, fs *manifest.Filesystem) error {
	reserved, err := reservedInodes(ctx, r.snap.Path, p)
	if errors.Is(err, errNoCount) || files == 0 {
		r.log.Warn("completeness check not available", "fs", p.name, "type", p.fs.Type, "why", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("completeness check: %w", err)
	}
	holds := int64(files - ffree)
	counted := res.Inodes + reserved
	fs.Check = &manifest.Check{Method: manifest.CheckInodes, Counted: counted, Reserved: reserved, Holds: holds}
	if holds-counted > inodeTolerance {
		err := fmt.Errorf("incomplete archive: archived %d entries but the filesystem holds %d (%d inodes archived, excluded or skipped, %d reserved by %s; %d not reached); archive discarded",
			counted, holds, res.Inodes, reserved, p.fs.Type, holds-counted)
		if r.snap.ReadOnly && fs.Recovery == "" {
			// Measured: a frozen copy of a mounted ext4 or xfs read in
			// place counts its open-unlinked files, which no walk
			// reaches, until its orphans are processed on a writable
			// mount.
			err = fail.Hint(err, "the image was read in place (offline): if something still writes to it, it is not offline; back it up as a live image, which reads a clone")
		}
		return fail.Hint(err,
			"something on the filesystem was not reached by the walk (see not_entered in the log); check a copy of the snapshot with fsck: stale inode counts after an unclean shutdown show up here too, and fsck repairs them")
	}
	return nil
}

// reservedInodes returns the inodes a filesystem uses for itself (never
// reachable by a walk, but counted as used by statfs), from its superblock:
//
//	ext2/3/4: inodes 1 .. s_first_ino-1 (journal, resize, quota, ...; the
//	root, inode 2, is walked), plus an orphan file, quota or journal inode
//	numbered at or above s_first_ino;
//	xfs: the realtime bitmap and summary inodes and the quota inodes
//	(filesystems with the metadir feature keep these in a tree whose size
//	is not in the superblock: errNoCount).
func reservedInodes(ctx context.Context, snap string, p part) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f, err := os.Open(snap)
	if err != nil {
		return 0, fmt.Errorf("read superblock: %w", err)
	}
	defer f.Close()
	sb := make([]byte, 1024)
	le, be := binary.LittleEndian, binary.BigEndian
	switch p.fs.Type {
	case "ext2", "ext3", "ext4":
		if _, err := f.ReadAt(sb, p.start+1024); err != nil {
			return 0, fmt.Errorf("read ext superblock of %s: %w", p.name, err)
		}
		if le.Uint16(sb[0x38:]) != 0xEF53 {
			return 0, fmt.Errorf("%s: no ext superblock: %w", p.name, errNoCount)
		}
		first := uint32(11)
		if le.Uint32(sb[0x4C:]) >= 1 {
			first = le.Uint32(sb[0x54:])
		}
		if first < 3 {
			return 0, fmt.Errorf("%s: first inode %d: %w", p.name, first, errNoCount)
		}
		n := int64(first) - 2
		seen := map[uint32]bool{}
		// s_journal_inum, s_usr_quota_inum, s_grp_quota_inum,
		// s_prj_quota_inum, s_orphan_file_inum
		for _, off := range []int{0xE0, 0x240, 0x244, 0x26C, 0x280} {
			if ino := le.Uint32(sb[off:]); ino >= first && !seen[ino] {
				seen[ino] = true
				n++
			}
		}
		return n, nil
	case "xfs":
		if _, err := f.ReadAt(sb[:512], p.start); err != nil {
			return 0, fmt.Errorf("read xfs superblock of %s: %w", p.name, err)
		}
		if string(sb[:4]) != "XFSB" {
			return 0, fmt.Errorf("%s: no xfs superblock: %w", p.name, errNoCount)
		}
		const metadir = 1 << 8 // XFS_SB_FEAT_INCOMPAT_METADIR
		v5 := be.Uint16(sb[100:])&0xf == 5
		if v5 && be.Uint32(sb[216:])&metadir != 0 {
			return 0, fmt.Errorf("%s: xfs metadir: %w", p.name, errNoCount)
		}
		root := be.Uint64(sb[56:])
		offs := []int{64, 72, 160, 168} // rbmino, rsumino, uquotino, gquotino
		if v5 {
			offs = append(offs, 232) // pquotino
		}
		var n int64
		seen := map[uint64]bool{}
		for _, off := range offs {
			ino := be.Uint64(sb[off:])
			if ino != 0 && ino != ^uint64(0) && ino != root && !seen[ino] {
				seen[ino] = true
				n++
			}
		}
		return n, nil
	}
	return 0, errNoCount
}

// checkSubvolumes records the btrfs subvolume tree (list, and the default
// subvolume def, from the host's or the sandbox's btrfs tool) in the
// manifest and fails when a subvolume of the filesystem was neither
// archived nor recorded as skipped.
func (r *run) checkSubvolumes(list []btrfs.Entry, def uint64, res archive.Result, fs *manifest.Filesystem) error {
	met := map[uint64]archive.Subvolume{}
	for _, sv := range res.Subvolumes {
		met[sv.Info.ID] = sv
	}
	// Parents before children: the order a restore creates them in.
	sort.Slice(list, func(i, j int) bool {
		di, dj := strings.Count(list[i].Path, "/"), strings.Count(list[j].Path, "/")
		if di != dj {
			return di < dj
		}
		return list[i].Path < list[j].Path
	})
	var missing []string
	for _, e := range list {
		sv, ok := met[e.ID]
		if !ok {
			missing = append(missing, e.Path)
			continue
		}
		fs.Subvolumes = append(fs.Subvolumes, manifest.Subvolume{
			ID: e.ID, Path: sv.Path, ParentID: sv.Info.ParentID, Default: e.ID == def,
			ReadOnly: sv.Info.ReadOnly(), Generation: sv.Info.Generation,
			UUID: sv.Info.UUID, ParentUUID: sv.Info.ParentUUID,
			Skipped: sv.Skipped != "", Reason: sv.Skipped,
		})
	}
	fs.Check = &manifest.Check{Method: manifest.CheckSubvolumes, Counted: int64(len(list) - len(missing)), Holds: int64(len(list))}
	if len(missing) > 0 {
		return fail.Hint(fmt.Errorf("incomplete archive: archived %d subvolumes but the filesystem holds %d (not reached: %s); archive discarded",
			len(list)-len(missing), len(list), strings.Join(missing, ", ")),
			"the walk did not reach these subvolumes; inspect them with `btrfs subvolume list -p` on the volume")
	}
	return nil
}
