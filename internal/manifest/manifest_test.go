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
	if _, err := manifest.Decode(strings.NewReader(`{"schema": 3}`)); err == nil || !strings.Contains(err.Error(), "schema 3") {
		t.Errorf("schema 3: %v, want refused", err)
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
}
