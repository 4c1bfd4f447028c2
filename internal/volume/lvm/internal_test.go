package lvm

import (
	"strings"
	"testing"
)

// What `lvcreate -s -l 100%ORIGIN` (and any larger -L) allocated in UML for
// these origins, 4 MiB extents: see test/uml/README.md.
func TestCowMaxMatchesLVM(t *testing.T) {
	for _, tt := range []struct{ origin, want int64 }{
		{64 << 20, 68 << 20},
		{128 << 20, 132 << 20},
		{1 << 30, 1032 << 20},
	} {
		if got := cowMax(tt.origin, 4<<20); got != tt.want {
			t.Errorf("cowMax(%d MiB) = %d MiB, want %d MiB", tt.origin>>20, got>>20, tt.want>>20)
		}
	}
}

func TestSnapshotName(t *testing.T) {
	const run = "20261125T013000Z-ab12"
	if got := snapshotName("nova-volumes", "volume-00000001", run); got != "volume-00000001-voltar-"+run {
		t.Errorf("short name = %q", got)
	}
	long1 := strings.Repeat("a-", 40) + "one"
	long2 := strings.Repeat("a-", 40) + "two"
	n1 := snapshotName("nova-volumes", long1, run)
	n2 := snapshotName("nova-volumes", long2, run)
	for _, n := range []string{n1, n2} {
		if dm := dmLen("nova-volumes") + 1 + dmLen(n) + len("-cow"); dm > maxDMName {
			t.Errorf("%q: device-mapper name length %d > %d", n, dm, maxDMName)
		}
		if !strings.HasSuffix(n, "-voltar-"+run) || !strings.HasPrefix(n, "a-a-") {
			t.Errorf("shortened name %q", n)
		}
	}
	if n1 == n2 {
		t.Errorf("different LVs got the same snapshot name %q", n1)
	}
}
