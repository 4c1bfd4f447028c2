// Package btrfs reads and makes btrfs subvolumes: what a backup needs to
// archive every subvolume of a filesystem mounted at its top level
// (subvolid=5), and what a restore needs to re-create them.
//
// Reads use ioctls where they are simple (BTRFS_IOC_GET_SUBVOL_INFO);
// listing the whole tree and changing it go through btrfs-progs.
package btrfs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"voltar/internal/sysexec"
)

// SuperMagic is statfs's f_type of a btrfs filesystem.
const SuperMagic = 0x9123683E

// FirstFreeObjectID is the inode number of every subvolume's root
// directory (BTRFS_FIRST_FREE_OBJECTID).
const FirstFreeObjectID = 256

// TopLevel is the id of the top-level subvolume (BTRFS_FS_TREE_OBJECTID).
const TopLevel = 5

// rootSubvolRdonly is BTRFS_ROOT_SUBVOL_RDONLY in a root item's flags.
const rootSubvolRdonly = 1 << 0

// Is reports whether path lies on a btrfs filesystem.
func Is(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && uint32(st.Type) == SuperMagic
}

// Subvol is what the kernel tells about one subvolume.
type Subvol struct {
	ID           uint64
	Name         string
	ParentID     uint64 // the subvolume holding it; 0 for the top level
	DirID        uint64 // inode of the directory holding it, in the parent
	Generation   uint64
	Flags        uint64 // root item flags
	UUID         string // "" when all zero
	ParentUUID   string // the subvolume it is a snapshot of; "" when none
	ReceivedUUID string
}

// ReadOnly reports the subvolume's read-only flag.
func (s Subvol) ReadOnly() bool { return s.Flags&rootSubvolRdonly != 0 }

// Snapshot reports a read-only snapshot: read-only and made from another
// subvolume. These are what snapper and backup tools keep, and what a
// backup skips unless told to include them.
func (s Subvol) Snapshot() bool { return s.ReadOnly() && s.ParentUUID != "" }

// getSubvolInfoArgs is struct btrfs_ioctl_get_subvol_info_args
// (include/uapi/linux/btrfs.h): 504 bytes on every architecture.
type getSubvolInfoArgs struct {
	TreeID       uint64
	Name         [256]byte
	ParentID     uint64
	DirID        uint64
	Generation   uint64
	Flags        uint64
	UUID         [16]byte
	ParentUUID   [16]byte
	ReceivedUUID [16]byte
	CTransID     uint64
	OTransID     uint64
	STransID     uint64
	RTransID     uint64
	Times        [4][16]byte // ctime, otime, stime, rtime: {u64 sec; u32 nsec}
	Reserved     [8]uint64
}

// iocGetSubvolInfo is _IOR(BTRFS_IOCTL_MAGIC 0x94, 60, 504 bytes).
const iocGetSubvolInfo = 2<<30 | uintptr(unsafe.Sizeof(getSubvolInfoArgs{}))<<16 | 0x94<<8 | 60

// Info returns the subvolume that holds path (a subvolume's root directory
// names that subvolume).
func Info(ctx context.Context, path string) (Subvol, error) {
	if err := ctx.Err(); err != nil {
		return Subvol{}, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return Subvol{}, fmt.Errorf("subvolume info: %w", err)
	}
	defer f.Close()
	var a getSubvolInfoArgs
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), iocGetSubvolInfo, uintptr(unsafe.Pointer(&a))); e != 0 {
		return Subvol{}, fmt.Errorf("subvolume info of %s: BTRFS_IOC_GET_SUBVOL_INFO: %w", path, e)
	}
	name := a.Name[:]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return Subvol{
		ID: a.TreeID, Name: string(name), ParentID: a.ParentID, DirID: a.DirID,
		Generation: a.Generation, Flags: a.Flags,
		UUID: uuid(a.UUID), ParentUUID: uuid(a.ParentUUID), ReceivedUUID: uuid(a.ReceivedUUID),
	}, nil
}

func uuid(b [16]byte) string {
	if b == [16]byte{} {
		return ""
	}
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Entry is one line of `btrfs subvolume list`: a subvolume of the
// filesystem, its path relative to the top level.
type Entry struct {
	ID, Generation, ParentID uint64
	Path                     string
	UUID, ParentUUID         string
}

// List returns every subvolume of the btrfs filesystem mounted at mnt
// (its top level, subvolid=5), the top level itself excluded.
func List(ctx context.Context, run sysexec.Runner, mnt string) ([]Entry, error) {
	out, err := run.Run(ctx, "btrfs", "subvolume", "list", "-p", "-u", "-q", mnt)
	if err != nil {
		return nil, fmt.Errorf("list btrfs subvolumes of %s: %w", mnt, err)
	}
	return ParseList(out)
}

// ParseList parses the output of `btrfs subvolume list -p -u -q`:
//
//	ID 257 gen 9 parent 5 top level 5 parent_uuid - uuid 0f3c... path @
func ParseList(out []byte) ([]Entry, error) {
	var es []Entry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		head, path, ok := strings.Cut(line, " path ")
		if !ok {
			return nil, fmt.Errorf("btrfs subvolume list: unexpected line %q", line)
		}
		e := Entry{Path: path}
		f := strings.Fields(head)
		num := func(s string) uint64 { n, _ := strconv.ParseUint(s, 10, 64); return n }
		for i := 0; i+1 < len(f); i++ {
			switch f[i] {
			case "ID":
				e.ID = num(f[i+1])
			case "gen":
				e.Generation = num(f[i+1])
			case "parent":
				e.ParentID = num(f[i+1])
			case "uuid":
				e.UUID = dash(f[i+1])
			case "parent_uuid":
				e.ParentUUID = dash(f[i+1])
			}
		}
		if e.ID == 0 {
			return nil, fmt.Errorf("btrfs subvolume list: no ID in %q", line)
		}
		es = append(es, e)
	}
	return es, sc.Err()
}

func dash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// Default returns the id of the default subvolume of the filesystem at mnt.
func Default(ctx context.Context, run sysexec.Runner, mnt string) (uint64, error) {
	out, err := run.Run(ctx, "btrfs", "subvolume", "get-default", mnt)
	if err != nil {
		return 0, fmt.Errorf("default btrfs subvolume of %s: %w", mnt, err)
	}
	// "ID 256 gen 10 top level 5 path @" or "ID 5 (FS_TREE)"
	f := strings.Fields(string(out))
	if len(f) < 2 || f[0] != "ID" {
		return 0, fmt.Errorf("btrfs subvolume get-default %s: unexpected output %q", mnt, out)
	}
	id, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("btrfs subvolume get-default %s: unexpected output %q", mnt, out)
	}
	return id, nil
}

// Create makes a subvolume at path (its parent directory must exist).
func Create(ctx context.Context, run sysexec.Runner, path string) error {
	if _, err := run.Run(ctx, "btrfs", "-q", "subvolume", "create", path); err != nil {
		return fmt.Errorf("create btrfs subvolume %s: %w", path, err)
	}
	return nil
}

// SetDefault makes subvolume id the default of the filesystem at mnt.
func SetDefault(ctx context.Context, run sysexec.Runner, id uint64, mnt string) error {
	if _, err := run.Run(ctx, "btrfs", "subvolume", "set-default", strconv.FormatUint(id, 10), mnt); err != nil {
		return fmt.Errorf("set default btrfs subvolume of %s: %w", mnt, err)
	}
	return nil
}

// SetReadOnly sets the read-only flag of the subvolume at path.
func SetReadOnly(ctx context.Context, run sysexec.Runner, path string) error {
	if _, err := run.Run(ctx, "btrfs", "property", "set", "-ts", path, "ro", "true"); err != nil {
		return fmt.Errorf("make btrfs subvolume %s read-only: %w", path, err)
	}
	return nil
}
