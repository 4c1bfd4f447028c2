package disk

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// MkfsParams are the parameters a filesystem was made with that decide
// what it can hold, read from its superblock, so a restore re-makes it
// able to hold the same: block size (ext4 on a small partition defaults to
// 1 KiB blocks, which caps symlinks at 1023 bytes), inode size (inline
// data, large xattrs), inode count (a filesystem made with -N for many
// small files) and feature flags.
type MkfsParams struct {
	BlockSize  int
	InodeSize  int
	Inodes     int64    // ext: the inode count; xfs allocates inodes dynamically (0)
	SectorSize int      // xfs, btrfs: the sector size mkfs was given
	Features   []string // mke2fs -O names, xfs feature names (see XFSFeatures), btrfs ones (see BtrfsFeatures)
	NodeSize   int      // btrfs: the metadata node size (mkfs.btrfs -n)
	// Compression (btrfs) names the algorithms the filesystem has
	// compressed data with ("zstd", "lzo"), from its incompat flags:
	// mounted with compress=, or files with the compression property.
	Compression []string
}

// BtrfsFeatures are the btrfs features MkfsParams records, as mkfs.btrfs
// names them: -O features, and free-space-tree, a -R runtime feature.
var BtrfsFeatures = []string{"mixed-bg", "extref", "raid56", "skinny-metadata", "no-holes", "raid1c34", "zoned", "free-space-tree"}

// extFeatures are the ext2/3/4 features mke2fs -O takes, by superblock
// word (compat, incompat, ro_compat) and bit. Features the kernel sets
// while mounted (needs_recovery, orphan_present) and ones mke2fs cannot
// make (journal_dev, dirdata) are left out.
var extFeatures = [3][]struct {
	bit  uint32
	name string
}{
	{ // compat
		{0x1, "dir_prealloc"}, {0x2, "imagic_inodes"}, {0x4, "has_journal"}, {0x8, "ext_attr"},
		{0x10, "resize_inode"}, {0x20, "dir_index"}, {0x200, "sparse_super2"}, {0x400, "fast_commit"},
		{0x800, "stable_inodes"}, {0x1000, "orphan_file"},
	},
	{ // incompat
		{0x2, "filetype"}, {0x10, "meta_bg"}, {0x40, "extent"}, {0x80, "64bit"}, {0x100, "mmp"},
		{0x200, "flex_bg"}, {0x400, "ea_inode"}, {0x2000, "metadata_csum_seed"}, {0x4000, "large_dir"},
		{0x8000, "inline_data"}, {0x10000, "encrypt"}, {0x20000, "casefold"},
	},
	{ // ro_compat
		{0x1, "sparse_super"}, {0x2, "large_file"}, {0x8, "huge_file"}, {0x10, "uninit_bg"},
		{0x20, "dir_nlink"}, {0x40, "extra_isize"}, {0x100, "quota"}, {0x200, "bigalloc"},
		{0x400, "metadata_csum"}, {0x1000, "read-only"}, {0x2000, "project"}, {0x8000, "verity"},
	},
}

// ExtFeature reports whether name is an ext feature MkfsParams records.
func ExtFeature(name string) bool {
	for _, word := range extFeatures {
		for _, f := range word {
			if f.name == name {
				return true
			}
		}
	}
	return false
}

// XFSFeatures are the xfs features MkfsParams records, as mkfs.xfs names
// its options (crc: a v5 filesystem).
var XFSFeatures = []string{"crc", "finobt", "rmapbt", "reflink", "bigtime", "inobtcount", "ftype", "sparse"}

// ReadMkfsParams reads the MkfsParams of the fsType filesystem at off in r;
// nil for a type it does not know (vfat). btrfs profiles are not in the
// superblock: btrfs.Profiles reads them from the mounted filesystem.
func ReadMkfsParams(r io.ReaderAt, off, size int64, fsType string) (*MkfsParams, error) {
	p := &prober{r: r, off: off, size: size}
	switch fsType {
	case "ext2", "ext3", "ext4":
		b, err := p.read(1024, 1024)
		if err != nil || b == nil || binary.LittleEndian.Uint16(b[56:]) != 0xEF53 {
			return nil, err
		}
		mp := &MkfsParams{
			BlockSize: 1024 << binary.LittleEndian.Uint32(b[0x18:]),
			Inodes:    int64(binary.LittleEndian.Uint32(b[0x0:])),
			InodeSize: 128,
		}
		if binary.LittleEndian.Uint32(b[0x4C:]) >= 1 { // dynamic revision
			mp.InodeSize = int(binary.LittleEndian.Uint16(b[0x58:]))
		}
		for i, o := range []int{0x5C, 0x60, 0x64} {
			word := binary.LittleEndian.Uint32(b[o:])
			for _, f := range extFeatures[i] {
				if word&f.bit != 0 {
					mp.Features = append(mp.Features, f.name)
				}
			}
		}
		sort.Strings(mp.Features)
		return mp, nil
	case "xfs":
		b, err := p.read(0, 512)
		if err != nil || b == nil || string(b[:4]) != "XFSB" {
			return nil, err
		}
		be := binary.BigEndian
		mp := &MkfsParams{
			BlockSize:  int(be.Uint32(b[4:])),
			SectorSize: int(be.Uint16(b[102:])),
			InodeSize:  int(be.Uint16(b[104:])),
		}
		version := be.Uint16(b[100:])
		features2 := be.Uint32(b[200:])
		add := func(on bool, name string) {
			if on {
				mp.Features = append(mp.Features, name)
			}
		}
		if version&0xF == 5 {
			roCompat, incompat := be.Uint32(b[212:]), be.Uint32(b[216:])
			add(true, "crc")
			add(roCompat&0x1 != 0, "finobt")
			add(roCompat&0x2 != 0, "rmapbt")
			add(roCompat&0x4 != 0, "reflink")
			add(roCompat&0x8 != 0, "inobtcount")
			add(incompat&0x1 != 0, "ftype")
			add(incompat&0x2 != 0, "sparse")
			add(incompat&0x8 != 0, "bigtime")
		} else {
			add(features2&0x200 != 0, "ftype")
		}
		return mp, nil
	case "btrfs":
		b, err := p.read(0x10000, 4096)
		if err != nil || b == nil || string(b[0x40:0x48]) != "_BHRfS_M" {
			return nil, err
		}
		le := binary.LittleEndian
		mp := &MkfsParams{SectorSize: int(le.Uint32(b[0x90:])), NodeSize: int(le.Uint32(b[0x94:]))}
		compatRO, incompat := le.Uint64(b[0xb4:]), le.Uint64(b[0xbc:])
		for _, f := range []struct {
			word, bit uint64
			name      string
		}{
			{incompat, 0x4, "mixed-bg"}, {incompat, 0x40, "extref"}, {incompat, 0x80, "raid56"},
			{incompat, 0x100, "skinny-metadata"}, {incompat, 0x200, "no-holes"}, {incompat, 0x800, "raid1c34"},
			{incompat, 0x1000, "zoned"}, {compatRO, 0x1, "free-space-tree"},
		} {
			if f.word&f.bit != 0 {
				mp.Features = append(mp.Features, f.name)
			}
		}
		sort.Strings(mp.Features)
		if incompat&0x8 != 0 {
			mp.Compression = append(mp.Compression, "lzo")
		}
		if incompat&0x10 != 0 {
			mp.Compression = append(mp.Compression, "zstd")
		}
		return mp, nil
	}
	return nil, nil
}

// String is for logs.
func (p *MkfsParams) String() string {
	return fmt.Sprintf("block %d, inode %d, inodes %d, features %v", p.BlockSize, p.InodeSize, p.Inodes, p.Features)
}
