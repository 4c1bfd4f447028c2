package btrfs

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Block group flags (include/uapi/linux/btrfs_tree.h).
const (
	bgData     = 1 << 0
	bgMetadata = 1 << 2
	bgProfiles = 0x7f8 // RAID0 .. RAID1C4
)

// profileNames are mkfs.btrfs's names of the profile bits; none is "single".
var profileNames = map[uint64]string{
	1 << 3: "raid0", 1 << 4: "raid1", 1 << 5: "dup", 1 << 6: "raid10",
	1 << 7: "raid5", 1 << 8: "raid6", 1 << 9: "raid1c3", 1 << 10: "raid1c4",
}

// iocSpaceInfo is _IOWR(0x94, 20, struct btrfs_ioctl_space_args): 16 bytes
// of header, then the slots.
const iocSpaceInfo = 3<<30 | 16<<16 | 0x94<<8 | 20

// Profiles returns the block group profiles of the data and the metadata
// of the btrfs filesystem mounted at mnt, as mkfs.btrfs -d and -m name
// them ("single", "dup", "raid1", ...). A filesystem with mixed block
// groups gives its one profile for both.
func Profiles(mnt string) (data, metadata string, err error) {
	f, err := os.OpenFile(mnt, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return "", "", fmt.Errorf("btrfs profiles: %w", err)
	}
	defer f.Close()
	// Enough slots for every type x profile; the kernel fills what fits.
	const slots = 32
	buf := make([]byte, 16+slots*24)
	binary.LittleEndian.PutUint64(buf[0:], slots)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), iocSpaceInfo, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return "", "", fmt.Errorf("btrfs profiles of %s: BTRFS_IOC_SPACE_INFO: %w", mnt, e)
	}
	n := min(binary.LittleEndian.Uint64(buf[8:]), slots)
	for i := range n {
		flags := binary.LittleEndian.Uint64(buf[16+i*24:])
		name := "single"
		if p := profileNames[flags&bgProfiles]; p != "" {
			name = p
		}
		// A filesystem converted half-way has two profiles of a type:
		// the first listed is the one mkfs would have made.
		if flags&bgData != 0 && data == "" {
			data = name
		}
		if flags&bgMetadata != 0 && metadata == "" {
			metadata = name
		}
	}
	return data, metadata, nil
}
