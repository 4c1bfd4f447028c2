package manifest_test

import (
	"strings"
	"testing"

	"voltar/internal/manifest"
)

func TestDecodeSchemas(t *testing.T) {
	// What voltar wrote before encryption existed still reads.
	m, err := manifest.Decode(strings.NewReader(`{"schema": 1, "tool": "voltar", "id": "vg/v/2026-11-25T013000Z",
		"partition_table": {"type": "mbr"},
		"filesystems": [{"name": "p1", "partition": 1, "mode": "files", "archive": "p1.tar.zst"}], "compression": "zstd", "status": "complete"}`))
	if err != nil || m.Encryption != nil || m.Filesystems[0].Archive != "p1.tar.zst" {
		t.Fatalf("schema 1: %+v, %v", m, err)
	}
	m, err = manifest.Decode(strings.NewReader(`{"schema": 2, "partition_table": {"type": "gpt"},
		"filesystems": [{"name": "p1", "partition": 1, "mode": "files", "archive": "p1.tar.zst.age"}],
		"encryption": {"method": "age", "recipients": ["age1xyz"]}}`))
	if err != nil || m.Encryption == nil || m.Encryption.Method != "age" || m.Encryption.Recipients[0] != "age1xyz" {
		t.Fatalf("schema 2: %+v, %v", m, err)
	}
	m, err = manifest.Decode(strings.NewReader(`{"schema": 3, "partition_table": {"type": "none"},
		"filesystems": [{"name": "fs", "type": "btrfs", "mode": "files", "archive": "fs.tar.zst",
		"subvolumes": [{"id": 256, "path": "@", "parent_id": 5, "default": true, "generation": 9}]}]}`))
	if err != nil || len(m.Filesystems[0].Subvolumes) != 1 || !m.Filesystems[0].Subvolumes[0].Default {
		t.Fatalf("schema 3: %+v, %v", m, err)
	}
	m, err = manifest.Decode(strings.NewReader(`{"schema": 4, "id": "vg0/root/2026-12-06T010000Z", "partition_table": {"type": "none"},
		"chain": {"level": 2, "parent": "vg0/root/2026-12-05T010000Z", "full": "vg0/root/2026-12-04T010000Z",
		"parent_manifest_sha256": "` + strings.Repeat("ab", 32) + `"},
		"filesystems": [{"name": "fs", "type": "ext4", "mode": "files", "archive": "fs.tar.zst", "incremental": true,
		"index": {"name": "fs.index.zst", "sha256": "00", "stored_bytes": 1}}]}`))
	if err != nil || m.Level() != 2 || !m.Filesystems[0].Incremental || manifest.SchemaFor(m) != 4 {
		t.Fatalf("schema 4: %+v, %v", m, err)
	}
	for _, bad := range []string{
		`"chain": {"level": 1, "parent": "vg0/root/2026-12-07T010000Z", "full": "vg0/root/2026-12-07T010000Z", "parent_manifest_sha256": "SHA"}`,
		`"chain": {"level": 1, "parent": "vg0/other/2026-12-05T010000Z", "full": "vg0/other/2026-12-05T010000Z", "parent_manifest_sha256": "SHA"}`,
		`"chain": {"level": 0, "parent": "vg0/root/2026-12-05T010000Z", "full": "vg0/root/2026-12-05T010000Z", "parent_manifest_sha256": "SHA"}`,
		`"chain": {"level": 1, "parent": "vg0/root/2026-12-05T010000Z", "full": "vg0/root/2026-12-05T010000Z", "parent_manifest_sha256": "../x"}`,
		`"filesystems": [{"name": "fs", "mode": "files", "archive": "fs.tar.zst", "incremental": true}]`,
	} {
		bad = strings.ReplaceAll(bad, "SHA", strings.Repeat("ab", 32))
		_, err := manifest.Decode(strings.NewReader(`{"schema": 4, "id": "vg0/root/2026-12-06T010000Z", "partition_table": {"type": "none"}, ` + bad + `}`))
		if err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	if _, err := manifest.Decode(strings.NewReader(`{"schema": 5}`)); err == nil || !strings.Contains(err.Error(), "schema 5") {
		t.Errorf("schema 5: %v, want refused", err)
	}
}

func TestSchemaFor(t *testing.T) {
	var plain manifest.Manifest
	if got := manifest.SchemaFor(&plain); got != 1 {
		t.Errorf("unencrypted manifest written as schema %d, want 1 (readable by older voltar)", got)
	}
	var buf strings.Builder
	plain.Schema = manifest.SchemaFor(&plain)
	plain.Encode(&buf)
	if strings.Contains(buf.String(), "encryption") {
		t.Errorf("unencrypted manifest mentions encryption:\n%s", buf.String())
	}
	enc := manifest.Manifest{Encryption: &manifest.Encryption{Method: "age", Recipients: []string{"age1xyz"}}}
	if got := manifest.SchemaFor(&enc); got != 2 {
		t.Errorf("encrypted manifest written as schema %d, want 2", got)
	}
	// Only subvolumes need schema 3: what an older voltar would restore
	// wrongly. A list of paths not entered alone does not.
	ne := manifest.Manifest{Filesystems: []manifest.Filesystem{{NotEntered: []manifest.NotEntered{{Path: "mnt", Reason: "x"}}}}}
	if got := manifest.SchemaFor(&ne); got != 1 {
		t.Errorf("manifest with not_entered written as schema %d, want 1", got)
	}
	sv := manifest.Manifest{Encryption: enc.Encryption, Filesystems: []manifest.Filesystem{{Subvolumes: []manifest.Subvolume{{ID: 256, Path: "@"}}}}}
	if got := manifest.SchemaFor(&sv); got != 3 {
		t.Errorf("manifest with subvolumes written as schema %d, want 3", got)
	}
}

// A qcow2 image's format, virtual size and backing chain, and the
// snapshot's consistency, need no new schema: the filesystems are the
// guest's, and an older voltar restores them as a raw image. Without them
// (LVs, raw images) nothing of them is written.
func TestQcow2FieldsKeepSchema1(t *testing.T) {
	m := manifest.Manifest{Volume: manifest.Volume{Kind: "image", Name: "disk", Group: "image", Size: 1 << 30,
		Format: "qcow2", VirtualSize: 1 << 30, Backing: []manifest.Backing{{Path: "/var/lib/nova/instances/_base/abc", Format: "raw", VirtualSize: 1 << 30}}},
		Snapshot: manifest.Snapshot{Kind: "reflink", Consistency: manifest.ConsistencyHooked}}
	if got := manifest.SchemaFor(&m); got != 1 {
		t.Errorf("qcow2 manifest written as schema %d, want 1", got)
	}
	m.Schema = 1
	var buf strings.Builder
	m.Encode(&buf)
	got, err := manifest.Decode(strings.NewReader(buf.String()))
	if err != nil || got.Volume.Format != "qcow2" || got.Volume.Backing[0].Format != "raw" || got.Snapshot.Consistency != "hooked" {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	var plain strings.Builder
	(&manifest.Manifest{Schema: 1}).Encode(&plain)
	for _, k := range []string{"format", "virtual_size", "backing_chain", "consistency"} {
		if strings.Contains(plain.String(), `"`+k+`"`) {
			t.Errorf("a raw image's manifest has %q:\n%s", k, plain.String())
		}
	}
}
