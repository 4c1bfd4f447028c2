// Package disk finds what is inside a block volume and makes it readable:
// partition tables (MBR, GPT), filesystem detection by superblock, loop
// devices mapping one partition each, and read-only mounts.
//
// Partition tables are parsed here rather than by the kernel because the
// hosts voltar runs on may have partition scanning off for loop devices, and
// because a snapshot's table is untrusted input: every parser in this file
// bounds its reads and loops, and FuzzReadTable keeps it that way.
package disk

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// Partition is one partition that holds data. Start and Size are in bytes
// from the start of the volume.
type Partition struct {
	Number int
	Start  int64
	Size   int64
	// Type is "0x83" style for MBR, the lowercase type GUID for GPT.
	Type string
	// UUID is the GPT partition GUID, or for MBR "<disk signature>-<NN>"
	// (NN in hex), which is what blkid reports as PARTUUID.
	UUID     string
	Name     string // GPT only
	Bootable bool   // MBR active flag; GPT legacy BIOS bootable attribute
	Logical  bool   // MBR logical partition inside an extended one
	// Attrs are a GPT entry's 64 attribute bits (0 RequiredPartition,
	// 1 NoBlockIOProtocol, 2 LegacyBIOSBootable, 48-63 type-specific).
	Attrs uint64
}

// End is the first byte after the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// Table is a volume's partition table.
type Table struct {
	Type       string // "mbr" or "gpt"
	SectorSize int
	// DiskID is the MBR disk signature ("0x1234abcd") or the GPT disk GUID.
	DiskID     string
	Partitions []Partition
	// FirstLBA and LastLBA bound a GPT's usable sectors.
	FirstLBA, LastLBA uint64
	// Extended are an MBR's extended containers, as the primary table
	// lists them: they hold no data but bound the logical partitions.
	Extended []Partition
	// Warnings are problems that did not stop the table from being read,
	// such as a damaged primary GPT recovered from its backup. Callers
	// log them and record them in the report: the disk needs repair.
	Warnings []string
	// Structures are the byte ranges the table itself occupies: an MBR's
	// disk signature, entries and boot signature (440-511 of LBA 0) and
	// each EBR's entries, a GPT's protective MBR fields, headers and entry
	// arrays. A restore that writes old bytes back around a freshly made
	// table leaves these alone. Sorted by offset.
	Structures []Extent
}

// Extent is a byte range of a volume.
type Extent struct {
	Offset, Length int64
}

// End is the first byte after the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// mbrFields is where LBA 0's table lives, after the 440 bytes of boot
// code: disk signature (440), reserved (444), four entries (446) and the
// boot signature 0x55AA (510).
var mbrFields = Extent{Offset: 440, Length: 72}

// ebrFields are an EBR's entries and boot signature, relative to its
// sector; its first 446 bytes are not the table's.
var ebrFields = Extent{Offset: 446, Length: 66}

// ErrNoTable means the volume has no partition table: no MBR boot signature,
// a sector 0 that is really a FAT/exFAT/NTFS boot sector, an MBR with all
// four entries empty, or table-like garbage in front of a filesystem that
// starts at offset 0. The caller then looks for a filesystem on the whole
// volume with DetectFS.
var ErrNoTable = errors.New("no partition table")

// TableError is a partition table that is present but cannot be trusted.
// Backing up a subset of a damaged table would silently lose data, so callers
// fail the volume instead.
type TableError struct {
	Type   string // "mbr" or "gpt"
	Reason string
}

func (e *TableError) Error() string {
	return fmt.Sprintf("invalid %s partition table: %s", e.Type, e.Reason)
}

func tableErrorf(typ, format string, args ...any) *TableError {
	return &TableError{Type: typ, Reason: fmt.Sprintf(format, args...)}
}

// ReadTable reads the partition table of a volume of size bytes.
//
// It returns ErrNoTable when there is none, a *TableError when the table is
// present but damaged or inconsistent, and any other error for I/O failures.
// Every returned partition lies inside [0,size), is non-empty, and does not
// overlap another one; partitions are sorted by number.
func ReadTable(r io.ReaderAt, size int64) (*Table, error) {
	t, err := readTable(r, size)
	var te *TableError
	if errors.As(err, &te) {
		// A boot sector we did not recognise (a boot loader in an
		// ext4 or xfs volume's first sector, say) reads as a garbage
		// table. If a filesystem sits at offset 0, it is not a table.
		if fs, ferr := DetectFS(r, 0, size); ferr == nil && fs.Type != "" {
			return nil, ErrNoTable
		}
	}
	return t, err
}

// readTable is ReadTable without the second look at a damaged table.
func readTable(r io.ReaderAt, size int64) (*Table, error) {
	if size < 512 {
		return nil, ErrNoTable
	}
	sec0 := make([]byte, 512)
	if err := readFull(r, sec0, 0, size); err != nil {
		return nil, fmt.Errorf("read partition table: %w", err)
	}
	if sec0[510] != 0x55 || sec0[511] != 0xAA {
		return nil, ErrNoTable
	}
	if isBootSector(sec0) {
		// FAT and NTFS boot sectors end in 0x55AA too; their BPB
		// overlaps where an MBR would have code, not a table.
		return nil, ErrNoTable
	}
	entries, err := parseMBREntries(sec0)
	if err == nil {
		for _, e := range entries {
			if e.typ == 0xEE {
				// Protective (or hybrid) MBR: the GPT is
				// authoritative, as for the kernel and blkid.
				return readGPT(r, size)
			}
		}
		var t *Table
		t, err = readMBR(r, size, sec0, entries)
		if err == nil {
			err = checkLayout(t, size)
		}
		if err == nil {
			return t, nil
		}
	}
	return nil, err
}

// checkLayout enforces what callers rely on: each partition non-empty, inside
// the volume, not over sector 0, and not overlapping another one.
func checkLayout(t *Table, size int64) error {
	ps := make([]Partition, len(t.Partitions))
	copy(ps, t.Partitions)
	for _, p := range ps {
		if p.Size <= 0 {
			return tableErrorf(t.Type, "partition %d is empty", p.Number)
		}
		if err := checkBounds(t.Type, p, size); err != nil {
			return err
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Start < ps[j].Start })
	for i := 1; i < len(ps); i++ {
		if ps[i].Start < ps[i-1].End() {
			return tableErrorf(t.Type, "partition %d (bytes %d-%d) overlaps partition %d (bytes %d-%d)",
				ps[i].Number, ps[i].Start, ps[i].End(), ps[i-1].Number, ps[i-1].Start, ps[i-1].End())
		}
	}
	sort.Slice(t.Partitions, func(i, j int) bool { return t.Partitions[i].Number < t.Partitions[j].Number })
	return nil
}

// readFull reads len(b) bytes at off, refusing to read past size: a reader
// that is shorter than the size it was announced with is an error, not EOF.
func readFull(r io.ReaderAt, b []byte, off, size int64) error {
	if off < 0 || off > size || int64(len(b)) > size-off {
		return fmt.Errorf("read %d bytes at offset %d: past the end of the volume (%d bytes)", len(b), off, size)
	}
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at offset %d: %w", len(b), off, err)
}
