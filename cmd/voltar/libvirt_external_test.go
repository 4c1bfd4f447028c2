package main

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"voltar/internal/domain"
	"voltar/internal/manifest"
	"voltar/internal/testutil"
	"voltar/internal/volume"
)

// The test guest of TestLibvirtDomain with its disks (a raw file and a
// qcow2 file) on an ext4, which cannot reflink: the point in time of
// each disk is a libvirt external snapshot taken while the guest is
// frozen, the images are read in place below the overlays, and the
// overlays are committed back. A run killed after the overlays were
// made leaves the guest writing into them, and the next command commits
// them back.
func TestLibvirtDomainExternal(t *testing.T) {
	g := startGuestOn(t, "ext4")
	scratch := filepath.Join(g.state, "scratch")
	orig := g.sources(t)
	if len(orig) != 2 || !strings.HasSuffix(orig["vda"], "web-root.img") || !strings.HasSuffix(orig["vdb"], "web-data.qcow2") {
		t.Fatalf("disks %v", orig)
	}
	before := g.guestData(t)

	from := g.consoleLen()
	start := time.Now()
	out := g.voltar(t, 0, "run")
	t.Logf("voltar run took %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out, "external snapshot") {
		t.Errorf("the report does not say the disks were taken with an external snapshot:\n%s", out)
	}
	ms := g.manifests(t)
	if len(ms) != 2 {
		t.Fatalf("%d backups, want 2 (one per disk)", len(ms))
	}
	for _, m := range ms {
		s := m.Snapshot
		if s.Kind != string(volume.KindExternal) || s.Consistency != manifest.ConsistencyFrozen || s.Set == nil || len(s.Set.Disks) != 2 ||
			!strings.HasPrefix(filepath.Base(s.Name), domain.OverlayPrefix) {
			t.Errorf("%s: snapshot %+v, want kind external, frozen, named by its overlay, in a set of both disks", m.ID, s)
		}
	}
	// Each disk restores, its filesystem clean, the newest file whole.
	for _, m := range ms {
		g.checkRestore(t, m)
	}
	// The disks are back on their images, no overlay is left, and the
	// guest reads back from them what it wrote while they were backed
	// up.
	if got := g.sources(t); !maps.Equal(got, orig) {
		t.Errorf("disks after the run %v, want %v", got, orig)
	}
	g.noOverlays(t, scratch)
	g.nothingLeft(t)
	after := g.guestData(t)
	if after <= before {
		t.Errorf("the guest's newest file is %d after the run, %d before: it did not write meanwhile", after, before)
	}
	g.writerHealthy(t, from)

	// Killed after the overlays were made (the guest thawed): the guest
	// writes into them until the next command commits them back.
	g.killAt(t, domain.StageOverlaid)
	for target, src := range g.sources(t) {
		if !strings.HasPrefix(filepath.Base(src), domain.OverlayPrefix) || filepath.Dir(src) != scratch {
			t.Errorf("after SIGKILL disk %s runs on %s, want an overlay in %s", target, src, scratch)
		}
	}
	// The qcow2 image's storage daemon still reads it (its export is
	// mounted): QEMU cannot commit into an image another process holds,
	// so the sweep stops it first.
	if b, _ := os.ReadFile("/proc/self/mountinfo"); !bytes.Contains(b, []byte(filepath.Join(g.dir, "run")+"/")) {
		t.Errorf("after SIGKILL no export is mounted under %s/run: the run was killed before it opened the qcow2 image", g.dir)
	}
	before = g.guestData(t)
	time.Sleep(2 * time.Second) // written into the overlays only
	out = g.voltar(t, 0, "volumes")
	if n := strings.Count(out, "committed back the overlay of a killed run"); n != 2 {
		t.Errorf("the next command committed back %d overlays, want 2:\n%s", n, out)
	}
	if got := g.sources(t); !maps.Equal(got, orig) {
		t.Errorf("disks after the next command %v, want %v", got, orig)
	}
	g.noOverlays(t, scratch)
	g.nothingLeft(t)
	if after := g.guestData(t); after <= before {
		t.Errorf("the guest's newest file is %d, %d before the commit", after, before)
	}
	g.writerHealthy(t, from)
}

// sources are the files the domain's disks read now, by target.
func (g *guest) sources(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(testutil.Run(t, "virsh", "-q", "-c", "qemu:///system", "domblklist", g.name), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] != "-" {
			out[f[0]] = f[1]
		}
	}
	return out
}

// noOverlays: no overlay file in the scratch directory.
func (g *guest) noOverlays(t *testing.T, scratch string) {
	t.Helper()
	if left, _ := filepath.Glob(filepath.Join(scratch, domain.OverlayPrefix+"*")); len(left) > 0 {
		t.Errorf("overlays left: %v", left)
	}
}

// guestData asks the guest, its page cache dropped so that it reads its
// disks, for the newest file of each disk and checks its content; it
// returns the smaller number.
func (g *guest) guestData(t *testing.T) int {
	t.Helper()
	out := g.guestExec(t, `sync; echo 3 > /proc/sys/vm/drop_caches; for d in /mnt/a /mnt/b; do n=$(cat $d/last); echo $n $(md5sum < $d/data/$n); done`)
	low := -1
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			t.Fatalf("guest says %q", out)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("guest says %q", out)
		}
		sum := md5.Sum(bytes.Repeat([]byte(f[0]+"\n"), 8000/(len(f[0])+1)))
		if f[1] != hex.EncodeToString(sum[:]) {
			t.Errorf("the guest reads file %d back wrong", n)
		}
		if low < 0 || n < low {
			low = n
		}
	}
	return low
}

// guestExec runs a shell script in the guest through its agent and
// returns its output.
func (g *guest) guestExec(t *testing.T, script string) string {
	t.Helper()
	cmd, _ := json.Marshal(map[string]any{"execute": "guest-exec", "arguments": map[string]any{
		"path": "/bin/busybox", "arg": []string{"sh", "-c", script}, "capture-output": true}})
	var started struct{ Return struct{ Pid int } }
	if err := json.Unmarshal([]byte(g.agentCommand(t, string(cmd))), &started); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var st struct {
			Return struct {
				Exited   bool
				ExitCode int    `json:"exitcode"`
				Out      string `json:"out-data"`
				Err      string `json:"err-data"`
			}
		}
		if err := json.Unmarshal([]byte(g.agentCommand(t, fmt.Sprintf(`{"execute":"guest-exec-status","arguments":{"pid":%d}}`, started.Return.Pid))), &st); err != nil {
			t.Fatal(err)
		}
		if st.Return.Exited {
			o, _ := base64.StdEncoding.DecodeString(st.Return.Out)
			e, _ := base64.StdEncoding.DecodeString(st.Return.Err)
			if st.Return.ExitCode != 0 {
				t.Fatalf("guest: %s: exit %d: %s%s", script, st.Return.ExitCode, o, e)
			}
			return string(o)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("guest: %s: did not end", script)
	return ""
}

// writerHealthy: the guest's writer met no error since console offset
// from; its longest pause is logged.
func (g *guest) writerHealthy(t *testing.T, from int) {
	t.Helper()
	b, _ := os.ReadFile(g.console)
	if len(b) < from {
		from = 0
	}
	if bytes.Contains(b[from:], []byte("WRITER-ERROR")) {
		t.Errorf("the guest's writer failed:\n%s", b[from:])
	}
	longest := 0
	for _, m := range regexp.MustCompile(`GAP (\d+) ms`).FindAllSubmatch(b[from:], -1) {
		if n, _ := strconv.Atoi(string(m[1])); n > longest {
			longest = n
		}
	}
	t.Logf("the writer's longest pause: %d ms", longest)
}
