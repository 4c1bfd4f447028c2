package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// bpb is the part of a FAT BIOS parameter block that identifies the volume.
type bpb struct {
	fat32  bool
	serial uint32
	label  string
	hasID  bool // extended boot signature present: serial and label valid
}

// fatBPB parses sec as a FAT12/16/32 boot sector, or returns nil. It insists
// on a jump instruction, a sane BPB and the "FAT" type string: an MBR's boot
// code may start with a jump too (GRUB's does), but not with all three.
func fatBPB(sec []byte) *bpb {
	if len(sec) < 512 || (sec[0] != 0xEB && sec[0] != 0xE9) {
		return nil
	}
	bytesPerSector := binary.LittleEndian.Uint16(sec[11:])
	perCluster := sec[13]
	reserved := binary.LittleEndian.Uint16(sec[14:])
	fats := sec[16]
	total16 := binary.LittleEndian.Uint16(sec[19:])
	media := sec[21]
	fatLen16 := binary.LittleEndian.Uint16(sec[22:])
	total32 := binary.LittleEndian.Uint32(sec[32:])
	fatLen32 := binary.LittleEndian.Uint32(sec[36:])
	switch {
	case !pow2(uint64(bytesPerSector)) || bytesPerSector < 512 || bytesPerSector > 4096,
		!pow2(uint64(perCluster)),
		reserved == 0,
		fats == 0 || fats > 4,
		media != 0xF0 && media < 0xF8,
		total16 == 0 && total32 == 0:
		return nil
	}
	b := &bpb{}
	var ext []byte // extended BPB: drive, reserved, signature, serial, label, type
	switch {
	case fatLen16 != 0 && bytes.HasPrefix(sec[54:62], []byte("FAT")):
		ext = sec[36:62]
	case fatLen16 == 0 && fatLen32 != 0 && bytes.Equal(sec[82:90], []byte("FAT32   ")):
		b.fat32 = true
		ext = sec[64:90]
	default:
		return nil
	}
	if ext[2] == 0x29 {
		b.hasID = true
		b.serial = binary.LittleEndian.Uint32(ext[3:])
		b.label = strings.TrimRight(string(ext[7:18]), " \x00")
		if b.label == "NO NAME" {
			b.label = ""
		}
	} else if ext[2] == 0x28 {
		b.hasID = true
		b.serial = binary.LittleEndian.Uint32(ext[3:])
	}
	return b
}

func probeFAT(p *prober) (FS, error) {
	sec, err := p.read(0, 512)
	if sec == nil || err != nil {
		return FS{}, err
	}
	b := fatBPB(sec)
	if b == nil {
		return FS{}, nil
	}
	fs := FS{Type: "vfat", Label: b.label}
	if b.hasID {
		fs.UUID = fmt.Sprintf("%04X-%04X", b.serial>>16, b.serial&0xffff)
	}
	return fs, nil
}

type ntfsBPB struct {
	clusterSize int64
	mftCluster  uint64
	recordSize  int64
	serial      uint64
}

// ntfsBoot parses sec as an NTFS boot sector, or returns nil.
func ntfsBoot(sec []byte) *ntfsBPB {
	if len(sec) < 512 || !bytes.Equal(sec[3:11], []byte("NTFS    ")) {
		return nil
	}
	bytesPerSector := int64(binary.LittleEndian.Uint16(sec[11:]))
	if !pow2(uint64(bytesPerSector)) || bytesPerSector < 256 || bytesPerSector > 4096 {
		return nil
	}
	spc := int64(sec[13])
	if spc > 0x80 {
		// Clusters over 64 KiB: the byte holds a negative shift.
		shift := 256 - spc
		if shift > 20 {
			return nil
		}
		spc = 1 << shift
	}
	if spc == 0 || !pow2(uint64(spc)) {
		return nil
	}
	n := &ntfsBPB{
		clusterSize: bytesPerSector * spc,
		mftCluster:  binary.LittleEndian.Uint64(sec[48:]),
		serial:      binary.LittleEndian.Uint64(sec[72:]),
	}
	if c := int8(sec[64]); c < 0 {
		if -c > 16 {
			return nil
		}
		n.recordSize = 1 << -c
	} else {
		n.recordSize = int64(c) * n.clusterSize
	}
	if n.recordSize < 512 || n.recordSize > 65536 {
		return nil
	}
	return n
}

func probeNTFS(p *prober) (FS, error) {
	sec, err := p.read(0, 512)
	if sec == nil || err != nil {
		return FS{}, err
	}
	n := ntfsBoot(sec)
	if n == nil {
		return FS{}, nil
	}
	fs := FS{Type: "ntfs", UUID: fmt.Sprintf("%016X", n.serial)}
	label, err := ntfsVolumeName(p, n)
	if err != nil {
		return FS{}, err
	}
	fs.Label = label
	return fs, nil
}

// ntfsVolumeName reads the label, which NTFS keeps as the VOLUME_NAME
// attribute of MFT record 3 ($Volume) rather than in the boot sector. A
// damaged record just means no label.
func ntfsVolumeName(p *prober, n *ntfsBPB) (string, error) {
	const volumeRecord = 3
	if n.mftCluster > uint64(p.size/n.clusterSize) {
		return "", nil
	}
	off := int64(n.mftCluster)*n.clusterSize + volumeRecord*n.recordSize
	rec, err := p.read(off, n.recordSize)
	if rec == nil || err != nil {
		return "", err
	}
	if !bytes.Equal(rec[:4], []byte("FILE")) {
		return "", nil
	}
	// Undo the update sequence: the last two bytes of every 512-byte
	// stride were swapped out for the sequence number when written.
	usaOff := int(binary.LittleEndian.Uint16(rec[4:]))
	usaCount := int(binary.LittleEndian.Uint16(rec[6:]))
	if usaCount == 0 || usaOff+2*usaCount > len(rec) {
		return "", nil
	}
	usn := rec[usaOff : usaOff+2]
	for i := 1; i < usaCount; i++ {
		pos := i*512 - 2
		if pos+2 > len(rec) {
			break
		}
		if !bytes.Equal(rec[pos:pos+2], usn) {
			return "", nil
		}
		copy(rec[pos:pos+2], rec[usaOff+2*i:usaOff+2*i+2])
	}
	a := int(binary.LittleEndian.Uint16(rec[20:]))
	for a+24 <= len(rec) {
		typ := binary.LittleEndian.Uint32(rec[a:])
		length := int(binary.LittleEndian.Uint32(rec[a+4:]))
		if typ == 0xFFFFFFFF || length < 24 || length > len(rec)-a {
			break
		}
		if typ == 0x60 && rec[a+8] == 0 { // resident VOLUME_NAME
			vlen := int(binary.LittleEndian.Uint32(rec[a+16:]))
			voff := int(binary.LittleEndian.Uint16(rec[a+20:]))
			if voff+vlen > length {
				return "", nil
			}
			return decodeUTF16Name(rec[a+voff : a+voff+vlen]), nil
		}
		a += length
	}
	return "", nil
}

func probeExFAT(p *prober) (FS, error) {
	sec, err := p.read(0, 512)
	if sec == nil || err != nil {
		return FS{}, err
	}
	if !bytes.Equal(sec[3:11], []byte("EXFAT   ")) {
		return FS{}, nil
	}
	serial := binary.LittleEndian.Uint32(sec[100:])
	return FS{Type: "exfat", UUID: fmt.Sprintf("%04X-%04X", serial>>16, serial&0xffff)}, nil
}
