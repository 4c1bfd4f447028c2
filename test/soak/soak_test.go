// Package soak holds voltar's long crash-safety soaks: backups killed with
// SIGKILL at random moments, each followed by a `voltar list`, then a check
// that nothing of voltar's is left and every listed backup verifies. They
// drive the voltar binary like an operator's cron job would.
//
// They run only when VOLTAR_TEST_SOAK_RUNS is set (make test-soak sets it
// to 50); the LVM half runs in User-Mode Linux (test/lvm TestKill9Soak).
package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"voltar/internal/disk"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
	"voltar/internal/volume/image"
)

// soakRuns is the number of kills per scenario, 0 when the soak is off.
func soakRuns(t *testing.T) int {
	n, err := strconv.Atoi(os.Getenv("VOLTAR_TEST_SOAK_RUNS"))
	if err != nil || n <= 0 {
		t.Skip("crash-safety soak: set VOLTAR_TEST_SOAK_RUNS (make test-soak)")
	}
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.xfs", "sfdisk", "losetup")
	return n
}

// env is one soak's voltar: its binary, config and directories.
type env struct {
	t                         *testing.T
	dir, bin, config          string
	runtime, state, scratch   string
	store                     string // a directory, or s3://bucket
	extraEnv                  []string
	images                    []string
	kills, failures, sweeps   int
	lastBackup                time.Duration
	lateOrphansOK             bool
	lateOrphans               int
	storeFS                   string // the store's own filesystem, when it is one of the test's
	s3                        *versitygw
	bucket                    string
	leftTemp, leftUploads     int
	listedIncompleteAsBackups int
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	e := &env{t: t, dir: dir, runtime: filepath.Join(dir, "run"), state: filepath.Join(dir, "state"), scratch: filepath.Join(dir, "scratch")}
	e.bin = os.Getenv("VOLTAR_BIN")
	if e.bin == "" {
		e.bin = filepath.Join(dir, "voltar")
		cmd := exec.Command("go", "build", "-o", e.bin, "voltar/cmd/voltar")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build voltar: %v\n%s", err, out)
		}
	}
	// Two images: an MBR disk (ext4 + xfs) and a whole-disk ext4, with
	// enough incompressible data that a backup takes a while to kill.
	fill := func(mb int) func(testing.TB, string) {
		return func(t testing.TB, root string) {
			testutil.Run(t, "sh", "-c", fmt.Sprintf("mkdir -p %[1]s/d && head -c %[2]dM /dev/urandom > %[1]s/d/random.bin && for i in $(seq 200); do echo $i > %[1]s/d/f$i; done", root, mb))
		}
	}
	for i, spec := range []testutil.Image{
		{Table: "mbr", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 96, Fill: fill(40)}, {FS: "xfs", SizeMiB: 300, Fill: fill(40)}}},
		{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 128, Fill: fill(60)}}},
	} {
		d := filepath.Join(dir, fmt.Sprintf("images%d", i))
		os.Mkdir(d, 0o700)
		img := testutil.MakeImage(t, d, spec)
		named := filepath.Join(d, fmt.Sprintf("vol%d.img", i))
		if err := os.Rename(img, named); err != nil {
			t.Fatal(err)
		}
		e.images = append(e.images, named)
	}
	return e
}

func (e *env) writeConfig(extra string) {
	cfg := fmt.Sprintf("store: %s\nhost: soak\nruntime_dir: %s\nstate_dir: %s\nscratch_dir: %s\n%s", e.store, e.runtime, e.state, e.scratch, extra)
	e.config = filepath.Join(e.dir, "voltar.yaml")
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func (e *env) command(args ...string) *exec.Cmd {
	cmd := exec.Command(e.bin, append([]string{"--config", e.config}, args...)...)
	cmd.Env = append(os.Environ(), e.extraEnv...)
	return cmd
}

func wait(cmd *exec.Cmd, stdout, stderr *bytes.Buffer) result {
	err := cmd.Wait()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		r.code = ee.ExitCode()
	case errors.As(err, &ee):
		r.code = -1 // a signal
	case err != nil:
		r.code, r.stderr = -2, r.stderr+"\n"+err.Error()
	}
	return r
}

func (e *env) run(args ...string) result {
	cmd := e.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	return wait(cmd, &stdout, &stderr)
}

// killedBackup starts a backup of the i-th image and kills it after a
// random part of a whole backup's duration; during it, during stops the
// store (S3) at another random moment.
func (e *env) killedBackup(i int, rng *rand.Rand, during func()) result {
	args := []string{"backup"}
	if i%2 == 1 {
		args = append(args, "--offline")
	}
	args = append(args, e.images[i%len(e.images)])
	cmd := e.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() { done <- wait(cmd, &stdout, &stderr) }()
	if during != nil {
		time.Sleep(time.Duration(rng.Int64N(int64(e.lastBackup))))
		during()
	}
	delay := time.Duration(rng.Int64N(int64(e.lastBackup) * 11 / 10))
	select {
	case r := <-done:
		e.logf("backup %v ended: %s", args, r)
		return r
	case <-time.After(delay):
		cmd.Process.Signal(syscall.SIGKILL)
		e.kills++
		r := <-done
		e.logf("backup %v killed after %v: %s", args, delay, r.stderr)
		return r
	}
}

// logf appends to the soak's log (soak.log in the test's directory, kept
// with -test.v output on failure).
func (e *env) logf(format string, args ...any) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "voltar-soak-"+e.t.Name()[len("TestCrashSoak"):]+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
}

// timeBackup runs a whole backup and remembers how long it took.
func (e *env) timeBackup() {
	start := time.Now()
	if r := e.run("backup", e.images[0]); r.code != 0 {
		e.t.Fatalf("a backup without faults: %s", r)
	}
	e.lastBackup = time.Since(start)
}

// listCheck runs `voltar list --json` (which sweeps first) and checks that
// every listed backup is a complete folder.
func (e *env) listCheck() {
	r := e.run("list", "--json")
	if r.code != 0 {
		e.t.Fatalf("voltar list after a kill: %s", r)
	}
	e.logf("list: %s", r.stderr)
	if strings.Contains(r.stderr, "released leftover") {
		e.sweeps++
	}
	var c struct {
		Backups []struct {
			ID      string `json:"id"`
			Objects []struct {
				Name string `json:"name"`
			} `json:"objects"`
			Manifest *struct {
				Status string `json:"status"`
			} `json:"manifest"`
		} `json:"backups"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		e.t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	for _, b := range c.Backups {
		has := false
		for _, o := range b.Objects {
			has = has || o.Name == "manifest.json"
		}
		if !has || b.Manifest == nil || b.Manifest.Status != "complete" {
			e.listedIncompleteAsBackups++
			e.t.Errorf("list shows %s as a backup: manifest %v, status %+v", b.ID, has, b.Manifest)
		}
	}
}

// assertNothingLeft checks that no mount, loop device, clone, journal or
// half-written object of voltar's is left.
func (e *env) assertNothingLeft() int {
	t := e.t
	left := 0
	if ms, _ := disk.MountsUnder(e.runtime); len(ms) > 0 {
		left += len(ms)
		t.Errorf("mounts left: %v", ms)
	}
	loops, _ := disk.ListLoops()
	for _, l := range loops {
		if strings.HasPrefix(l.Tag, "voltar:") && strings.HasPrefix(l.Backing, e.dir) {
			left++
			t.Errorf("loop device left: %+v", l)
		}
	}
	// qcow2 images: no storage daemon serving an export of this voltar,
	// no export left.
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, d := range ents {
			b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
			if err == nil && strings.HasPrefix(string(b), "qemu-storage-daemon") && strings.Contains(string(b), e.runtime) {
				left++
				t.Errorf("qemu-storage-daemon left: pid %s", d.Name())
			}
		}
	}
	if exps, _ := filepath.Glob(filepath.Join(e.runtime, "*.export")); len(exps) > 0 {
		left += len(exps)
		t.Errorf("qcow2 exports left: %v", exps)
	}
	for _, pat := range []string{filepath.Join(e.scratch, image.ClonePrefix+"*"), filepath.Join(e.dir, "images*", image.ClonePrefix+"*"), filepath.Join(e.dir, "qcow2", image.ClonePrefix+"*")} {
		cs, _ := filepath.Glob(pat)
		left += len(cs)
		for _, c := range cs {
			t.Errorf("clone left: %s", c)
		}
	}
	// Unfinished backup folders (objects without a manifest) of dead runs.
	r := e.run("list", "--json")
	var c struct {
		Incomplete []struct {
			ID      string
			Reason  string
			Damaged bool
			Objects []struct{ Name string }
		} `json:"incomplete"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r)
	}
	for _, f := range c.Incomplete {
		if e.lateOrphansOK && !f.Damaged {
			// An object whose multipart upload the server was still
			// completing when voltar was killed can land after the
			// sweep removed the folder: prune's incomplete_grace
			// collects it (finish checks that).
			e.lateOrphans++
			t.Logf("folder without manifest.json, from an upload the server completed after the sweep: %s (objects %v)", f.ID, f.Objects)
			continue
		}
		left++
		t.Errorf("unfinished backup folder left: %s (%s, damaged %v, objects %v)", f.ID, f.Reason, f.Damaged, f.Objects)
	}
	js, _ := filepath.Glob(filepath.Join(e.state, "runs", "*"))
	for _, j := range js {
		left++
		t.Errorf("journal left: %s", j)
	}
	if !strings.HasPrefix(e.store, "s3://") {
		filepath.WalkDir(e.store, func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), local.TempPrefix) {
				e.leftTemp++
				left++
				t.Errorf("half-written object left: %s", p)
			}
			return nil
		})
	}
	return left
}

// finish checks what every soak ends with: nothing left, every listed
// backup verifies, and one more backup succeeds.
func (e *env) finish(name string) {
	t := e.t
	left := e.assertNothingLeft()
	if e.lateOrphans > 0 {
		// prune removes folders without a manifest once they are older
		// than incomplete_grace; with a grace of a second, now.
		cfg, _ := os.ReadFile(e.config)
		os.WriteFile(e.config, append(cfg, []byte("retention:\n  incomplete_grace: 1s\n")...), 0o600)
		time.Sleep(1100 * time.Millisecond)
		if r := e.run("prune"); r.code != 0 {
			t.Errorf("prune: %s", r)
		}
		e.lateOrphansOK = false
		left += e.assertNothingLeft()
	}
	r := e.run("verify")
	corrupt := 0
	if r.code != 0 {
		corrupt = 1
		t.Errorf("verify after the soak: %s", r)
	}
	if r := e.run("backup", e.images[1]); r.code != 0 {
		t.Errorf("a backup after the soak: %s", r)
	}
	left += e.assertNothingLeft()
	t.Logf("SOAK %s: kills=%d failed-runs=%d sweeps-with-leftovers=%d leftovers=%d incomplete-listed=%d corrupt=%d unfinished-uploads=%d late-orphans-pruned=%d (a backup takes %v)",
		name, e.kills, e.failures, e.sweeps, left, e.listedIncompleteAsBackups, corrupt, e.leftUploads, e.lateOrphans, e.lastBackup.Round(10*time.Millisecond))
}

// SIGKILL at random moments of backups of image volumes (live: a clone;
// offline: read in place) to a local store.
func TestCrashSoakLocal(t *testing.T) {
	n := soakRuns(t)
	e := newEnv(t)
	e.store = filepath.Join(e.dir, "store")
	os.Mkdir(e.store, 0o700)
	e.writeConfig("")
	e.timeBackup()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for i := range n {
		if r := e.killedBackup(i, rng, nil); r.code != -1 && r.code != 0 {
			e.failures++
			t.Errorf("backup %d failed without a fault: %s", i, r)
		}
		e.listCheck()
	}
	e.finish("local")
}

// SIGKILL at random moments of backups of qcow2 images with a backing
// file (live: a reflink clone on xfs; offline: in place), each under an
// overlay exported by qemu-storage-daemon, with snapshot hooks: nothing is
// left, and every pre_snapshot hook that ran got its post_snapshot hook,
// from the run or from the next command's sweep.
func TestCrashSoakQcow2(t *testing.T) {
	n := soakRuns(t)
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon")
	e := newEnv(t)
	e.store = filepath.Join(e.dir, "store")
	os.Mkdir(e.store, 0o700)
	// The images as qcow2 over a qcow2 backing file, on xfs (reflinks).
	xfs := filepath.Join(e.dir, "qcow2.xfs")
	testutil.Run(t, "truncate", "-s", "2G", xfs)
	testutil.Run(t, "mkfs.xfs", "-q", "-f", xfs)
	qdir := filepath.Join(e.dir, "qcow2")
	os.Mkdir(qdir, 0o700)
	testutil.Run(t, "mount", "-o", "loop", xfs, qdir)
	t.Cleanup(func() { exec.Command("umount", qdir).Run() })
	for i, img := range e.images {
		base, top := fmt.Sprintf("base%d.qcow2", i), fmt.Sprintf("vol%d.qcow2", i)
		for _, args := range [][]string{
			{"convert", "-f", "raw", "-O", "qcow2", img, base},
			{"create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top},
		} {
			cmd := exec.Command("qemu-img", args...)
			cmd.Dir = qdir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("qemu-img %v: %v %s", args, err, out)
			}
		}
		e.images[i] = filepath.Join(qdir, top)
	}
	hooks := filepath.Join(e.dir, "hooks.log")
	e.writeConfig(fmt.Sprintf(`hooks:
  pre_snapshot: [/bin/sh, -c, 'echo "pre $VOLTAR_RUN_ID" >> %[1]s']
  post_snapshot: [/bin/sh, -c, 'echo "post $VOLTAR_RUN_ID $VOLTAR_STATUS" >> %[1]s']
`, hooks))
	e.timeBackup()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for i := range n {
		if r := e.killedBackup(i, rng, nil); r.code != -1 && r.code != 0 {
			e.failures++
			t.Errorf("backup %d failed without a fault: %s", i, r)
		}
		e.listCheck()
	}
	e.finish("qcow2")
	b, _ := os.ReadFile(hooks)
	pre, post, killed := map[string]int{}, map[string]int{}, 0
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "pre":
			pre[f[1]]++
		case len(f) >= 2 && f[0] == "post":
			post[f[1]]++
			if len(f) == 3 && f[2] == "killed" {
				killed++
			}
		}
	}
	for run, k := range pre {
		if post[run] != k {
			t.Errorf("run %s: %d pre_snapshot hooks, %d post_snapshot hooks", run, k, post[run])
		}
	}
	t.Logf("SOAK qcow2 hooks: %d pre_snapshot, each with its post_snapshot (%d run by a sweep after a kill)", len(pre), killed)
}

// The same with the store on a filesystem that fills up during backups:
// each backup fails with a full destination or is killed.
func TestCrashSoakFullStore(t *testing.T) {
	n := soakRuns(t)
	e := newEnv(t)
	// A 160 MiB ext4 for the store, filled but for ~60 MiB: a backup of
	// an image (~100 MiB of random data) cannot fit.
	back := filepath.Join(e.dir, "storefs.img")
	testutil.Run(t, "truncate", "-s", "160M", back)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-m", "0", back)
	e.storeFS = filepath.Join(e.dir, "storefs")
	os.Mkdir(e.storeFS, 0o700)
	testutil.Run(t, "mount", "-o", "loop", back, e.storeFS)
	t.Cleanup(func() { exec.Command("umount", e.storeFS).Run() })
	e.store = filepath.Join(e.storeFS, "store")
	os.Mkdir(e.store, 0o700)
	e.writeConfig("")
	e.timeBackup() // fits while the filesystem is empty
	testutil.Run(t, "sh", "-c", "head -c 45M /dev/zero > "+filepath.Join(e.storeFS, "ballast"))
	rng := rand.New(rand.NewPCG(2, uint64(time.Now().UnixNano())))
	full := 0
	for i := range n {
		r := e.killedBackup(i, rng, nil)
		switch {
		case r.code == 1 && strings.Contains(r.stderr, "full"):
			full++
			e.failures++
		case r.code == 1 || r.code == 0 || r.code == -1:
			if r.code == 1 {
				e.failures++
			}
		default:
			t.Errorf("backup %d: %s", i, r)
		}
		e.listCheck()
	}
	if full == 0 {
		t.Errorf("no backup ran into the full store; the soak did not test it")
	}
	os.Remove(filepath.Join(e.storeFS, "ballast"))
	e.finish(fmt.Sprintf("full-store (%d stopped by a full store)", full))
}

// The same against an S3 server that is killed mid-upload (and started
// again), and voltar killed at random moments too.
func TestCrashSoakS3(t *testing.T) {
	n := soakRuns(t)
	e := newEnv(t)
	gw := startVersitygw(t, filepath.Join(e.dir, "s3"))
	e.s3 = gw
	e.bucket = "soak"
	if err := gw.client(t).MakeBucket(context.Background(), e.bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	e.store = "s3://" + e.bucket + "/v"
	e.extraEnv = []string{"AWS_ACCESS_KEY_ID=" + gw.access, "AWS_SECRET_ACCESS_KEY=" + gw.secret}
	e.config = filepath.Join(e.dir, "voltar.yaml")
	cfg := fmt.Sprintf("store:\n  path: %s\n  endpoint: %s\n  tls: false\nhost: soak\nruntime_dir: %s\nstate_dir: %s\nscratch_dir: %s\n",
		e.store, gw.addr, e.runtime, e.state, e.scratch)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.lateOrphansOK = true
	e.timeBackup()
	rng := rand.New(rand.NewPCG(3, uint64(time.Now().UnixNano())))
	for i := range n {
		stopped := false
		var during func()
		if i%2 == 0 {
			during = func() { gw.kill(t); stopped = true }
		}
		r := e.killedBackup(i, rng, during)
		if r.code == 1 {
			e.failures++
		} else if r.code != 0 && r.code != -1 {
			t.Errorf("backup %d: %s", i, r)
		}
		if stopped {
			gw.start(t)
		}
		e.listCheck()
	}
	// Unfinished multipart uploads: the sweeps abort those of dead runs.
	ctx := context.Background()
	for u := range gw.client(t).ListIncompleteUploads(ctx, e.bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		e.leftUploads++
		t.Errorf("unfinished multipart upload left: %s", u.Key)
	}
	e.finish("s3")
}

// versitygw is a private S3 server the soak may kill.
type versitygw struct {
	bin, dir, addr, access, secret string
	cmd                            *exec.Cmd
}

func startVersitygw(t *testing.T, dir string) *versitygw {
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		for _, d := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("HOME"), "go", "bin"), "/root/go/bin"} {
			if d != "" {
				if _, err := os.Stat(filepath.Join(d, "versitygw")); err == nil {
					bin = filepath.Join(d, "versitygw")
					break
				}
			}
		}
	}
	if bin == "" {
		testutil.Unavailable(t, "versitygw not found (scripts/start-versitygw.sh installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	os.MkdirAll(dir, 0o700)
	g := &versitygw{bin: bin, dir: dir, addr: addr, access: "soak-access", secret: "soak-secret-key"}
	g.start(t)
	t.Cleanup(func() { g.kill(t) })
	return g
}

func (g *versitygw) start(t *testing.T) {
	g.cmd = exec.Command(g.bin, "--access", g.access, "--secret", g.secret, "--port", g.addr, "posix", g.dir)
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if c, err := net.Dial("tcp", g.addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("versitygw on %s did not start", g.addr)
}

func (g *versitygw) kill(t *testing.T) {
	if g.cmd != nil && g.cmd.Process != nil {
		g.cmd.Process.Kill()
		g.cmd.Wait()
		g.cmd = nil
	}
}

func (g *versitygw) client(t *testing.T) *minio.Client {
	return testutil.S3Server{Endpoint: g.addr, AccessKey: g.access, SecretKey: g.secret}.Client(t)
}
