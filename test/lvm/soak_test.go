//go:build uml

package lvm_test

import (
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKill9Soak kills backups of a thick and a thin volume in use with
// SIGKILL at random moments, VOLTAR_TEST_SOAK_RUNS times (make test-soak),
// each followed by `voltar list`; then `voltar volumes` sweeps, nothing of
// voltar's is left (snapshot, loop device, mount, journal, unfinished
// folder), every listed backup verifies and the next backup succeeds.
func TestKill9Soak(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("VOLTAR_TEST_SOAK_RUNS"))
	if err != nil || n <= 0 {
		t.Skip("crash-safety soak: set VOLTAR_TEST_SOAK_RUNS (make test-soak)")
	}
	v := newVoltar(t, config{})
	lvs := []string{"volume-00000051", "volume-00000052"}
	busyVolume(t, v.vg, lvs[0])
	lvcreate(t, v.vg, "pool51", "-L", "256M", "-T")
	dev := lvcreate(t, v.vg, lvs[1], "-V", "320M", "--thinpool", "pool51")
	mkfs(t, "xfs", dev, "thin")
	staging := t.TempDir()
	writeFile(t, staging, "data/d.bin", 8<<20)
	copyTree(t, staging, mount(t, dev))

	start := time.Now()
	v.mustRun(0, "backup", v.vg+"/"+lvs[0])
	whole := time.Since(start)
	rng := rand.New(rand.NewPCG(4, uint64(time.Now().UnixNano())))
	kills, incomplete := 0, 0
	for i := range n {
		p := v.start("backup", v.vg+"/"+lvs[i%2])
		delay := time.Duration(rng.Int64N(int64(whole) * 11 / 10))
		select {
		case <-p.done:
		case <-time.After(delay):
			p.signal(syscall.SIGKILL)
			kills++
		}
		if r := p.wait(); r.code != 0 && r.code != -1 {
			t.Errorf("backup %d: %s", i, r)
		}
		r := v.mustRun(0, "list")
		for _, d := range v.backupDirs("*") {
			if _, err := os.Stat(d + "/manifest.json"); err != nil && strings.Contains(r.stdout, strings.TrimPrefix(d, v.store+"/"+host+"/")) {
				incomplete++
				t.Errorf("list shows %s, which has no manifest, as a backup", d)
			}
		}
	}
	v.mustRun(0, "volumes")
	v.assertClean()
	v.mustRun(0, "verify")
	v.mustRun(0, "backup", v.vg+"/"+lvs[1])
	v.assertClean()
	t.Logf("SOAK lvm: kills=%d of %d backups, incomplete-listed=%d (a backup takes %v)", kills, n, incomplete, whole.Round(10*time.Millisecond))
}
