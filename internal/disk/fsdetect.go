package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FS is what a superblock says about a filesystem or other content.
//
// Type uses blkid's names: ext2, ext3, ext4, xfs, btrfs, vfat, swap, ntfs,
// exfat, crypto_LUKS, LVM2_member, jbd (an external ext journal), or "" when
// nothing is recognised. UUID and Label are formatted as blkid prints them so
// that the manifest can be matched against /etc/fstab and `blkid` output.
type FS struct {
	Type  string
	UUID  string
	Label string
	// Ambiguous, when set, says why the content cannot be identified
	// with certainty: more than one signature (an old swap header under
	// a nested partition table, two filesystems), or a signature whose
	// checksum or size does not check out. Type is then the first match
	// and must not be trusted: store such content raw, never skip it.
	Ambiguous string
}

// DetectFS identifies the content of the size bytes at off in r by its
// superblock. Unknown content is FS{} with a nil error; only read failures
// are errors.
//
// Every probe runs, and a partition table inside the area counts as a
// signature too: what carries more than one (mkswap, mkfs and partitioning
// tools wipe the old ones; something else wrote this), or a superblock
// whose checksum or size does not check out, is Ambiguous. Containers
// (LUKS, LVM PV) are tried first, so Type names one of them when present.
func DetectFS(r io.ReaderAt, off, size int64) (FS, error) {
	p := &prober{r: r, off: off, size: size}
	var found []FS
	for _, probe := range []func(*prober) (FS, error){
		probeLUKS, probeLVM2, probeXFS, probeExt, probeBtrfs, probeFAT, probeNTFS, probeExFAT, probeSwap,
	} {
		fs, err := probe(p)
		if err != nil {
			return FS{}, fmt.Errorf("detect filesystem at offset %d: %w", off, err)
		}
		if fs.Type != "" {
			found = append(found, fs)
		}
	}
	if t, err := readTable(io.NewSectionReader(r, off, size), size); err == nil && len(t.Partitions) > 0 {
		found = append(found, FS{Type: t.Type + " partition table", Ambiguous: "-"})
	}
	if len(found) == 0 {
		return FS{}, nil
	}
	fs := found[0]
	if fs.Ambiguous == "-" { // only a partition table: a disk inside the partition
		return FS{Ambiguous: fmt.Sprintf("it holds a %s (a disk image inside a partition)", fs.Type)}, nil
	}
	if len(found) > 1 {
		var types []string
		for _, f := range found {
			types = append(types, f.Type)
		}
		fs.Ambiguous = "it carries more than one signature: " + strings.Join(types, ", ")
	}
	return fs, nil
}

// prober reads inside one partition and caches nothing: every probe reads a
// few KiB at most.
type prober struct {
	r         io.ReaderAt
	off, size int64
}

// read returns n bytes at o inside the partition, or nil when they lie past
// its end: a partition too small for a superblock simply does not match.
func (p *prober) read(o, n int64) ([]byte, error) {
	if o < 0 || n > p.size || o > p.size-n {
		return nil, nil
	}
	b := make([]byte, n)
	got, err := p.r.ReadAt(b, p.off+o)
	if int64(got) == n {
		return b, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("read %d bytes at offset %d: %w", n, p.off+o, err)
}

// formatUUID prints 16 bytes as 8-4-4-4-12 lowercase hex, in stored order
// (ext, xfs, btrfs and swap store UUIDs as plain byte strings).
func formatUUID(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func probeLUKS(p *prober) (FS, error) {
	b, err := p.read(0, 512)
	if b == nil || err != nil {
		return FS{}, err
	}
	if !bytes.Equal(b[:6], []byte("LUKS\xba\xbe")) {
		return FS{}, nil
	}
	fs := FS{Type: "crypto_LUKS", UUID: cString(b[168:208])}
	if binary.BigEndian.Uint16(b[6:]) == 2 {
		fs.Label = cString(b[24:72])
	}
	return fs, nil
}

// probeLVM2 finds an LVM physical volume label, which may be in any of the
// first four sectors.
func probeLVM2(p *prober) (FS, error) {
	for s := int64(0); s < 4; s++ {
		b, err := p.read(s*512, 512)
		if b == nil || err != nil {
			return FS{}, err
		}
		if !bytes.Equal(b[:8], []byte("LABELONE")) || !bytes.Equal(b[24:32], []byte("LVM2 001")) {
			continue
		}
		if binary.LittleEndian.Uint64(b[8:]) != uint64(s) {
			continue
		}
		o := int(binary.LittleEndian.Uint32(b[20:]))
		if o < 32 || o+32 > len(b) {
			continue
		}
		id := b[o : o+32]
		// blkid groups the 32-character PV UUID as LVM prints it.
		uuid := fmt.Sprintf("%s-%s-%s-%s-%s-%s-%s", id[0:6], id[6:10], id[10:14], id[14:18], id[18:22], id[22:26], id[26:32])
		return FS{Type: "LVM2_member", UUID: uuid}, nil
	}
	return FS{}, nil
}

func probeXFS(p *prober) (FS, error) {
	b, err := p.read(0, 512)
	if b == nil || err != nil {
		return FS{}, err
	}
	if !bytes.Equal(b[:4], []byte("XFSB")) {
		return FS{}, nil
	}
	bs := binary.BigEndian.Uint32(b[4:])
	ss := binary.BigEndian.Uint16(b[102:])
	ag := binary.BigEndian.Uint32(b[88:])
	if !pow2(uint64(bs)) || bs < 512 || bs > 65536 || !pow2(uint64(ss)) || ss < 512 || ss > 32768 || ag == 0 {
		return FS{}, nil
	}
	fs := FS{Type: "xfs", UUID: formatUUID(b[32:48]), Label: cString(b[108:120])}
	if binary.BigEndian.Uint16(b[100:])&0xF == 5 { // v5: the superblock sector has a CRC
		sec, err := p.read(0, int64(ss))
		if err != nil {
			return FS{}, err
		}
		if sec != nil {
			want := binary.LittleEndian.Uint32(sec[224:])
			clear(sec[224:228])
			if crc32.Checksum(sec, castagnoli) != want {
				fs.Ambiguous = "its xfs superblock checksum does not match"
			}
		}
	}
	return fs, nil
}

// ext feature bits: the ones ext2 and ext3 drivers understood. Anything
// beyond them makes the filesystem ext4, which is how blkid decides.
const (
	extCompatHasJournal    = 0x0004
	extIncompatJournalDev  = 0x0008
	ext2IncompatSupported  = 0x0002 | 0x0010          // filetype, meta_bg
	ext3IncompatSupported  = 0x0002 | 0x0004 | 0x0010 // filetype, recover, meta_bg
	ext23RoCompatSupported = 0x0001 | 0x0002 | 0x0004 // sparse_super, large_file, btree_dir
)

func probeExt(p *prober) (FS, error) {
	b, err := p.read(1024, 1024)
	if b == nil || err != nil {
		return FS{}, err
	}
	if binary.LittleEndian.Uint16(b[56:]) != 0xEF53 {
		return FS{}, nil
	}
	compat := binary.LittleEndian.Uint32(b[92:])
	incompat := binary.LittleEndian.Uint32(b[96:])
	roCompat := binary.LittleEndian.Uint32(b[100:])
	fs := FS{UUID: formatUUID(b[104:120]), Label: cString(b[120:136])}
	const roCompatMetadataCsum = 0x400
	if roCompat&roCompatMetadataCsum != 0 && binary.LittleEndian.Uint32(b[0x3FC:]) != ^crc32.Checksum(b[:0x3FC], castagnoli) {
		fs.Ambiguous = "its ext superblock checksum does not match"
	}
	switch {
	case incompat&extIncompatJournalDev != 0:
		fs.Type = "jbd"
	case roCompat&^ext23RoCompatSupported != 0:
		fs.Type = "ext4"
	case compat&extCompatHasJournal != 0:
		fs.Type = "ext3"
		if incompat&^ext3IncompatSupported != 0 {
			fs.Type = "ext4"
		}
	default:
		fs.Type = "ext2"
		if incompat&^ext2IncompatSupported != 0 {
			fs.Type = "ext4"
		}
	}
	return fs, nil
}

func probeBtrfs(p *prober) (FS, error) {
	b, err := p.read(0x10000, 0x1000)
	if b == nil || err != nil {
		return FS{}, err
	}
	if !bytes.Equal(b[0x40:0x48], []byte("_BHRfS_M")) {
		return FS{}, nil
	}
	fs := FS{Type: "btrfs", UUID: formatUUID(b[0x20:0x30]), Label: cString(b[0x12b : 0x12b+256])}
	const csumCRC32C = 0
	if binary.LittleEndian.Uint16(b[0xC4:]) == csumCRC32C && binary.LittleEndian.Uint32(b[0:]) != crc32.Checksum(b[0x20:], castagnoli) {
		fs.Ambiguous = "its btrfs superblock checksum does not match"
	}
	return fs, nil
}

func probeSwap(p *prober) (FS, error) {
	for ps := int64(4096); ps <= 65536; ps *= 2 {
		b, err := p.read(ps-10, 10)
		if b == nil || err != nil {
			return FS{}, err
		}
		switch string(b) {
		case "SWAPSPACE2":
			fs := FS{Type: "swap"}
			h, err := p.read(1024, 44)
			if err != nil {
				return FS{}, err
			}
			switch {
			case h == nil || binary.LittleEndian.Uint32(h[0:]) != 1:
				fs.Ambiguous = "its swap header has an unknown version"
			case (int64(binary.LittleEndian.Uint32(h[4:]))+1)*ps > p.size:
				// last_page: the swap area's last page, which must
				// lie inside the partition.
				fs.Ambiguous = fmt.Sprintf("its swap header describes %d pages of %d bytes, more than the %d bytes it sits in",
					binary.LittleEndian.Uint32(h[4:])+1, ps, p.size)
			default:
				if !allZero(h[12:28]) {
					fs.UUID = formatUUID(h[12:28])
				}
				fs.Label = cString(h[28:44])
			}
			return fs, nil
		case "SWAP-SPACE", "S1SUSPEND\x00", "S2SUSPEND\x00", "ULSUSPEND\x00", "LINHIB0001":
			// Old swap, or swap holding a hibernation image:
			// either way nothing to back up.
			return FS{Type: "swap"}, nil
		}
	}
	return FS{}, nil
}

func pow2(v uint64) bool { return v != 0 && v&(v-1) == 0 }

// isBootSector reports whether sector 0 is a FAT, exFAT or NTFS boot sector,
// which ends in 0x55AA like an MBR.
func isBootSector(sec []byte) bool {
	return fatBPB(sec) != nil || ntfsBoot(sec) != nil || bytes.Equal(sec[3:11], []byte("EXFAT   "))
}
