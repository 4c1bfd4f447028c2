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
//
// A manifest is written with the oldest schema that holds it (see
// SchemaFor), so an unencrypted backup stays schema 1 and readable by an
// older voltar, which in turn refuses an encrypted one it could not read.
const Schema = 2

// SchemaFor returns the schema a manifest is written with.
func SchemaFor(m *Manifest) int {
	if m.Encryption != nil {
		return 2
	}
	return 1
}

// File names inside a backup folder.
const (
	FileName = "manifest.json"
	SumsName = "SHA256SUMS"
)

// TimeFormat is the UTC timestamp naming a backup folder: 2026-11-25T013000Z.
const TimeFormat = "2006-01-02T150405Z"

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
}

// Snapshot records how the point-in-time copy was made.
type Snapshot struct {
	Kind       string  `json:"kind"` // thick | thin | reflink | copy | none
	Name       string  `json:"name,omitempty"`
	Size       int64   `json:"size,omitempty"`
	PeakCOWPct float64 `json:"peak_cow_percent,omitempty"`
}

// Table is the partition table found on the volume.
type Table struct {
	Type       string      `json:"type"` // mbr | gpt | none
	SectorSize int         `json:"sector_size,omitempty"`
	DiskID     string      `json:"disk_id,omitempty"` // MBR signature or GPT disk GUID
	Partitions []Partition `json:"partitions,omitempty"`
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
	// Recovery says how a journal that needed recovery was replayed
	// (never into the source).
	Recovery    string    `json:"recovery,omitempty"`
	Archive     string    `json:"archive,omitempty"`
	StoredBytes int64     `json:"stored_bytes"`
	SourceBytes int64     `json:"source_bytes"`
	Files       int64     `json:"files"`
	Entries     int64     `json:"entries"`
	SHA256      string    `json:"sha256,omitempty"`
	Excludes    []string  `json:"excludes,omitempty"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
}

// StoredBytes sums the stored size of every archive.
func (m *Manifest) StoredBytes() int64 {
	var n int64
	for _, f := range m.Filesystems {
		n += f.StoredBytes
	}
	return n
}

// SourceBytes sums the source bytes of every archive.
func (m *Manifest) SourceBytes() int64 {
	var n int64
	for _, f := range m.Filesystems {
		n += f.SourceBytes
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
