package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

const (
	gptHeaderMin = 92
	gptEntryMin  = 128
	// maxGPTArray bounds the entry array we are willing to read: a corrupt
	// count must not make a backup allocate gigabytes. Real tables have
	// 128 entries of 128 bytes (16 KiB).
	maxGPTArray     = 4 << 20
	maxGPTEntrySize = 4096
)

// gptSectorSizes are tried in order: 512-byte logical sectors are what LVM
// volumes and image files normally have; 4096 covers 4Kn disks and volumes
// copied from them.
var gptSectorSizes = []int{512, 4096}

type gptHeader struct {
	lba         uint64 // where this header was read
	firstUsable uint64
	lastUsable  uint64
	diskGUID    [16]byte
	entriesLBA  uint64
	numEntries  uint32
	entrySize   uint32
	entriesCRC  uint32
}

// readGPT reads the GPT behind a protective MBR. A damaged primary header or
// entry array is recovered from the backup at the last LBA; the table then
// carries a warning. When neither copy is usable the error names what was
// wrong with each, for every sector size tried.
func readGPT(r io.ReaderAt, size int64) (*Table, error) {
	var reasons []string
	for _, ss := range gptSectorSizes {
		sectors := uint64(size / int64(ss))
		if sectors < 3 {
			continue
		}
		primary, pent, perr := readGPTHeader(r, size, ss, 1)
		if perr == nil {
			return gptTable(primary, pent, ss, size, nil)
		}
		if isIOError(perr) {
			return nil, perr
		}
		last := sectors - 1
		backup, bent, berr := readGPTHeader(r, size, ss, last)
		if berr == nil {
			warn := fmt.Sprintf("primary GPT at LBA 1 is unusable (%v); using the backup GPT at LBA %d", perr, last)
			return gptTable(backup, bent, ss, size, []string{warn})
		}
		if isIOError(berr) {
			return nil, berr
		}
		reasons = append(reasons, fmt.Sprintf("%d-byte sectors: primary header at LBA 1: %v; backup header at LBA %d: %v", ss, perr, last, berr))
	}
	if len(reasons) == 0 {
		return nil, tableErrorf("gpt", "protective MBR on a volume of %d bytes, too small for a GPT", size)
	}
	return nil, tableErrorf("gpt", "protective MBR but no valid GPT (%s)", strings.Join(reasons, "; "))
}

// gptIOError marks a read failure, which must not be reported as a damaged
// table: the table may be fine and the device failing.
type gptIOError struct{ err error }

func (e gptIOError) Error() string { return e.err.Error() }
func (e gptIOError) Unwrap() error { return e.err }

func isIOError(err error) bool { _, ok := err.(gptIOError); return ok }

// readGPTHeader reads and validates the header at lba and its entry array
// (CRCs included), so a header that passes is usable as it stands.
func readGPTHeader(r io.ReaderAt, size int64, ss int, lba uint64) (*gptHeader, []byte, error) {
	sectors := uint64(size / int64(ss))
	sec := make([]byte, ss)
	if err := readFull(r, sec, int64(lba)*int64(ss), size); err != nil {
		return nil, nil, gptIOError{fmt.Errorf("read GPT header at LBA %d: %w", lba, err)}
	}
	if !bytes.Equal(sec[:8], []byte("EFI PART")) {
		return nil, nil, fmt.Errorf("no \"EFI PART\" signature")
	}
	hsize := binary.LittleEndian.Uint32(sec[12:])
	if hsize < gptHeaderMin || hsize > uint32(ss) {
		return nil, nil, fmt.Errorf("header size %d out of range %d-%d", hsize, gptHeaderMin, ss)
	}
	want := binary.LittleEndian.Uint32(sec[16:])
	hdr := make([]byte, hsize)
	copy(hdr, sec)
	binary.LittleEndian.PutUint32(hdr[16:], 0)
	if got := crc32.ChecksumIEEE(hdr); got != want {
		return nil, nil, fmt.Errorf("header CRC32 is 0x%08x, header says 0x%08x", got, want)
	}
	h := &gptHeader{
		lba:         lba,
		firstUsable: binary.LittleEndian.Uint64(sec[40:]),
		lastUsable:  binary.LittleEndian.Uint64(sec[48:]),
		entriesLBA:  binary.LittleEndian.Uint64(sec[72:]),
		numEntries:  binary.LittleEndian.Uint32(sec[80:]),
		entrySize:   binary.LittleEndian.Uint32(sec[84:]),
		entriesCRC:  binary.LittleEndian.Uint32(sec[88:]),
	}
	copy(h.diskGUID[:], sec[56:72])
	if my := binary.LittleEndian.Uint64(sec[24:]); my != lba {
		return nil, nil, fmt.Errorf("header says it is at LBA %d", my)
	}
	switch {
	case h.firstUsable > h.lastUsable:
		return nil, nil, fmt.Errorf("first usable LBA %d after last usable LBA %d", h.firstUsable, h.lastUsable)
	case h.lastUsable >= sectors:
		return nil, nil, fmt.Errorf("last usable LBA %d past the end of the volume (%d sectors)", h.lastUsable, sectors)
	case h.firstUsable < 2:
		return nil, nil, fmt.Errorf("first usable LBA %d overlaps the protective MBR or header", h.firstUsable)
	case h.entrySize < gptEntryMin || h.entrySize > maxGPTEntrySize || h.entrySize%8 != 0:
		return nil, nil, fmt.Errorf("partition entry size %d invalid", h.entrySize)
	case h.numEntries == 0 || int64(h.numEntries)*int64(h.entrySize) > maxGPTArray:
		return nil, nil, fmt.Errorf("partition entry count %d invalid (%d-byte entries, at most %d bytes in all)", h.numEntries, h.entrySize, maxGPTArray)
	case h.entriesLBA < 2 || h.entriesLBA >= sectors:
		return nil, nil, fmt.Errorf("partition entries at LBA %d outside the volume", h.entriesLBA)
	}
	arrayBytes := int64(h.numEntries) * int64(h.entrySize)
	if int64(h.entriesLBA)*int64(ss)+arrayBytes > size {
		return nil, nil, fmt.Errorf("partition entries (%d bytes at LBA %d) run past the end of the volume", arrayBytes, h.entriesLBA)
	}
	entries := make([]byte, arrayBytes)
	if err := readFull(r, entries, int64(h.entriesLBA)*int64(ss), size); err != nil {
		return nil, nil, gptIOError{fmt.Errorf("read GPT partition entries at LBA %d: %w", h.entriesLBA, err)}
	}
	if got := crc32.ChecksumIEEE(entries); got != h.entriesCRC {
		return nil, nil, fmt.Errorf("partition entries CRC32 is 0x%08x, header says 0x%08x", got, h.entriesCRC)
	}
	return h, entries, nil
}

// gptTable turns a validated header and entry array into a table. Errors
// here are about the partitions themselves, which the backup copy would
// repeat, so there is no fallback.
func gptTable(h *gptHeader, entries []byte, ss int, size int64, warnings []string) (*Table, error) {
	t := &Table{Type: "gpt", SectorSize: ss, DiskID: formatGUID(h.diskGUID[:]), Warnings: warnings,
		FirstLBA: h.firstUsable, LastLBA: h.lastUsable, Structures: gptStructures(h, ss, size)}
	es := int(h.entrySize)
	for i := 0; i < int(h.numEntries); i++ {
		e := entries[i*es : (i+1)*es]
		if allZero(e[:16]) {
			continue
		}
		num := i + 1
		first := binary.LittleEndian.Uint64(e[32:])
		last := binary.LittleEndian.Uint64(e[40:])
		if last < first {
			return nil, tableErrorf("gpt", "partition %d ends at LBA %d before it starts at LBA %d", num, last, first)
		}
		if first < h.firstUsable || last > h.lastUsable {
			return nil, tableErrorf("gpt", "partition %d (LBA %d-%d) lies outside the usable LBAs %d-%d", num, first, last, h.firstUsable, h.lastUsable)
		}
		// lastUsable < size/ss was checked, so these cannot overflow.
		p := Partition{
			Number:   num,
			Start:    int64(first) * int64(ss),
			Size:     int64(last-first+1) * int64(ss),
			Type:     formatGUID(e[0:16]),
			UUID:     formatGUID(e[16:32]),
			Name:     decodeUTF16Name(e[56:128]),
			Bootable: binary.LittleEndian.Uint64(e[48:])&(1<<2) != 0,
			Attrs:    binary.LittleEndian.Uint64(e[48:]),
		}
		t.Partitions = append(t.Partitions, p)
	}
	if err := checkLayout(t, size); err != nil {
		return nil, err
	}
	return t, nil
}

// gptStructures are the ranges a GPT occupies: the protective MBR's
// fields, the primary header's sector and entry array, and everything
// after the last usable LBA (the backup array and header; what slack lies
// between them belongs to no one else either).
func gptStructures(h *gptHeader, ss int, size int64) []Extent {
	s := int64(ss)
	arrayEnd := int64(h.entriesLBA)*s + int64(h.numEntries)*int64(h.entrySize)
	arrayEnd = (arrayEnd + s - 1) / s * s
	es := []Extent{mbrFields, {Offset: s, Length: s}}
	if start := int64(h.entriesLBA) * s; start < int64(h.firstUsable)*s {
		// The primary array before the first usable LBA, as every
		// tool writes it; one elsewhere was read but is not protected
		// beyond what lies past the last usable LBA.
		es = append(es, Extent{Offset: start, Length: min(arrayEnd, int64(h.firstUsable)*s) - start})
	}
	if tail := int64(h.lastUsable+1) * s; tail < size {
		es = append(es, Extent{Offset: tail, Length: size - tail})
	}
	return es
}

// formatGUID prints a GUID as the lowercase canonical string blkid and the
// UEFI spec use: the first three fields are stored little-endian.
func formatGUID(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(b[0:4]),
		binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]),
		b[8:10], b[10:16])
}

func decodeUTF16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
