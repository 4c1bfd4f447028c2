package domain_test

import (
	"os"
	"strings"
	"testing"

	"voltar/internal/domain"
)

// testdata/dumpxml-disks.xml is `virsh dumpxml` (libvirt 9.0) of a domain
// defined with one disk of every kind voltar tells apart (libvirt lists
// them by bus).
func TestParseDisks(t *testing.T) {
	b, err := os.ReadFile("testdata/dumpxml-disks.xml")
	if err != nil {
		t.Fatal(err)
	}
	info, err := domain.Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "voltar-capture" || info.UUID != "0b6f6e5c-1c1e-4a53-9b0e-7a0c2f1d9e11" {
		t.Errorf("name %q uuid %q", info.Name, info.UUID)
	}
	want := []struct {
		target, typ, source, format string
		skip                        string // a word of the reason; "" = backed up
	}{
		{"vda", "file", "/var/lib/libvirt/images/web1.qcow2", "qcow2", ""},
		{"vdb", "block", "/dev/vg0/web1-data", "raw", ""},
		{"vdc", "file", "/var/lib/libvirt/images/shared.img", "raw", "shareable"},
		{"vdd", "file", "/var/lib/libvirt/images/ro.img", "raw", "read-only"},
		{"vde", "network", "rbd:pool/web1-scratch", "raw", "network disk"},
		{"vdf", "file", "/var/lib/libvirt/images/old.vmdk", "vmdk", "format vmdk"},
		{"sda", "file", "/var/lib/libvirt/images/debian.iso", "raw", "cdrom"},
		{"sdb", "file", "", "raw", "cdrom"},
	}
	if len(info.Disks) != len(want) {
		t.Fatalf("%d disks, want %d: %+v", len(info.Disks), len(want), info.Disks)
	}
	for i, w := range want {
		got := info.Disks[i]
		if got.Target != w.target || got.Type != w.typ || got.Source != w.source || got.Format != w.format {
			t.Errorf("disk %d: got %+v, want %+v", i, got, w)
		}
		if (w.skip == "") != (got.Skip == "") || !strings.Contains(got.Skip, w.skip) {
			t.Errorf("disk %s: skip %q, want one saying %q", got.Target, got.Skip, w.skip)
		}
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	if _, err := domain.Parse("<domain><name>x"); err == nil {
		t.Error("truncated XML parsed")
	}
}
