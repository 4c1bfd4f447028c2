// Package manifest is the schema of manifest.json, the file written last into
// every backup folder. A folder without it is not a backup.
package manifest

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Schema is the newest manifest format this voltar reads and writes:
//
//	1  the original
//	2  adds "encryption": the archives are age-encrypted
//	3  adds a filesystem's "subvolumes": btrfs subvolumes to re-create
//	   before its archive is extracted (an older voltar would restore
//	   them as plain directories)
//	4  adds "chain": an incremental backup, whose archives hold only
//	   what changed since its parent (an older voltar would restore an
//	   increment as if it were the whole tree)
//
// A manifest is written with the oldest schema that holds it (see
// SchemaFor), so an unencrypted backup stays schema 1 and readable by an
// older voltar, which in turn refuses an encrypted one it could not read.
// "not_entered" and "check" need no new schema: a voltar that ignores
// them restores the same. Nor do a volume's "format", "virtual_size" and
// "backing_chain" (a qcow2 image's): the filesystems are the guest's,
// and an older voltar restores them as a raw image. Neither does "outside": an older voltar
// restores the filesystems as it always did, and its verify re-hashes
// the object, which SHA256SUMS lists, against SHA256SUMS. Nor does a
// snapshot's "set" (the disks of a libvirt domain taken together), its
// consistency "frozen" or its kind "external" (a libvirt external
// snapshot): they only describe how the snapshot was taken.
const Schema = 4

// SchemaFor returns the schema a manifest is written with.
func SchemaFor(m *Manifest) int {
	if m.Chain != nil {
		return 4
	}
	for _, f := range m.Filesystems {
		if len(f.Subvolumes) > 0 {
			return 3
		}
	}
	if m.Encryption != nil {
		return 2
	}
	return 1
}

// Status values.
const (
	StatusComplete = "complete"
	// StatusPartial: a filesystem that may hold data was left out; every
	// archived one is complete. This voltar never writes it (what it cannot
	// read as files it stores raw; only swap is skipped), but reads it.
	StatusPartial = "partial"
)

// Filesystem modes.
const (
	ModeFiles   = "files"
	ModeRaw     = "raw"
	ModeSkipped = "skipped"
)

// Manifest describes one complete backup.
type Manifest struct {
	Schema      int            `json:"schema"`
	Tool        string         `json:"tool"`
	Version     string         `json:"version"`
	Host        string         `json:"host"`
	ID          string         `json:"id"` // <vg>/<volume>/<timestamp>
	Volume      Volume         `json:"volume"`
	Snapshot    Snapshot       `json:"snapshot"`
	Table       Table          `json:"partition_table"`
	Filesystems []Filesystem   `json:"filesystems"`
	Compression string         `json:"compression"`
	Status      string         `json:"status"`
	Started     time.Time      `json:"started"`
	Finished    time.Time      `json:"finished"`
	Extra       map[string]any `json:"extra,omitempty"`

	// Encryption is set (schema 2) when every archive is age-encrypted.
	Encryption *Encryption `json:"encryption,omitempty"`

	// PublishedBytes is what the backup's folder holds in the store: the
	// archives plus SHA256SUMS, manifest.json.sha256 and manifest.json.
	// folder.Publish sets it; it is not part of manifest.json (which
	// cannot hold its own size), so a manifest read back has 0.
	PublishedBytes int64 `json:"-"`
	// Outside holds the volume's bytes that no filesystem archive or raw
	// partition covers and that are not zero: boot code in LBA 0, the gap
	// before the first partition (GRUB's core.img), gaps between and after
	// partitions, the table's own sectors. Nil when there are none.
	Outside *Outside `json:"outside,omitempty"`

	// Isolation is where the filesystems were parsed: "kernel" (mounted
	// in the backup host's kernel) or "sandbox" (in a User-Mode Linux
	// kernel run as an unprivileged user). Empty in manifests of older
	// versions (kernel). Restore and verify do not depend on it.
	Isolation string `json:"isolation,omitempty"`

	// Warnings are what a restore of the volume cannot bring back by
	// itself, e.g. LILO in the MBR ("reinstall the bootloader after
	// restoring"). A filesystem's own are in its Warnings.
	Warnings []string `json:"warnings,omitempty"`

	// Chain is set on an incremental backup (schema 4): the backup it
	// builds on. A full backup has none.
	Chain *Chain `json:"chain,omitempty"`
}

// Chain places an incremental backup in its chain. The parent is a backup
// of the same volume in the same store folder (<host>/<group>/<volume>/),
// older than this one, and is itself a full backup (Level 1) or an
// increment (Level = the parent's Level + 1).
type Chain struct {
	Level  int    `json:"level"`  // 1 for the first increment after a full
	Parent string `json:"parent"` // the parent's ID, <group>/<volume>/<timestamp>
	// ParentManifestSHA256 is the SHA-256 of the parent's manifest.json as
	// it was read when this backup was made: a parent replaced since is
	// not the one this backup's archives build on.
	ParentManifestSHA256 string `json:"parent_manifest_sha256"`
	Full                 string `json:"full"` // the ID of the chain's full backup
}

// Level is the backup's level: 0 for a full backup.
func (m *Manifest) Level() int {
	if m.Chain == nil {
		return 0
	}
	return m.Chain.Level
}

// AllWarnings returns the volume's warnings and every filesystem's,
// prefixed with its name.
func (m *Manifest) AllWarnings() []string {
	out := append([]string(nil), m.Warnings...)
	for _, f := range m.Filesystems {
		for _, w := range f.Warnings {
			out = append(out, f.Name+": "+w)
		}
	}
	return out
}

// Outside is the one object of a volume's bytes outside its filesystems.
// Its content, once decompressed and decrypted, is the runs' bytes
// concatenated in order: run i is the Length bytes after the sum of the
// lengths before it, and goes to Offset on the volume.
type Outside struct {
	Archive     string `json:"archive"`
	SHA256      string `json:"sha256"`
	StoredBytes int64  `json:"stored_bytes"`
	SourceBytes int64  `json:"source_bytes"` // the sum of the runs' lengths
	Runs        []Run  `json:"runs"`
}

// Object is a stored object besides a filesystem's archive.
type Object struct {
	Name        string `json:"name"`
	SHA256      string `json:"sha256"`
	StoredBytes int64  `json:"stored_bytes"`
}

// Run is a byte range of the volume; Offset and Length are in bytes.
type Run struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// Entry presents the object as the filesystem entries verify and restore
// check digests against: mode raw, named outside.
func (o *Outside) Entry() Filesystem {
	return Filesystem{Name: "outside", Mode: ModeRaw, Archive: o.Archive, SHA256: o.SHA256,
		StoredBytes: o.StoredBytes, SourceBytes: o.SourceBytes}
}

// Encryption records how a backup's archives are encrypted: with age, to
// these public keys (the archives' names end in ".age"). The private keys
// are never recorded anywhere in the store.
type Encryption struct {
	Method     string   `json:"method"`     // "age"
	Recipients []string `json:"recipients"` // age1..., ssh-ed25519 ..., ssh-rsa ...
}

// Volume is the backed-up source.
type Volume struct {
	Kind  string `json:"kind"` // lvm | image | dump
	Name  string `json:"name"`
	Group string `json:"group"` // VG name, "image" or "dumps"
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	UUID  string `json:"uuid,omitempty"`
	// Format is the image's format, set for a qcow2 image only ("qcow2");
	// absent for LVs and raw images. Size is then the guest-visible size,
	// also recorded as VirtualSize, and Backing is its backing chain.
	Format      string    `json:"format,omitempty"`
	VirtualSize int64     `json:"virtual_size,omitempty"`
	Backing     []Backing `json:"backing_chain,omitempty"`
}

// Backing is one backing file of an image, nearest first: where it was
// found (resolved as qemu does) and its format.
type Backing struct {
	Path        string `json:"path"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual_size"`
}

// Snapshot records how the point-in-time copy was made.
type Snapshot struct {
	// Kind: thick | thin | reflink | copy | none | external (a disk of a running
	// libvirt domain whose image could not be cloned: an external
	// snapshot through libvirt moved the guest's writes into an overlay
	// while the image was read in place, then the overlay was committed
	// back; no new schema: it only says how the view was made).
	Kind       string  `json:"kind"`
	Name       string  `json:"name,omitempty"`
	Size       int64   `json:"size,omitempty"`
	PeakCOWPct float64 `json:"peak_cow_percent,omitempty"`
	// Consistency says what state the snapshot holds: crash (a point in
	// time of a volume in use), hooked (a pre_snapshot hook quiesced it
	// first), frozen (the guest's filesystems were frozen through
	// qemu-guest-agent while it was taken) or offline (an image nothing
	// used). Absent in older backups.
	Consistency string `json:"consistency,omitempty"`
	// Set, for a disk of a libvirt domain: the disks whose snapshots
	// were taken together at one instant (during one freeze). Optional:
	// absent for a volume backed up alone, and ignored by an older voltar,
	// which restores the disk the same (no new schema).
	Set *Set `json:"set,omitempty"`
}

// Set is the backup set a disk of a libvirt domain belongs to: every
// disk of the domain was snapshotted at one instant, then each was
// archived as its own backup. The other backups of the set are those of
// the volumes Disks lists whose manifest has the same set ID.
type Set struct {
	// ID is the same in every backup of the set: <run ID>/<domain>.
	ID     string `json:"id"`
	Domain string `json:"domain"`
	// UUID is the domain's libvirt UUID.
	UUID string `json:"uuid,omitempty"`
	// Disk is this backup's disk in the domain (its target, e.g. vda).
	Disk string `json:"disk"`
	// Disks are every disk taken together, this one included.
	Disks []SetDisk `json:"disks"`
}

// SetDisk is one disk of a Set.
type SetDisk struct {
	Target string `json:"target"` // vda, sdb, ...
	Volume string `json:"volume"` // its volume ID: <vg>/<lv> or image/<file name>
}

// Snapshot consistencies.
const (
	ConsistencyCrash   = "crash"
	ConsistencyHooked  = "hooked"
	ConsistencyOffline = "offline"
	// ConsistencyFrozen: the guest's filesystems were frozen
	// (qemu-guest-agent fsfreeze through libvirt) while the snapshot was
	// taken: every write the guest completed before is in it.
	ConsistencyFrozen = "frozen"
)

// Table is the partition table found on the volume.
type Table struct {
	Type       string      `json:"type"` // mbr | gpt | none
	SectorSize int         `json:"sector_size,omitempty"`
	DiskID     string      `json:"disk_id,omitempty"` // MBR signature or GPT disk GUID
	Partitions []Partition `json:"partitions,omitempty"`
	// FirstLBA and LastLBA bound a GPT's usable sectors (of SectorSize).
	FirstLBA uint64 `json:"first_lba,omitempty"`
	LastLBA  uint64 `json:"last_lba,omitempty"`
	// Extended are an MBR's extended containers (number, start, size,
	// type), so a restore re-makes them with their extent.
	Extended []Partition `json:"extended,omitempty"`
	// Warnings: problems found and worked around, e.g. a damaged primary
	// GPT read from its backup copy. The disk needs repair.
	Warnings []string `json:"warnings,omitempty"`
}

// Partition is one table entry; Start and Size are in bytes.
type Partition struct {
	Number   int    `json:"number"`
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
	Type     string `json:"type"` // MBR id ("0x83") or GPT type GUID
	UUID     string `json:"uuid,omitempty"`
	Name     string `json:"name,omitempty"`
	Bootable bool   `json:"bootable,omitempty"`
	Logical  bool   `json:"logical,omitempty"`
	// Attrs are a GPT entry's attribute bits (RequiredPartition,
	// NoBlockIOProtocol, LegacyBIOSBootable, type-specific bits 48-63).
	Attrs uint64 `json:"attrs,omitempty"`
}

// Filesystem is one archived (or skipped) filesystem.
type Filesystem struct {
	Name      string `json:"name"` // p1, p2, ... or fs
	Partition int    `json:"partition,omitempty"`
	Type      string `json:"type"`
	UUID      string `json:"uuid,omitempty"`
	Label     string `json:"label,omitempty"`
	Mode      string `json:"mode"`
	Reason    string `json:"reason,omitempty"`
	// Mkfs records what the filesystem was made with (ext2/3/4, xfs), so
	// a restore re-makes it able to hold what it held.
	Mkfs *MkfsParams `json:"mkfs,omitempty"`
	// Space (files mode) is what the filesystem used and shared, for the
	// capacity check of a restore.
	Space *Space `json:"space,omitempty"`
	// Recovery says how a journal that needed recovery was replayed
	// (never into the source).
	Recovery string `json:"recovery,omitempty"`
	Archive  string `json:"archive,omitempty"`
	// Index is the archive's file index (files mode; backups made
	// before indexes existed have none).
	Index *Object `json:"index,omitempty"`
	// Incremental (files mode, in a backup with a Chain): the archive
	// holds only the entries that changed since the parent backup's
	// filesystem of the same name, plus every directory with a GNU
	// dumpdir record; the index lists the whole tree, each entry that is
	// not in this archive with the backup that holds it ("from"). A
	// filesystem of an incremental backup without it is stored whole.
	Incremental bool `json:"incremental,omitempty"`
	// Unchanged (an incremental filesystem) counts the entries its index
	// lists from earlier backups of the chain.
	Unchanged   int64    `json:"unchanged,omitempty"`
	StoredBytes int64    `json:"stored_bytes"`
	SourceBytes int64    `json:"source_bytes"`
	Files       int64    `json:"files"`
	Entries     int64    `json:"entries"`
	SHA256      string   `json:"sha256,omitempty"`
	Excludes    []string `json:"excludes,omitempty"`
	// Subvolumes (btrfs, schema 3) lists every subvolume below the top
	// level, parents before children, as archived or skipped.
	Subvolumes []Subvolume `json:"subvolumes,omitempty"`
	// NotEntered lists every path whose contents the archive lacks:
	// another filesystem mounted there, a skipped snapshot.
	NotEntered []NotEntered `json:"not_entered,omitempty"`
	// Check is the completeness check: what was archived against what
	// the filesystem says it holds.
	Check *Check `json:"check,omitempty"`
	// DataBytes (files mode) is SourceBytes without the holes of sparse
	// files: the data read from the source, what reports call its size.
	DataBytes int64 `json:"data_bytes,omitempty"`
	// Warnings are what a restore of this filesystem cannot bring back
	// by itself, e.g. a bootloader that points at the filesystem's blocks.
	Warnings []string  `json:"warnings,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}

// MkfsParams are a filesystem's mkfs parameters, read from its superblock.
type MkfsParams struct {
	BlockSize  int      `json:"block_size,omitempty"`
	InodeSize  int      `json:"inode_size,omitempty"`
	Inodes     int64    `json:"inodes,omitempty"` // ext: the inode count
	SectorSize int      `json:"sector_size,omitempty"`
	Features   []string `json:"features,omitempty"` // mke2fs -O names; xfs: crc, finobt, reflink, ...; btrfs: mkfs.btrfs -O/-R names
	// btrfs: the node size, the data and metadata profiles (mkfs.btrfs
	// -n, -d, -m) and the compression algorithms its data was stored
	// with, which a restore mounts the new filesystem with.
	NodeSize        int      `json:"node_size,omitempty"`
	DataProfile     string   `json:"data_profile,omitempty"`
	MetadataProfile string   `json:"metadata_profile,omitempty"`
	Compression     []string `json:"compression,omitempty"`
}

// Space is what a filesystem held when it was backed up (statfs), and how
// much of its file data it shared between files (reflinks, snapshots,
// deduplication): a restore writes every file's data on its own, so a
// re-made filesystem of the same size needs Shared - SharedOnce bytes more
// than the source used.
type Space struct {
	Size  int64 `json:"size"`  // bytes of the filesystem (statfs blocks)
	Used  int64 `json:"used"`  // bytes in use (blocks - free)
	Avail int64 `json:"avail"` // bytes free for files (statfs bavail)
	// Shared is the file data in extents the filesystem marks shared
	// (FIEMAP_EXTENT_SHARED), counted in every file that has it;
	// SharedOnce counts each such extent once.
	Shared     int64 `json:"shared,omitempty"`
	SharedOnce int64 `json:"shared_once,omitempty"`
}

// Unshared is how much more a restore writes than the source stored:
// the shared data counted again in every file after the first.
func (s *Space) Unshared() int64 {
	if s == nil {
		return 0
	}
	return max(0, s.Shared-s.SharedOnce)
}

// Subvolume is a btrfs subvolume of an archived filesystem.
type Subvolume struct {
	ID         uint64 `json:"id"`
	Path       string `json:"path"` // relative to the top level: "@", "@/nested"
	ParentID   uint64 `json:"parent_id"`
	Default    bool   `json:"default,omitempty"`
	ReadOnly   bool   `json:"read_only,omitempty"`
	Generation uint64 `json:"generation"`
	UUID       string `json:"uuid,omitempty"`
	ParentUUID string `json:"parent_uuid,omitempty"`
	// Skipped: only the subvolume's directory is in the archive, not its
	// contents; Reason says why.
	Skipped bool   `json:"skipped,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// NotEntered is a path of a filesystem whose contents were not archived.
type NotEntered struct {
	Path   string `json:"path"` // relative to the filesystem's root
	Reason string `json:"reason"`
}

// Check methods.
const (
	CheckInodes     = "inodes"     // used inodes (statfs) against inodes met
	CheckSubvolumes = "subvolumes" // btrfs: the subvolume list against those met
)

// Check records the completeness check of one filesystem: Counted (what
// the archive walk met, plus Reserved) is at least Holds (what the
// filesystem says it holds), or the backup failed.
type Check struct {
	Method   string `json:"method"`
	Counted  int64  `json:"counted"`
	Reserved int64  `json:"reserved,omitempty"` // the filesystem's own inodes, never archived
	Holds    int64  `json:"holds"`
}

// What names the filesystem's content for people: its type, or "unknown
// content" for a raw partition nothing was recognised in.
func (f Filesystem) What() string {
	if f.Type == "" {
		return "unknown content"
	}
	return f.Type
}

// StoredBytes sums the stored size of every archive and the outside
// object.
func (m *Manifest) StoredBytes() int64 {
	var n int64
	for _, f := range m.Filesystems {
		n += f.StoredBytes
		if f.Index != nil {
			n += f.Index.StoredBytes
		}
	}
	if m.Outside != nil {
		n += m.Outside.StoredBytes
	}
	return n
}

// SourceBytes sums the source bytes of every archive and the outside
// object.
func (m *Manifest) SourceBytes() int64 {
	var n int64
	for _, f := range m.Filesystems {
		n += f.SourceBytes
	}
	if m.Outside != nil {
		n += m.Outside.SourceBytes
	}
	return n
}

// DataBytes sums the data read from the source: the regular files' data
// of every archived filesystem without the holes of sparse files (their
// source bytes where the manifest predates data_bytes), raw partitions in
// full, and the outside runs. It is what reports call the source size: a
// 6 GiB disk never has more, however large its sparse files look.
func (m *Manifest) DataBytes() int64 {
	var n int64
	for _, f := range m.Filesystems {
		if f.DataBytes > 0 {
			n += f.DataBytes
		} else {
			n += f.SourceBytes
		}
	}
	if m.Outside != nil {
		n += m.Outside.SourceBytes
	}
	return n
}

// SkippedSubvolumes returns the subvolumes whose contents are not archived.
func (f *Filesystem) SkippedSubvolumes() int {
	n := 0
	for _, s := range f.Subvolumes {
		if s.Skipped {
			n++
		}
	}
	return n
}

// Files sums the file counts.
func (m *Manifest) Files() int64 {
	var n int64
	for _, f := range m.Filesystems {
		n += f.Files
	}
	return n
}

// Encode writes m as indented JSON.
func (m *Manifest) Encode(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(m)
}

// Decode reads a manifest, checks its schema version and validates it
// (Validate): every reader of a store goes through here.
func Decode(r io.Reader) (*Manifest, error) {
	var m Manifest
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.Schema < 1 || m.Schema > Schema {
		return nil, fmt.Errorf("manifest schema %d not supported by this voltar (knows 1..%d)", m.Schema, Schema)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}
