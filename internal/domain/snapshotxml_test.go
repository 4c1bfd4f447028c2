package domain

import (
	"os"
	"strings"
	"testing"
)

// The external snapshot's XML takes the disks asked for into their
// overlays and leaves every other disk of the domain out: a disk-only
// snapshot would take them too.
func TestSnapshotXML(t *testing.T) {
	b, err := os.ReadFile("testdata/dumpxml-disks.xml")
	if err != nil {
		t.Fatal(err)
	}
	info, err := Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	got, err := snapshotXML(info, map[string]string{"vda": "/scratch/.voltar-overlay-x-vda.qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, `<disk name="vda" snapshot="external" type="file"><driver type="qcow2"></driver><source file="/scratch/.voltar-overlay-x-vda.qcow2"></source></disk>`) {
		t.Errorf("vda is not external into its overlay:\n%s", got)
	}
	for _, k := range info.Disks {
		if k.Target != "vda" && !strings.Contains(got, `<disk name="`+k.Target+`" snapshot="no">`) {
			t.Errorf("disk %s is not left out:\n%s", k.Target, got)
		}
	}
	if _, err := snapshotXML(info, map[string]string{"vdz": "/x"}); err == nil {
		t.Error("a disk the domain does not have: no error")
	}
}
