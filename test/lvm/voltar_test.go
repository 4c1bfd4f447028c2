//go:build uml

// The scenarios run the voltar binary named by VOLTAR_BIN (an absolute
// host path; the guest sees the host's / read-only) against the guest's
// volume group. Each test has its own config, store, runtime_dir and
// state_dir under the guest's tmpfs /tmp, creates the LVs it needs and
// removes them at the end, so tests run in any order but not in parallel:
// they share the VG, and some fill it up.

package lvm_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"voltar/internal/disk"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
)

const (
	host = "h1"
	mib  = int64(1) << 20
	// voltarTimeout bounds one voltar command; UML is slow, but not this slow.
	voltarTimeout = 3 * time.Minute
)

// guest returns the volume group of the UML guest and the voltar binary, or
// skips (fails under VOLTAR_TEST_REQUIRE_ALL=1) anywhere else.
func guest(t *testing.T) (vg, bin string) {
	t.Helper()
	if os.Getenv("VOLTAR_UML") != "1" || os.Getenv("VOLTAR_UML_VG") == "" {
		testutil.Unavailable(t, "test needs real LVM in the UML guest: scripts/test-lvm.sh")
	}
	bin = os.Getenv("VOLTAR_BIN")
	if bin == "" || !filepath.IsAbs(bin) {
		testutil.Unavailable(t, "VOLTAR_BIN must be the absolute path of the voltar binary (got %q)", bin)
	}
	if _, err := os.Stat(bin); err != nil {
		testutil.Unavailable(t, "VOLTAR_BIN: %v", err)
	}
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "lvcreate", "lvs", "vgs", "sfdisk", "losetup", "mkfs.ext4", "mkfs.xfs", "tar", "zstd", "sha256sum", "sync")
	return os.Getenv("VOLTAR_UML_VG"), bin
}

// config is what a scenario sets in voltar.yaml; the rest is fixed.
type config struct {
	SnapshotSize string
	Level        int
	Include      []string
	Exclude      []string
}

// voltar is one configured voltar: its own store, runtime and state
// directories and config file.
type voltar struct {
	t                     *testing.T
	bin, vg               string
	dir, config           string
	store, runtime, state string
}

func newVoltar(t *testing.T, c config) *voltar {
	t.Helper()
	vg, bin := guest(t)
	dir := t.TempDir()
	v := &voltar{t: t, bin: bin, vg: vg, dir: dir,
		config: filepath.Join(dir, "voltar.yaml"), store: filepath.Join(dir, "store"),
		runtime: filepath.Join(dir, "run"), state: filepath.Join(dir, "state")}
	if err := os.Mkdir(v.store, 0o700); err != nil {
		t.Fatal(err)
	}
	v.setConfig(c)
	return v
}

func (v *voltar) setConfig(c config) {
	v.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "store: %s\nhost: %s\nruntime_dir: %s\nstate_dir: %s\n", v.store, host, v.runtime, v.state)
	if c.Level != 0 {
		fmt.Fprintf(&b, "compression_level: %d\n", c.Level)
	}
	fmt.Fprintf(&b, "lvm:\n  volume_groups: [%s]\n", strconv.Quote(v.vg))
	if c.SnapshotSize != "" {
		fmt.Fprintf(&b, "  snapshot_size: %s\n", strconv.Quote(c.SnapshotSize))
	}
	for key, list := range map[string][]string{"include": c.Include, "exclude": c.Exclude} {
		if len(list) > 0 {
			q := make([]string, len(list))
			for i, s := range list {
				q[i] = strconv.Quote(s)
			}
			fmt.Fprintf(&b, "  %s: [%s]\n", key, strings.Join(q, ", "))
		}
	}
	if err := os.WriteFile(v.config, []byte(b.String()), 0o600); err != nil {
		v.t.Fatal(err)
	}
}

// result is how a voltar command ended.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// errorLine returns voltar's error message: the lines from "voltar: " on.
func errorLine(stderr string) string {
	if i := strings.Index(stderr, "\nvoltar: "); i >= 0 {
		return strings.TrimSpace(stderr[i+1:])
	}
	return strings.TrimSpace(stderr)
}

// proc is a voltar command running in the background.
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	res            result
}

// start runs voltar --config CONFIG ARGS... in the background. It is
// killed when the test ends, if it is still running.
func (v *voltar) start(args ...string) *proc {
	v.t.Helper()
	p := &proc{t: v.t, done: make(chan struct{})}
	p.cmd = exec.Command(v.bin, append([]string{"--config", v.config}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.res = result{code: 0, stdout: p.stdout.String(), stderr: p.stderr.String()}
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ee.ExitCode() >= 0:
			p.res.code = ee.ExitCode()
		case errors.As(err, &ee):
			p.res.code = -1 // killed by a signal
		case err != nil:
			p.res.code = -2
			p.res.stderr += "\n(wait: " + err.Error() + ")"
		}
		close(p.done)
	}()
	v.t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait returns the command's result; it fails the test if it takes longer
// than voltarTimeout.
func (p *proc) wait() result {
	p.t.Helper()
	select {
	case <-p.done:
		return p.res
	case <-time.After(voltarTimeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("voltar %s: still running after %v; killed\n%s", strings.Join(p.cmd.Args[1:], " "), voltarTimeout, p.res)
		return result{}
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// run runs voltar and waits for it.
func (v *voltar) run(args ...string) result {
	v.t.Helper()
	return v.start(args...).wait()
}

// mustRun runs voltar and fails the test unless it exits with want.
func (v *voltar) mustRun(want int, args ...string) result {
	v.t.Helper()
	r := v.run(args...)
	if r.code != want {
		v.t.Fatalf("voltar %s: want exit %d, got %s", strings.Join(args, " "), want, r)
	}
	return r
}

// waitMount waits until p has mounted a filesystem under the runtime
// directory and returns the mount point and the run ID (the directory
// below the runtime directory is <run id>-<vg>-<lv>).
func (v *voltar) waitMount(p *proc) (dir, runID string) {
	v.t.Helper()
	deadline := time.Now().Add(voltarTimeout)
	for time.Now().Before(deadline) {
		ms, err := disk.MountsUnder(v.runtime)
		if err != nil {
			v.t.Fatal(err)
		}
		if len(ms) > 0 {
			rel, _ := filepath.Rel(v.runtime, ms[0])
			dir, _, _ := strings.Cut(rel, "/")
			runID, _, _ = strings.Cut(dir, "-"+v.vg+"-")
			return ms[0], runID
		}
		if p.exited() {
			v.t.Fatalf("voltar ended before a filesystem was mounted under %s:\n%s", v.runtime, p.res)
		}
		time.Sleep(5 * time.Millisecond)
	}
	v.t.Fatalf("nothing mounted under %s after %v", v.runtime, voltarTimeout)
	return "", ""
}

// waitArchiving waits until p writes an archive into the store: a
// half-written object (local.TempPrefix) in a backup folder.
func (v *voltar) waitArchiving(p *proc) {
	v.t.Helper()
	pattern := filepath.Join(v.store, host, v.vg, "*", "*", local.TempPrefix+"*")
	deadline := time.Now().Add(voltarTimeout)
	for time.Now().Before(deadline) {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return
		}
		if p.exited() {
			v.t.Fatalf("voltar ended before it wrote an archive:\n%s", p.res)
		}
		time.Sleep(5 * time.Millisecond)
	}
	v.t.Fatalf("nothing matches %s after %v", pattern, voltarTimeout)
}

func (v *voltar) assertClean() {
	v.t.Helper()
	for _, l := range listLVs(v.t, v.vg) {
		if l.hasTag("voltar") || strings.Contains(l.Name, "-voltar-") {
			v.t.Errorf("snapshot left behind: %s/%s (tags %s, attr %s)", v.vg, l.Name, l.Tags, l.Attr)
		}
	}
	for _, l := range voltarLoops(v.t) {
		v.t.Errorf("loop device left behind: %s (%s on %s)", l.Path, l.Tag, l.Backing)
	}
	if ms, _ := disk.MountsUnder(v.runtime); len(ms) > 0 {
		v.t.Errorf("mounts left behind: %v", ms)
	}
	if js, _ := filepath.Glob(filepath.Join(v.state, "runs", "*")); len(js) > 0 {
		v.t.Errorf("journals left behind: %v", js)
	}
	for _, d := range v.backupDirs("*") {
		if _, err := os.Stat(filepath.Join(d, layout.Manifest)); err != nil {
			v.t.Errorf("backup folder without %s left behind: %s", layout.Manifest, d)
		}
	}
}

// --- the store ---

// backupDirs lists the backup folders of lv (a glob) in the store.
func (v *voltar) backupDirs(lv string) []string {
	ds, _ := filepath.Glob(filepath.Join(v.store, host, v.vg, lv, "*"))
	return ds
}

// onlyBackup returns the one complete backup of lv and its manifest.
func (v *voltar) onlyBackup(lv string) (string, *manifest.Manifest) {
	v.t.Helper()
	ds := v.backupDirs(lv)
	if len(ds) != 1 {
		v.t.Fatalf("want one backup of %s, store has %v", lv, ds)
	}
	f, err := os.Open(filepath.Join(ds[0], layout.Manifest))
	if err != nil {
		v.t.Fatal(err)
	}
	defer f.Close()
	m, err := manifest.Decode(f)
	if err != nil {
		v.t.Fatal(err)
	}
	if m.Status != manifest.StatusComplete {
		v.t.Errorf("%s: status %q, want complete", ds[0], m.Status)
	}
	return ds[0], m
}

// storeFiles lists every file in the store, temporary ones included.
func (v *voltar) storeFiles() []string {
	var out []string
	filepath.Walk(v.store, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// files lists the names in a directory.
func files(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// extract checks a backup folder with sha256sum -c and unpacks one archive
// with zstd and GNU tar, as a restore without voltar would.
func extract(t *testing.T, folder, archive string) string {
	t.Helper()
	cmd := exec.Command("sha256sum", "--quiet", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = folder
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c in %s: %v\n%s", folder, err, out)
	}
	dir := t.TempDir()
	testutil.Run(t, "sh", "-c", `zstd -q -d -c -- "$1" | tar -x --numeric-owner -p --xattrs --xattrs-include='*' -C "$2"`,
		"sh", filepath.Join(folder, archive), dir)
	return dir
}
