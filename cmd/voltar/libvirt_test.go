package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"voltar/internal/domain"
	"voltar/internal/manifest"
	"voltar/internal/testutil"
)

// A real libvirtd runs a real QEMU guest (TCG) booted from the Debian
// kernel and an initramfs with busybox, qemu-ga and a writer that writes
// to both of its disks all the time: a partitioned raw file and a qcow2
// file, each with ext4, on an xfs with reflinks. voltar backs the domain
// up as one set with the guest frozen; a run killed while the guest is
// frozen leaves it frozen and the next command thaws it; an agent that
// hangs costs freeze_timeout and gives a crash-consistent set.
func TestLibvirtDomain(t *testing.T) {
	g := startGuest(t)

	// 1. A frozen set: the injected pause shows the guest frozen (the
	// agent says so and the writer sees a gap), and thawed afterwards.
	var sawFrozen string
	domainInject = func(stage string) error {
		if stage == domain.StageFrozen {
			sawFrozen = g.freezeStatus(t)
			time.Sleep(2500 * time.Millisecond)
		}
		return nil
	}
	t.Cleanup(func() { domainInject = nil })
	from := g.consoleLen()
	out := g.voltar(t, 0, "run")
	domainInject = nil
	if sawFrozen != "frozen" {
		t.Errorf("fsfreeze-status during the snapshots = %q, want frozen", sawFrozen)
	}
	if st := g.freezeStatus(t); st != "thawed" {
		t.Errorf("fsfreeze-status after the run = %q, want thawed", st)
	}
	if !strings.Contains(out, "frozen: the guest's filesystems were frozen") || !strings.Contains(out, "taken together") {
		t.Errorf("the report does not say frozen and taken together:\n%s", out)
	}
	// The writer's fsyncs waited while the run stayed frozen (2.5 s): a
	// gap of a second or more, where they take milliseconds. (A TCG
	// guest's clock on a loaded host measured 1.2 s of a 1.5 s freeze.)
	g.waitConsole(t, from, regexp.MustCompile(`GAP ([1-9]\d\d\d|\d{5,}) ms`), 20*time.Second)
	ms := g.manifests(t)
	if len(ms) != 2 {
		t.Fatalf("%d backups, want 2 (one per disk)", len(ms))
	}
	for _, m := range ms {
		s := m.Snapshot
		if s.Consistency != manifest.ConsistencyFrozen || s.Set == nil || s.Set.Domain != g.name || len(s.Set.Disks) != 2 || s.Set.ID != ms[0].Snapshot.Set.ID {
			t.Errorf("%s: snapshot %+v set %+v, want frozen, one set of both disks", m.ID, s, s.Set)
		}
	}
	// Each disk restores; its filesystem is clean and the newest file
	// the guest finished writing is whole.
	for _, m := range ms {
		g.checkRestore(t, m)
	}

	// 2. Killed while the guest is frozen: the guest stays frozen until
	// the next voltar command (here `volumes`) sweeps the journal.
	g.killWhileFrozen(t)
	if st := g.freezeStatus(t); st != "frozen" {
		t.Fatalf("fsfreeze-status after SIGKILL = %q, want frozen (the run was killed during the freeze)", st)
	}
	g.voltar(t, 0, "volumes")
	if st := g.freezeStatus(t); st != "thawed" {
		t.Errorf("fsfreeze-status after the next command = %q, want thawed", st)
	}
	g.nothingLeft(t)

	// 3. An agent that hangs: the freeze is given up after
	// freeze_timeout and the disks are taken crash-consistent; libvirt
	// holds the domain until the agent answers the freeze, so the thaw
	// fails too, and the run says the guest may still be frozen. (Last:
	// the domain's agent never answers again.)
	before := len(g.manifests(t))
	g.agentCommand(t, `{"execute":"guest-exec","arguments":{"path":"/bin/busybox","arg":["sh","-c","sleep 0.5; kill -STOP $(pidof qemu-ga)"]}}`)
	time.Sleep(2 * time.Second)
	os.WriteFile(g.cfg, []byte(strings.Replace(string(g.cfgBytes), "freeze_timeout: 20s", "freeze_timeout: 2s", 1)), 0o600)
	start := time.Now()
	out = g.voltar(t, 1, "run")
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("the run with a hung agent took %s", d)
	}
	for _, want := range []string{"did not finish within freeze_timeout (2s)", "crash-consistent", "may still be frozen"} {
		if !strings.Contains(out, want) {
			t.Errorf("the run with a hung agent does not say %q:\n%s", want, out)
		}
	}
	ms = g.manifests(t)
	if len(ms) != before+2 {
		t.Fatalf("%d backups, want %d: a failed thaw does not unmake stored backups", len(ms), before+2)
	}
	for _, m := range ms[before:] {
		if m.Snapshot.Consistency != manifest.ConsistencyCrash {
			t.Errorf("%s: consistency %q, want crash", m.ID, m.Snapshot.Consistency)
		}
	}
	if js, _ := filepath.Glob(filepath.Join(g.state, "runs", "*.journal")); len(js) != 1 {
		t.Errorf("journals %v: want the run's, with its freeze entry kept for the next sweep", js)
	}
}

// A domain without a guest agent (no channel; it boots nothing, its
// disks hold ext4): its disks are backed up crash-consistent, and said
// so; with require_freeze it fails and leaves nothing behind.
func TestLibvirtDomainWithoutAgent(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "virsh", "qemu-system-x86_64", "mkfs.ext4", "mkfs.xfs")
	requireLibvirt(t)
	dir := t.TempDir()
	g := &guest{dir: dir, name: fmt.Sprintf("voltar-noagent-%d", os.Getpid()),
		store: filepath.Join(dir, "store"), state: filepath.Join(dir, "state"), vmDir: filepath.Join(dir, "vm")}
	os.Mkdir(g.vmDir, 0o755)
	disk := filepath.Join(g.vmDir, "noagent-root.img")
	testutil.Run(t, "truncate", "-s", "32M", disk)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", disk)
	xml := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>`, g.name, disk)
	p := filepath.Join(dir, "domain.xml")
	os.WriteFile(p, []byte(xml), 0o644)
	testutil.Run(t, "virsh", "-q", "-c", "qemu:///system", "create", p)
	t.Cleanup(func() { exec.Command("virsh", "-q", "-c", "qemu:///system", "destroy", g.name).Run() })
	g.cfg = filepath.Join(dir, "voltar.yaml")
	g.cfgBytes = []byte(fmt.Sprintf("store: %s\nhost: h1\nruntime_dir: %s/run\nstate_dir: %s\ndomains: [%s]\n", g.store, dir, g.state, g.name))
	os.WriteFile(g.cfg, g.cfgBytes, 0o600)
	os.Mkdir(g.store, 0o700)

	out := g.voltar(t, 0, "run")
	if !strings.Contains(out, "crash-consistent") || !strings.Contains(out, "QEMU guest agent is not configured") {
		t.Errorf("the run of a domain without agent does not say crash-consistent and why:\n%s", out)
	}
	ms := g.manifests(t)
	if len(ms) != 1 || ms[0].Snapshot.Consistency != manifest.ConsistencyCrash || ms[0].Snapshot.Set == nil || ms[0].Snapshot.Set.Domain != g.name {
		t.Fatalf("manifests %d, want 1, crash-consistent, in its set", len(ms))
	}
	g.nothingLeft(t)

	os.WriteFile(g.cfg, append(g.cfgBytes, []byte("require_freeze: true\n")...), 0o600)
	out = g.voltar(t, 1, "run")
	if !strings.Contains(out, "require_freeze is set, but the guest cannot be frozen") {
		t.Errorf("the failed run does not say why:\n%s", out)
	}
	if n := len(g.manifests(t)); n != 1 {
		t.Errorf("%d backups after a failed require_freeze run, want 1", n)
	}
	if objs, _ := filepath.Glob(filepath.Join(g.store, "h1", "image", "*", "*")); len(objs) != 1 {
		t.Errorf("backup folders %v, want only the first run's", objs)
	}
	g.nothingLeft(t)
}

// requireLibvirt skips (or fails) the test when libvirtd does not answer.
func requireLibvirt(t *testing.T) {
	c := &domain.Client{}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Names(ctx); err != nil {
		testutil.Unavailable(t, "libvirtd does not answer on %s (scripts/start-libvirtd.sh starts it): %v", domain.DefaultSocket, err)
	}
}

// TestLibvirtKilledHelper is the run TestLibvirtDomain kills: it stops
// inside the freeze until it is killed.
func TestLibvirtKilledHelper(t *testing.T) {
	cfg, marker := os.Getenv("VOLTAR_TEST_LIBVIRT_CFG"), os.Getenv("VOLTAR_TEST_LIBVIRT_MARKER")
	if cfg == "" {
		t.Skip("run by TestLibvirtDomain only")
	}
	stage := os.Getenv("VOLTAR_TEST_LIBVIRT_STAGE")
	if stage == "" {
		stage = domain.StageFrozen
	}
	domainInject = func(s string) error {
		if s == stage {
			os.WriteFile(marker, []byte(stage), 0o644)
			time.Sleep(time.Hour)
		}
		return nil
	}
	var out bytes.Buffer
	run([]string{"--config", cfg, "run"}, &out, &out)
}

// guest is the test's domain and voltar's config for it.
type guest struct {
	dir, name, vmDir, console string
	cfg                       string
	cfgBytes                  []byte
	store, state              string
}

// startGuest boots the test's domain, its disks on an xfs with reflinks,
// and waits until its agent answers and its writer writes.
func startGuest(t *testing.T) *guest { return startGuestOn(t, "xfs") }

// startGuestOn is startGuest with the disks on a filesystem of type fs:
// xfs (with reflinks) or ext4 (without).
func startGuestOn(t *testing.T, fs string) *guest {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "virsh", "qemu-system-x86_64", "qemu-img", "qemu-ga", "busybox", "cpio", "gzip",
		"mkfs.ext4", "mkfs.xfs", "e2fsck", "sfdisk", "modprobe", "go")
	requireLibvirt(t)
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(kernels) == 0 {
		testutil.Unavailable(t, "no kernel in /boot (apt-get install linux-image-amd64)")
	}
	kernel := kernels[len(kernels)-1]
	kver := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	if _, err := os.Stat("/lib/modules/" + kver); err != nil {
		testutil.Unavailable(t, "no modules for %s", kver)
	}

	dir := t.TempDir()
	g := &guest{dir: dir, name: fmt.Sprintf("voltar-test-%d", os.Getpid()), console: filepath.Join(dir, "console.log"),
		store: filepath.Join(dir, "store"), state: filepath.Join(dir, "state")}
	initrd := guestInitrd(t, dir, kver)

	// The disks live on an xfs with reflinks (a live qcow2 image is
	// cloned), or on an ext4 without (a libvirt external snapshot).
	g.vmDir = filepath.Join(dir, "vm")
	os.Mkdir(g.vmDir, 0o755)
	fsImg := filepath.Join(dir, fs+".img")
	testutil.Run(t, "truncate", "-s", "1G", fsImg)
	if fs == "xfs" {
		testutil.Run(t, "mkfs.xfs", "-q", "-m", "reflink=1", fsImg)
	} else {
		testutil.Run(t, "mkfs."+fs, "-q", "-F", fsImg)
	}
	testutil.Run(t, "mount", "-o", "loop", fsImg, g.vmDir)
	t.Cleanup(func() { exec.Command("umount", g.vmDir).Run() })
	raw := filepath.Join(g.vmDir, "web-root.img")
	testutil.Run(t, "truncate", "-s", "64M", raw)
	testutil.Run(t, "sh", "-c", "echo 'label: dos\nstart=2048, type=83' | sfdisk -q "+raw)
	part := filepath.Join(dir, "part.img")
	testutil.Run(t, "truncate", "-s", strconv.Itoa(64<<20-1<<20), part)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", part)
	testutil.Run(t, "dd", "if="+part, "of="+raw, "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none")
	os.Remove(part)
	whole := filepath.Join(dir, "data.raw")
	testutil.Run(t, "truncate", "-s", "64M", whole)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", whole)
	qcow := filepath.Join(g.vmDir, "web-data.qcow2")
	testutil.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", whole, qcow)
	os.Remove(whole)

	xml := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel><initrd>%s</initrd>
    <cmdline>console=ttyS0 panic=1 quiet</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw' cache='none'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/><source file='%s'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <serial type='file'><source path='%s'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>`, g.name, kernel, initrd, raw, qcow, g.console)
	xmlPath := filepath.Join(dir, "domain.xml")
	os.WriteFile(xmlPath, []byte(xml), 0o644)
	testutil.Run(t, "virsh", "-q", "-c", "qemu:///system", "create", xmlPath)
	t.Cleanup(func() {
		exec.Command("virsh", "-q", "-c", "qemu:///system", "destroy", g.name).Run()
		if t.Failed() {
			b, _ := os.ReadFile(g.console)
			t.Logf("guest console:\n%s", b)
		}
	})
	g.waitConsole(t, 0, regexp.MustCompile("WRITER-STARTED"), 90*time.Second)
	deadline := time.Now().Add(60 * time.Second)
	for !g.agentAnswers() {
		if time.Now().After(deadline) {
			t.Fatalf("the guest agent does not answer")
		}
		time.Sleep(500 * time.Millisecond)
	}

	g.cfg = filepath.Join(dir, "voltar.yaml")
	g.cfgBytes = []byte(fmt.Sprintf("store: %s\nhost: h1\nruntime_dir: %s/run\nstate_dir: %s\ndomains: [%q]\nfreeze_timeout: 20s\n",
		g.store, dir, g.state, "voltar-test-"+strconv.Itoa(os.Getpid())+"*"))
	os.WriteFile(g.cfg, g.cfgBytes, 0o600)
	os.Mkdir(g.store, 0o700)

	// voltar volumes lists both disks and says why the cdrom is not
	// backed up.
	out := g.voltar(t, 0, "volumes")
	for _, want := range []string{"image/web-root.img", "image/web-data.qcow2", "cdrom: removable media", "domain " + g.name + " vdb"} {
		if !strings.Contains(out, want) {
			t.Errorf("voltar volumes does not show %q:\n%s", want, out)
		}
	}
	return g
}

// guestInitrd builds the guest's initramfs: busybox, the kernel modules
// for virtio and ext4, qemu-ga with its libraries, and the writer.
func guestInitrd(t *testing.T, dir, kver string) string {
	root := filepath.Join(dir, "initrd")
	for _, d := range []string{"bin", "lib/modules", "proc", "sys", "dev", "run", "mnt/a", "mnt/b", "usr/sbin"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	testutil.Run(t, "cp", "/bin/busybox", filepath.Join(root, "bin", "busybox"))
	qga, _ := exec.LookPath("qemu-ga")
	testutil.Run(t, "cp", qga, filepath.Join(root, "usr/sbin/qemu-ga"))
	for _, lib := range regexp.MustCompile(`/\S+\.so[.\d]*`).FindAllString(testutil.Run(t, "ldd", qga), -1) {
		dst := filepath.Join(root, lib)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		testutil.Run(t, "cp", "-L", lib, dst)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(root, "bin", "guestwriter"), "./testdata/guestwriter")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the guest's writer: %v\n%s", err, out)
	}
	var insmod []string
	seen := map[string]bool{}
	for _, m := range []string{"virtio_pci", "virtio_blk", "virtio_console", "ext4"} {
		for _, line := range strings.Split(testutil.Run(t, "modprobe", "-S", kver, "--show-depends", m), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "insmod" || seen[f[1]] {
				continue
			}
			seen[f[1]] = true
			testutil.Run(t, "cp", f[1], filepath.Join(root, "lib/modules"))
			insmod = append(insmod, "insmod /lib/modules/"+filepath.Base(f[1])+" 2>/dev/null")
		}
	}
	init := `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
` + strings.Join(insmod, "\n") + `
n=0
while [ ! -e /dev/vdb ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
mount -t ext4 /dev/vda1 /mnt/a && mount -t ext4 /dev/vdb /mnt/b || echo VOLTAR-GUEST-MOUNT-FAILED
for p in /sys/class/virtio-ports/*; do
	[ "$(cat $p/name)" = org.qemu.guest_agent.0 ] && port=/dev/$(basename $p)
done
[ -n "$port" ] && qemu-ga -m virtio-serial -p $port -t /run &
/bin/guestwriter /mnt/a /mnt/b &
while true; do sleep 3600; done
`
	os.WriteFile(filepath.Join(root, "init"), []byte(init), 0o755)
	out := filepath.Join(dir, "initrd.img")
	testutil.Run(t, "sh", "-c", fmt.Sprintf("cd %s && find . | cpio -o -H newc --quiet | gzip -1 > %s", root, out))
	return out
}

// voltar runs a command with the guest's config and wants exit code
// want; it returns stdout and stderr.
func (g *guest) voltar(t *testing.T, want int, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	code := run(append([]string{"--config", g.cfg}, args...), &out, &out)
	if code != want {
		t.Fatalf("voltar %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out.String())
	}
	return out.String()
}

// agentCommand sends the guest agent a command through libvirt.
func (g *guest) agentCommand(t *testing.T, cmd string) string {
	t.Helper()
	return testutil.Run(t, "virsh", "-q", "-c", "qemu:///system", "qemu-agent-command", "--timeout", "10", g.name, cmd)
}

func (g *guest) agentAnswers() bool {
	return exec.Command("virsh", "-q", "-c", "qemu:///system", "qemu-agent-command", "--timeout", "5", g.name, `{"execute":"guest-ping"}`).Run() == nil
}

// freezeStatus is the agent's guest-fsfreeze-status: frozen or thawed.
func (g *guest) freezeStatus(t *testing.T) string {
	t.Helper()
	var r struct{ Return string }
	out := g.agentCommand(t, `{"execute":"guest-fsfreeze-status"}`)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("guest-fsfreeze-status: %q: %v", out, err)
	}
	return r.Return
}

// consoleLen is how much the guest's console shows so far.
func (g *guest) consoleLen() int {
	b, _ := os.ReadFile(g.console)
	return len(b)
}

// waitConsole waits until the guest's console shows re after offset from.
func (g *guest) waitConsole(t *testing.T, from int, re *regexp.Regexp, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(g.console)
		if len(b) >= from && re.Match(b[from:]) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest's console does not show %s within %s:\n%s", re, within, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// manifests are the manifests in the store, oldest first.
func (g *guest) manifests(t *testing.T) []*manifest.Manifest {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(g.store, "h1", "image", "*", "*", "manifest.json"))
	var out []*manifest.Manifest
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, m)
	}
	// by time, then volume
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Started.Before(out[j-1].Started); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// checkRestore restores backup m to an image, checks its filesystem with
// e2fsck -n, and that the newest file the writer finished is whole.
func (g *guest) checkRestore(t *testing.T, m *manifest.Manifest) {
	t.Helper()
	img := filepath.Join(g.dir, "restored-"+m.Volume.Name)
	g.voltar(t, 0, "restore", m.ID, "--to-image", img)
	fsImg := img
	if len(m.Table.Partitions) > 0 {
		p := m.Table.Partitions[0]
		fsImg = img + ".p1"
		testutil.Run(t, "dd", "if="+img, "of="+fsImg, "bs=1M", "iflag=skip_bytes,count_bytes", "skip="+strconv.FormatInt(p.Start, 10),
			"count="+strconv.FormatInt(p.Size, 10), "status=none")
	}
	if out, err := exec.Command("e2fsck", "-n", "-f", fsImg).CombinedOutput(); err != nil {
		t.Errorf("%s: e2fsck -n of the restored filesystem: %v\n%s", m.ID, err, out)
	}
	files := filepath.Join(g.dir, "files-"+m.Volume.Name)
	g.voltar(t, 0, "restore", m.ID, "--to", files)
	root := filepath.Join(files, m.Filesystems[0].Name)
	if _, err := os.Stat(root); err != nil {
		root = files
	}
	last, err := os.ReadFile(filepath.Join(root, "last"))
	if err != nil {
		t.Fatalf("%s: %v", m.ID, err)
	}
	n := strings.TrimSpace(string(last))
	data, err := os.ReadFile(filepath.Join(root, "data", n))
	want := bytes.Repeat([]byte(n+"\n"), 8000/(len(n)+1))
	if err != nil || !bytes.Equal(data, want) {
		t.Errorf("%s: file data/%s named by last is not whole (%d bytes, err %v)", m.ID, n, len(data), err)
	}
}

// killWhileFrozen runs `voltar run` in a child that stops while the guest
// is frozen, and kills it with SIGKILL there.
func (g *guest) killWhileFrozen(t *testing.T) { g.killAt(t, domain.StageFrozen) }

// killAt runs `voltar run` in a child that stops at the domain stage,
// and kills it with SIGKILL there.
func (g *guest) killAt(t *testing.T, stage string) {
	t.Helper()
	marker := filepath.Join(g.dir, stage+".marker")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLibvirtKilledHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "VOLTAR_TEST_LIBVIRT_CFG="+g.cfg, "VOLTAR_TEST_LIBVIRT_MARKER="+marker, "VOLTAR_TEST_LIBVIRT_STAGE="+stage)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the killed run never reached %s:\n%s", stage, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

// nothingLeft: no journal, no clone next to the disks, no mount under
// the runtime directory.
func (g *guest) nothingLeft(t *testing.T) {
	t.Helper()
	if js, _ := filepath.Glob(filepath.Join(g.state, "runs", "*.journal")); len(js) > 0 {
		b, _ := os.ReadFile(js[0])
		t.Errorf("journals left: %v\n%s", js, b)
	}
	if cs, _ := filepath.Glob(filepath.Join(g.vmDir, ".voltar-*")); len(cs) > 0 {
		t.Errorf("clones left: %v", cs)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(filepath.Join(g.dir, "run")+"/")) {
		t.Errorf("mounts left under %s/run", g.dir)
	}
}
