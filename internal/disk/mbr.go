package disk

import (
	"encoding/binary"
	"fmt"
	"io"
)

// MBR tables use 512-byte sectors here: LVM volumes and image files present
// 512-byte logical sectors, and a 4Kn MBR cannot be told apart from the table
// alone.
const mbrSectorSize = 512

const (
	// maxLogical bounds the EBR chain so a looping or runaway chain in a
	// damaged snapshot cannot hang a backup; Linux stops much earlier.
	maxLogical = 256
	maxEBRHops = 4 * maxLogical
)

type mbrEntry struct {
	status byte
	typ    byte
	start  uint32 // LBA, relative to the table's reference sector
	count  uint32 // sectors
}

func (e mbrEntry) empty() bool { return e.count == 0 }

func isExtended(typ byte) bool { return typ == 0x05 || typ == 0x0f || typ == 0x85 }

func mbrEntries(sec []byte) [4]mbrEntry {
	var es [4]mbrEntry
	for i := range es {
		b := sec[446+16*i : 446+16*(i+1)]
		es[i] = mbrEntry{
			status: b[0],
			typ:    b[4],
			start:  binary.LittleEndian.Uint32(b[8:]),
			count:  binary.LittleEndian.Uint32(b[12:]),
		}
	}
	return es
}

// parseMBREntries returns the four primary entries of sector 0 or an error
// when the sector cannot be a partition table: like blkid, a boot indicator
// other than 0x00/0x80 means the bytes are code, not a table.
func parseMBREntries(sec0 []byte) ([4]mbrEntry, error) {
	es := mbrEntries(sec0)
	for i, e := range es {
		if e.status != 0 && e.status != 0x80 {
			return es, tableErrorf("mbr", "entry %d has boot indicator 0x%02x (want 0x00 or 0x80): sector 0 is not a partition table", i+1, e.status)
		}
	}
	return es, nil
}

// readMBR builds the table from the primary entries of sec0 and the EBR
// chains of its extended partitions.
func readMBR(r io.ReaderAt, size int64, sec0 []byte, es [4]mbrEntry) (*Table, error) {
	sig := binary.LittleEndian.Uint32(sec0[440:])
	t := &Table{Type: "mbr", SectorSize: mbrSectorSize, DiskID: fmt.Sprintf("0x%08x", sig), Structures: []Extent{mbrFields}}
	add := func(p Partition) {
		if sig != 0 {
			// blkid reports no PARTUUID for a zero disk signature.
			p.UUID = fmt.Sprintf("%08x-%02x", sig, p.Number)
		}
		t.Partitions = append(t.Partitions, p)
	}

	// Primaries and extended containers together, to catch a primary
	// lying inside an extended partition: the container is not returned,
	// so checkLayout alone would not see that overlap.
	var spans []Partition
	var exts []Partition
	used := 0
	for i, e := range es {
		if e.empty() {
			continue
		}
		used++
		p := Partition{
			Number:   i + 1,
			Start:    int64(e.start) * mbrSectorSize,
			Size:     int64(e.count) * mbrSectorSize,
			Type:     fmt.Sprintf("0x%02x", e.typ),
			Bootable: e.status == 0x80,
		}
		if err := checkBounds("mbr", p, size); err != nil {
			return nil, err
		}
		for _, q := range spans {
			if p.Start < q.End() && q.Start < p.End() {
				return nil, tableErrorf("mbr", "partition %d (bytes %d-%d) overlaps partition %d (bytes %d-%d)",
					p.Number, p.Start, p.End(), q.Number, q.Start, q.End())
			}
		}
		spans = append(spans, p)
		if isExtended(e.typ) {
			exts = append(exts, p)
			t.Extended = append(t.Extended, p)
			continue
		}
		add(p)
	}
	if used == 0 {
		// A boot signature over four empty entries is as likely a
		// boot sector we did not recognise as an empty table; either
		// way there is nothing partitioned to back up.
		return nil, ErrNoTable
	}

	next := 5
	for _, ext := range exts {
		var err error
		next, err = readEBRChain(r, size, ext, next, add, func(off int64) {
			t.Structures = append(t.Structures, Extent{Offset: off + ebrFields.Offset, Length: ebrFields.Length})
		})
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// readEBRChain follows the linked list of extended boot records inside ext,
// numbering logical partitions from next on as Linux and blkid do. Data
// entries are relative to their EBR; link entries to the extended partition.
// ebr is told the offset of every EBR found.
func readEBRChain(r io.ReaderAt, size int64, ext Partition, next int, add func(Partition), ebr func(off int64)) (int, error) {
	extStart := ext.Start / mbrSectorSize
	extEnd := ext.End() / mbrSectorSize
	visited := make(map[int64]bool)
	sec := make([]byte, mbrSectorSize)
	cur := extStart
	for hop := 0; ; hop++ {
		if hop >= maxEBRHops || next-5 >= maxLogical {
			return next, tableErrorf("mbr", "extended partition %d: EBR chain longer than %d records", ext.Number, maxEBRHops)
		}
		if visited[cur] {
			return next, tableErrorf("mbr", "extended partition %d: EBR chain loops back to sector %d", ext.Number, cur)
		}
		visited[cur] = true
		if err := readFull(r, sec, cur*mbrSectorSize, size); err != nil {
			return next, fmt.Errorf("read EBR at sector %d: %w", cur, err)
		}
		if sec[510] != 0x55 || sec[511] != 0xAA {
			if hop == 0 {
				// An extended partition without logicals: the
				// kernel and blkid also stop here quietly.
				return next, nil
			}
			return next, tableErrorf("mbr", "extended partition %d: EBR at sector %d has no boot signature", ext.Number, cur)
		}
		ebr(cur * mbrSectorSize)
		es := mbrEntries(sec)
		for i, e := range es {
			if e.empty() || isExtended(e.typ) {
				continue
			}
			p := Partition{
				Number:   next,
				Start:    (cur + int64(e.start)) * mbrSectorSize,
				Size:     int64(e.count) * mbrSectorSize,
				Type:     fmt.Sprintf("0x%02x", e.typ),
				Bootable: e.status == 0x80,
				Logical:  true,
			}
			inside := p.Start >= ext.Start && p.End() <= ext.End() && p.Start > cur*mbrSectorSize
			if i >= 2 && !inside {
				// Entries 3 and 4 of an EBR often hold junk; the
				// kernel and blkid skip them unless they fit.
				continue
			}
			if err := checkBounds("mbr", p, size); err != nil {
				return next, err
			}
			if !inside {
				return next, tableErrorf("mbr", "logical partition %d (bytes %d-%d) lies outside its extended partition %d (bytes %d-%d)",
					p.Number, p.Start, p.End(), ext.Number, ext.Start, ext.End())
			}
			add(p)
			next++
		}
		link := -1
		for i, e := range es {
			if !e.empty() && isExtended(e.typ) {
				link = i
				break
			}
		}
		if link < 0 || es[link].start == 0 {
			return next, nil
		}
		cur = extStart + int64(es[link].start)
		if cur >= extEnd {
			return next, tableErrorf("mbr", "extended partition %d: EBR link to sector %d points outside it (sectors %d-%d)", ext.Number, cur, extStart, extEnd)
		}
	}
}

// checkBounds rejects a partition that starts at 0 or runs past the volume,
// with the numbers a user needs to see what is wrong.
func checkBounds(typ string, p Partition, size int64) error {
	if p.Start <= 0 {
		return tableErrorf(typ, "partition %d starts at byte %d, over the partition table", p.Number, p.Start)
	}
	if p.Start >= size || p.Size > size-p.Start {
		return tableErrorf(typ, "partition %d ends at byte %d past the end of the volume (%d bytes)", p.Number, p.End(), size)
	}
	return nil
}
