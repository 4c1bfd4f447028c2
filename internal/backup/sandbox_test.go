package backup_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/cleanup"
	"voltar/internal/disk"
	"voltar/internal/fail"
	"voltar/internal/manifest"
	"voltar/internal/sandbox"
	"voltar/internal/store"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
	"voltar/internal/verify"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
)

// requireSandbox skips without UML (and root, which newEnv requires).
func requireSandbox(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("linux.uml"); err != nil {
		testutil.Unavailable(t, "isolation: sandbox needs linux.uml (apt-get install user-mode-linux)")
	}
}

func sandboxed(o *backup.Options) { o.Isolation = backup.IsolationSandbox }

// tarDigest is the SHA-256 of a stored archive's tar stream.
// indexDigest is the SHA-256 of a filesystem's file index, decompressed.
func indexDigest(t *testing.T, e *env, m *manifest.Manifest, f manifest.Filesystem) string {
	t.Helper()
	if f.Index == nil {
		t.Fatalf("%s: no file index in the manifest", f.Name)
	}
	p := filepath.Join(e.store.Root(), "testhost", m.ID, f.Index.Name)
	out := testutil.Run(t, "sh", "-c", "zstd -d -q < '"+p+"' | sha256sum")
	return strings.Fields(out)[0]
}

func tarDigest(t *testing.T, e *env, m *manifest.Manifest, f manifest.Filesystem) string {
	t.Helper()
	p := filepath.Join(e.store.Root(), "testhost", m.ID, f.Archive)
	out := testutil.Run(t, "sh", "-c", "zstd -d -q < '"+p+"' | sha256sum")
	return strings.Fields(out)[0]
}

// sandboxProc is what /proc says about a UML process of a sandbox.
type sandboxProc struct {
	pid                          int
	uid, capEff, capPrm, capBnd  string
	noNewPrivs, mntNS, netNS, ns string
	cpus                         string // Cpus_allowed_list
	nice                         int
}

// watchSandbox polls, until stop is called, the host's mount table (this
// process's and PID 1's) for anything mounted from a loop device backed
// by a file under dir or mounted under runtime, and /proc for the
// sandbox's UML processes (descendants of this process).
func watchSandbox(t *testing.T, dir, runtime string) (stop func() (mounts []string, procs []sandboxProc)) {
	var mu sync.Mutex
	var mounts []string
	procs := map[int]sandboxProc{}
	done := make(chan struct{})
	finished := make(chan struct{})
	self := os.Getpid()
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			ours := map[string]bool{}
			if loops, err := disk.ListLoops(); err == nil {
				for _, l := range loops {
					if strings.HasPrefix(l.Backing, dir) {
						ours[l.Path] = true
					}
				}
			}
			for _, mi := range []string{"/proc/self/mountinfo", "/proc/1/mountinfo"} {
				b, _ := os.ReadFile(mi)
				for _, line := range strings.Split(string(b), "\n") {
					f := strings.Fields(line)
					if len(f) < 10 {
						continue
					}
					i := len(f) - 3 // ... - fstype source options
					if ours[f[i+1]] || strings.HasPrefix(f[4], runtime) {
						mu.Lock()
						mounts = append(mounts, line)
						mu.Unlock()
					}
				}
			}
			for _, pid := range testutil.SandboxPIDs(self, false) {
				p := sandboxProc{pid: pid}
				st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
				sc := bufio.NewScanner(bytes.NewReader(st))
				for sc.Scan() {
					k, v, _ := strings.Cut(sc.Text(), ":")
					v = strings.TrimSpace(v)
					switch k {
					case "Uid":
						p.uid = v
					case "CapEff":
						p.capEff = v
					case "CapPrm":
						p.capPrm = v
					case "CapBnd":
						p.capBnd = v
					case "NoNewPrivs":
						p.noNewPrivs = v
					case "Cpus_allowed_list":
						p.cpus = v
					}
				}
				if raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
					// Field 19 of stat, counted after the command's ")".
					if f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:])); len(f) > 16 {
						p.nice, _ = strconv.Atoi(f[16])
					}
				}
				p.mntNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
				p.netNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
				p.ns, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
				if p.uid != "" {
					mu.Lock()
					procs[pid] = p
					mu.Unlock()
				}
			}
		}
	}()
	return func() ([]string, []sandboxProc) {
		close(done)
		<-finished
		var ps []sandboxProc
		for _, p := range procs {
			ps = append(ps, p)
		}
		return mounts, ps
	}
}

// A sandboxed backup writes the same tar streams as a kernel-mode one,
// never mounts a guest filesystem on the host, and parses it in a process
// that is not root and has no capabilities.
func TestSandboxBackup(t *testing.T) {
	requireSandbox(t)
	e := newEnv(t)
	img := testutil.MakeImage(t, e.dir, testutil.Image{Table: "gpt", Parts: []testutil.Part{
		{FS: "ext4", SizeMiB: 300, Label: "root", Fill: fillRoot},
		{FS: "xfs", SizeMiB: 300, Label: "data", Fill: fillData},
		{FS: "btrfs", SizeMiB: 128, Fill: testutil.FillBtrfsLayout},
		{FS: "vfat", SizeMiB: 40, Label: "ESP", Fill: fillFAT},
	}})
	excl := func(o *backup.Options) { o.Excludes = []string{"*.tmp"} }

	start := time.Now()
	kernel, err := e.backupImage(img, false, excl)
	if err != nil {
		t.Fatal(err)
	}
	kernelTime := time.Since(start)

	stop := watchSandbox(t, e.dir, e.runtime)
	start = time.Now()
	var logs syncBuffer
	m, err := e.backupImage(img, false, func(o *backup.Options) {
		excl(o)
		sandboxed(o)
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	sandboxTime := time.Since(start)
	mounts, procs := stop()
	if err != nil {
		t.Fatalf("sandboxed backup: %v\n%s", err, fail.Hints(err))
	}
	t.Logf("kernel mode %s, sandbox %s", kernelTime.Round(time.Millisecond), sandboxTime.Round(time.Millisecond))

	// Every filesystem's stream came through the shared ring, not the
	// serial line (sandbox/ring.go).
	if n := strings.Count(logs.String(), "the stream comes through the ring"); n != 4 {
		t.Errorf("%d of 4 streams came through the ring; log:\n%s", n, logs.String())
	}
	if m.Isolation != backup.IsolationSandbox || kernel.Isolation != backup.IsolationKernel {
		t.Errorf("manifest isolation %q (kernel mode: %q)", m.Isolation, kernel.Isolation)
	}
	for _, l := range mounts {
		t.Errorf("the host's mount table showed a guest filesystem: %s", l)
	}
	if len(procs) == 0 {
		t.Fatal("no sandbox process seen during the backup")
	}
	prio, _ := unix.Getpriority(unix.PRIO_PROCESS, 0)
	ownNice := 20 - prio
	self, _ := os.Readlink("/proc/self/ns/mnt")
	selfNet, _ := os.Readlink("/proc/self/ns/net")
	for _, p := range procs {
		if strings.Fields(p.uid)[0] == "0" || p.capEff != "0000000000000000" || p.capPrm != "0000000000000000" ||
			p.capBnd != "0000000000000000" || p.noNewPrivs != "1" || p.mntNS == self || p.netNS == selfNet {
			t.Errorf("sandbox process %+v: want uid != 0, no capabilities, no_new_privs, own mount and network namespaces", p)
		}
		if want := max(ownNice-5, -20); p.nice != want {
			t.Errorf("sandbox process %+v: nice %d, want %d (five levels above voltar's %d)", p, p.nice, want, ownNice)
		}
		if p.cpus == "" || strings.ContainsAny(p.cpus, ",-") {
			t.Errorf("sandbox process %+v: want it on one host CPU (sandbox/cpu.go), allowed %q", p, p.cpus)
		}
	}
	t.Logf("%d sandbox processes seen, e.g. %+v", len(procs), procs[0])

	want := map[string]string{"p1": "ext4:files", "p2": "xfs:files", "p3": "btrfs:files", "p4": "vfat:files"}
	for i, f := range m.Filesystems {
		if got := f.Type + ":" + f.Mode; got != want[f.Name] {
			t.Errorf("%s: %s, want %s", f.Name, got, want[f.Name])
			continue
		}
		k := kernel.Filesystems[i]
		if f.Type == "vfat" {
			// This host's kernel has no vfat; the sandbox's has.
			if k.Mode == manifest.ModeFiles && tarDigest(t, e, m, f) != tarDigest(t, e, kernel, k) {
				t.Errorf("%s: tar streams differ between the modes", f.Name)
			}
			continue
		}
		if tarDigest(t, e, m, f) != tarDigest(t, e, kernel, k) {
			t.Errorf("%s: tar streams differ between the modes", f.Name)
		}
		// The file index too: the same entries, inodes, times and offsets
		// (the frames too: the same tar stream, compressed the same way).
		if indexDigest(t, e, m, f) != indexDigest(t, e, kernel, k) {
			t.Errorf("%s: file indexes differ between the modes", f.Name)
		}
		if f.Entries != k.Entries || f.Files != k.Files || f.SourceBytes != k.SourceBytes || f.Archive != k.Archive {
			t.Errorf("%s: counts %+v, kernel mode %+v", f.Name, f, k)
		}
		if fmt.Sprint(f.Check) != fmt.Sprint(k.Check) || f.Check == nil || f.Check.Counted != f.Check.Holds {
			t.Errorf("%s: completeness check %+v, kernel mode %+v", f.Name, f.Check, k.Check)
		}
		if fmt.Sprint(f.Subvolumes) != fmt.Sprint(k.Subvolumes) {
			t.Errorf("%s: subvolumes %+v, kernel mode %+v", f.Name, f.Subvolumes, k.Subvolumes)
		}
	}
	// Verify does not care which mode made a backup (the torture tree's
	// restore is in internal/restore's tests).
	b, err := catalog.Resolve(context.Background(), e.store, "testhost", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res := verify.Backup(context.Background(), e.store, b, nil); !res.OK {
		t.Errorf("verify: %+v", res.Problems)
	}
}

// A corrupted filesystem fails its volume's backup and leaves nothing
// (newEnv checks loops, mounts and clones at the end; the store is empty).
func TestSandboxCorruptFilesystem(t *testing.T) {
	requireSandbox(t)
	testutil.RequireTools(t, "debugfs", "dumpe2fs")
	e := newEnv(t)
	clean := testutil.MakeImage(t, e.dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Fill: fillRoot}}})
	bs, err := strconv.Atoi(strings.TrimSpace(testutil.Run(t, "sh", "-c", "dumpe2fs -h "+clean+" 2>/dev/null | sed -n 's/^Block size: *//p'")))
	if err != nil {
		t.Fatal(err)
	}
	rootBlock, err := strconv.Atoi(strings.TrimSpace(testutil.Run(t, "sh", "-c", "debugfs -R 'bmap / 0' "+clean+" 2>/dev/null")))
	if err != nil {
		t.Fatal(err)
	}
	gdt := 4096 // the block after the superblock's
	if bs == 1024 {
		gdt = 2048
	}
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			img := filepath.Join(e.dir, fmt.Sprintf("corrupt%d.img", seed))
			testutil.Run(t, "cp", "--sparse=always", clean, img)
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			rnd := rand.New(rand.NewSource(seed))
			junk := func(off, n int) {
				b := make([]byte, n)
				rnd.Read(b)
				if _, err := f.WriteAt(b, int64(off)); err != nil {
					t.Fatal(err)
				}
			}
			// The superblock's counts and geometry (not its magic or
			// feature flags, and with its checksum made to match, so
			// the host still sees ext4 and hands it to the sandbox: a
			// crafted image, not a damaged one), the group descriptors,
			// the root directory's block.
			sb := make([]byte, 1024)
			if _, err := f.ReadAt(sb, 1024); err != nil {
				t.Fatal(err)
			}
			// seed 1: all three; 2: descriptors and directory; 3: the
			// directory only (the mount succeeds, the walk meets it).
			for range map[bool]int{true: 16, false: 0}[seed == 1] {
				off := rnd.Intn(0x38 + 0x5C - 0x3A)
				if off >= 0x38 {
					off += 2
				}
				sb[off] = byte(rnd.Intn(256))
			}
			binary.LittleEndian.PutUint32(sb[0x3FC:], ^crc32.Checksum(sb[:0x3FC], crc32.MakeTable(crc32.Castagnoli)))
			if _, err := f.WriteAt(sb, 1024); err != nil {
				t.Fatal(err)
			}
			if seed <= 2 {
				junk(gdt, 512)
			}
			junk(rootBlock*bs, bs)
			f.Close()
			m, err := e.backupImage(img, true, func(o *backup.Options) {
				sandboxed(o)
				o.Sandbox.Idle = time.Minute
			})
			if err == nil {
				// The guest kernel made sense of what is left: a
				// complete, checked backup is fine too.
				t.Logf("seed %d: backed up anyway: %d entries", seed, m.Filesystems[0].Entries)
				return
			}
			t.Logf("seed %d: %v", seed, err)
			if !strings.Contains(err.Error(), "in the sandbox") {
				t.Errorf("seed %d: failed before the sandbox: %v", seed, err)
			}
			for _, l := range storeFiles(t, e) {
				if strings.Contains(l, filepath.Base(img)) {
					t.Errorf("left in the store: %s", l)
				}
			}
		})
	}
}

// storeFiles lists every file in e's store.
func storeFiles(t *testing.T, e *env) []string {
	var out []string
	filepath.Walk(e.store.Root(), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// A sandbox that stops sending is killed after the idle timeout and fails
// the volume; one killed from outside fails it at once.
func TestSandboxHangAndKill(t *testing.T) {
	requireSandbox(t)
	e := newEnv(t)
	img := testutil.MakeImage(t, e.dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Fill: fillData}}})

	start := time.Now()
	_, err := e.backupImage(img, true, func(o *backup.Options) {
		sandboxed(o)
		o.Sandbox.Idle = 3 * time.Second
		o.Sandbox.TestStall = true
	})
	if !errors.Is(err, sandbox.ErrTimeout) {
		t.Fatalf("stalled sandbox: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the timeout took %s", d)
	}
	t.Logf("stalled: %v after %s", err, time.Since(start).Round(time.Millisecond))
	if left := storeFiles(t, e); len(left) > 0 {
		t.Errorf("left in the store: %v", left)
	}

	// SIGKILL the guest kernel while it runs.
	killed := make(chan int, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if pids := testutil.SandboxPIDs(os.Getpid(), true); len(pids) > 0 {
				time.Sleep(1500 * time.Millisecond) // the guest is up and stalled
				syscall.Kill(pids[0], syscall.SIGKILL)
				killed <- pids[0]
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		killed <- 0
	}()
	_, err = e.backupImage(img, true, func(o *backup.Options) {
		sandboxed(o)
		o.Sandbox.TestStall = true // alive until killed
		o.Sandbox.Idle = time.Minute
	})
	if pid := <-killed; pid == 0 {
		t.Fatal("no sandbox process to kill")
	}
	t.Logf("killed: %v", err)
	if !errors.Is(err, sandbox.ErrNoResult) {
		t.Fatalf("killed sandbox: %v, want %v", err, sandbox.ErrNoResult)
	}
	if left := storeFiles(t, e); len(left) > 0 {
		t.Errorf("left in the store: %v", left)
	}
	if pids := testutil.SandboxPIDs(os.Getpid(), false); len(pids) > 0 {
		t.Errorf("sandbox processes left: %v", pids)
	}
}

// A stream that does not arrive whole although the guest powered off (UML's
// serial line kept its end) is run once more, then fails the volume with
// nothing left.
func TestSandboxLostStream(t *testing.T) {
	requireSandbox(t)
	e := newEnv(t)
	img := testutil.MakeImage(t, e.dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Fill: fillData}}})
	var logs bytes.Buffer
	_, err := e.backupImage(img, true, func(o *backup.Options) {
		sandboxed(o)
		o.Sandbox.TestLose = true
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if !errors.Is(err, sandbox.ErrLost) {
		t.Fatalf("lost stream: %v, want %v", err, sandbox.ErrLost)
	}
	if n := strings.Count(logs.String(), "running it again"); n != 1 {
		t.Errorf("%d retries, want 1:\n%s", n, logs.String())
	}
	if left := storeFiles(t, e); len(left) > 0 {
		t.Errorf("left in the store: %v", left)
	}
}

const sandboxKillEnv = "VOLTAR_TEST_SANDBOX_KILL"

// The helper process of TestSandboxKilledMidBackup: a sandboxed backup
// whose guest stalls, so it is still running when the test kills us.
func TestSandboxKillHelper(t *testing.T) {
	raw := os.Getenv(sandboxKillEnv)
	if raw == "" {
		t.Skip("helper process of TestSandboxKilledMidBackup")
	}
	var k killSpec
	if err := json.Unmarshal([]byte(raw), &k); err != nil {
		t.Fatal(err)
	}
	v, err := image.Resolve(k.Image, k.Offline)
	if err != nil {
		t.Fatal(err)
	}
	j, err := cleanup.Start(k.State, "run1")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, runtime: k.Runtime, state: k.State, scratch: k.Scratch}
	o := e.options("run1", j)
	o.Store = local.New(k.Store)
	sandboxed(&o)
	o.Sandbox.TestStall = true
	o.Sandbox.Idle = time.Minute
	backup.Volume(context.Background(), v, o)
	t.Fatal("backup ended before it was killed")
}

// voltar killed with SIGKILL while a sandbox runs: the sandbox dies with
// it (parent-death signal, PID namespace), and the next command's sweep
// releases the loop device and the sandbox's directory from the journal.
func TestSandboxKilledMidBackup(t *testing.T) {
	requireSandbox(t)
	e := newEnv(t)
	img := testutil.MakeImage(t, e.dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Fill: fillData}}})
	spec, _ := json.Marshal(killSpec{Image: img, Runtime: e.runtime, State: e.state, Scratch: e.scratch, Store: e.store.Root(), Offline: true})
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSandboxKillHelper$")
	cmd.Env = append(os.Environ(), sandboxKillEnv+"="+string(spec))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	for deadline := time.Now().Add(30 * time.Second); len(pids) == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		pids = testutil.SandboxPIDs(cmd.Process.Pid, false)
	}
	if len(pids) == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the helper started no sandbox\n%s", out.String())
	}
	time.Sleep(1500 * time.Millisecond) // the guest is up and stalled
	pids = testutil.SandboxPIDs(cmd.Process.Pid, false)
	cmd.Process.Kill()
	cmd.Wait()
	alive := func() []int {
		var a []int
		for _, p := range pids {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); strings.HasSuffix(exe, "/linux.uml") {
				a = append(a, p)
			}
		}
		return a
	}
	for deadline := time.Now().Add(10 * time.Second); len(alive()) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if a := alive(); len(a) > 0 {
		t.Errorf("sandbox processes outlived voltar: %v", a)
		for _, p := range a {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	sw := &image.Snapshotter{Scratch: e.scratch, Scope: backup.Scope(e.runtime), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	n, err := backup.Sweep(context.Background(), backup.SweepOptions{
		RuntimeDir: e.runtime, StateDir: e.state, JournalOnly: []volume.Sweeper{sw},
		OpenStore: func(context.Context, string) (store.Store, error) { return e.store, nil },
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(e.runtime, "run1-*"))
	if len(left) > 0 {
		t.Errorf("after the sweep (%d released): %v", n, left)
	}
	// The sweep detached the loop device; while the killed sandbox's last
	// processes still hold it open the kernel only marks it, and frees it
	// when they are gone (env's final check then finds nothing).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		held := false
		loops, _ := disk.ListLoops()
		for _, l := range loops {
			held = held || strings.HasPrefix(l.Backing, img)
		}
		if !held {
			break
		}
	}
	if n < 2 {
		t.Errorf("the sweep released %d resources, want the loop device and the sandbox's directory at least", n)
	}
}

// An offline image whose ext4 and xfs journals need replaying: the sandbox
// replays them into its copy-on-write file (no writable copy of the image),
// the tree is complete, and the image is not changed by a single byte.
func TestSandboxJournalReplay(t *testing.T) {
	requireSandbox(t)
	for _, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) {
			e := newEnv(t)
			img := tornImage(t, t.TempDir(), fs)
			before := testutil.Run(t, "sha256sum", img)
			m, err := e.backupImage(img, true, sandboxed)
			if err != nil {
				t.Fatalf("%v\n%s", err, fail.Hints(err))
			}
			if after := testutil.Run(t, "sha256sum", img); after != before {
				t.Errorf("the image changed: %s, was %s", after, before)
			}
			f := m.Filesystems[0]
			// d/ and its files, the root, and nothing of gone.txt.
			if f.Files != int64(tornFiles) || f.Check == nil || f.Check.Counted != f.Check.Holds {
				t.Errorf("files %d, want %d; check %+v", f.Files, tornFiles, f.Check)
			}
			if fs == "ext4" && f.Recovery == "" {
				t.Errorf("no recovery note in the manifest: %+v", f)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer for a logger written from several
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
