package backup_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/cleanup"
	"voltar/internal/disk"
	"voltar/internal/fail"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store"
	"voltar/internal/testutil"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
	"voltar/internal/volume/qcow2"
)

// qcowSnapshotter is the qcow2 snapshotter of e's installation.
func (e *env) qcowSnapshotter() *qcow2.Snapshotter {
	return &qcow2.Snapshotter{Scratch: e.scratch, Scope: backup.Scope(e.runtime), RuntimeDir: e.runtime}
}

// backupQcow2 backs up the qcow2 image at img with e's options.
func (e *env) backupQcow2(img string, offline bool, j *cleanup.Journal) (*manifest.Manifest, error) {
	e.t.Helper()
	v, err := qcow2.Resolve(img, offline)
	if err != nil {
		e.t.Fatal(err)
	}
	o := e.options(backup.NewRunID(time.Now()), j)
	o.Snapshotter = e.qcowSnapshotter()
	return backup.Volume(context.Background(), v, o)
}

// noDaemonsLeft fails the test if a storage daemon or an export of e's
// installation survived, or an overlay in the scratch directory.
func (e *env) noDaemonsLeft() {
	t := e.t
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "qemu-storage-daemon") && strings.Contains(string(b), e.runtime) {
			t.Errorf("qemu-storage-daemon left running: pid %s", d.Name())
			exec.Command("kill", d.Name()).Run()
		}
	}
	if left, _ := filepath.Glob(filepath.Join(e.runtime, "*.export")); len(left) > 0 {
		t.Errorf("exports left behind: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(e.scratch, "*")); len(left) > 0 {
		t.Errorf("scratch files left behind: %v", left)
	}
}

func qemuImg(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("qemu-img", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
}

// qcowChain turns the raw image src into dir/base.qcow2 (compressed
// clusters) holding its state now, lets change write to src's first
// partition, and makes dir/top.qcow2 with only the differences, base.qcow2
// as its backing file (named relatively) and an internal snapshot in its
// snapshot table. It returns the paths of top and base.
func qcowChain(t *testing.T, dir, src string, change func(root string)) (top, base string) {
	t.Helper()
	qemuImg(t, dir, "convert", "-c", "-f", "raw", "-O", "qcow2", src, "base.qcow2")
	mnt := t.TempDir()
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--offset", fmt.Sprint(1<<20), "--sizelimit", fmt.Sprint(100<<20), src))
	testutil.Run(t, "mount", dev, mnt)
	change(mnt)
	testutil.Run(t, "umount", mnt)
	testutil.DetachLoop(dev)
	qemuImg(t, dir, "convert", "-f", "raw", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", src, "top.qcow2")
	qemuImg(t, dir, "snapshot", "-c", "before-backup", "top.qcow2")
	return filepath.Join(dir, "top.qcow2"), filepath.Join(dir, "base.qcow2")
}

func addFiles(t testing.TB, root string) {
	if err := os.MkdirAll(filepath.Join(root, "after"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(root, "after", fmt.Sprintf("f%02d", i)), []byte(strings.Repeat("x", i*1000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(root, "etc/hostname")); err != nil {
		t.Fatal(err)
	}
}

// A qcow2 image with a backing file (compressed clusters in the backing
// file, a snapshot table in the image) backs up live (reflink clone) and
// offline (in place); what is restored equals the guest's disk, the
// manifest records format, virtual size and chain, and neither the image
// nor its backing file changes by a byte.
func TestQcow2Backup(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon", "mkfs.xfs")
	for _, tc := range []struct {
		name    string
		offline bool
	}{{"live", false}, {"offline", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			t.Cleanup(e.noDaemonsLeft)
			dir := reflinkDir(t)
			src := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "mbr", Parts: []testutil.Part{
				{FS: "ext4", SizeMiB: 100, Fill: fillRoot}, {FS: "ext4", SizeMiB: 40, Fill: fillData}}})
			top, base := qcowChain(t, dir, src, func(root string) { addFiles(t, root) })
			topSum, baseSum := sha256File(t, top), sha256File(t, base)

			j, err := cleanup.Start(e.state, "run1")
			if err != nil {
				t.Fatal(err)
			}
			m, err := e.backupQcow2(top, tc.offline, j)
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Finish(); err != nil {
				t.Errorf("journal: %v", err)
			}
			wantKind := "reflink"
			if tc.offline {
				wantKind = "none"
			}
			if m.Snapshot.Kind != wantKind {
				t.Errorf("snapshot kind %q, want %q", m.Snapshot.Kind, wantKind)
			}
			vol := m.Volume
			if vol.Format != "qcow2" || vol.VirtualSize != 142<<20 || vol.Size != 142<<20 ||
				len(vol.Backing) != 1 || vol.Backing[0] != (manifest.Backing{Path: base, Format: "qcow2", VirtualSize: 142 << 20}) {
				t.Errorf("manifest volume %+v", vol)
			}
			if len(m.Filesystems) != 2 || m.Filesystems[0].Mode != manifest.ModeFiles || m.Filesystems[1].Mode != manifest.ModeFiles {
				t.Fatalf("filesystems %+v", m.Filesystems)
			}

			b, err := catalog.Resolve(context.Background(), e.store, "testhost", m.ID)
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			if _, err := restore.ToDir(context.Background(), e.store, b, out, restore.Options{}); err != nil {
				t.Fatal(err)
			}
			for i, p := range []struct{ off, size int64 }{{1 << 20, 100 << 20}, {101 << 20, 40 << 20}} {
				testutil.CompareTrees(t, testutil.MountRO(t, src, p.off, p.size), filepath.Join(out, fmt.Sprintf("p%d", i+1)),
					func(rel string) bool { return rel == "lost+found" })
			}
			if _, err := os.Stat(filepath.Join(out, "p1", "after", "f19")); err != nil {
				t.Errorf("a file only the image (not its backing file) holds: %v", err)
			}
			if tc.offline {
				return // the qcow2 restore once is enough
			}
			// restore --to-image --format qcow2: a qcow2 image holding
			// the same trees.
			img := filepath.Join(t.TempDir(), "restored.qcow2")
			mountDir := filepath.Join(e.runtime, "restore1")
			os.MkdirAll(mountDir, 0o700)
			start := time.Now()
			if _, err := restore.ToImage(context.Background(), e.store, b, img, restore.Options{MountDir: mountDir, Format: restore.FormatQcow2}); err != nil {
				t.Fatal(err)
			}
			t.Logf("restore --format qcow2: %s", time.Since(start))
			os.Remove(mountDir)
			info := testutil.Run(t, "qemu-img", "info", "--output=json", img)
			if !strings.Contains(info, `"format": "qcow2"`) || !strings.Contains(info, fmt.Sprintf(`"virtual-size": %d`, 142<<20)) {
				t.Errorf("restored image: %s", info)
			}
			testutil.Run(t, "qemu-img", "check", img)
			raw := filepath.Join(t.TempDir(), "restored.raw")
			qemuImg(t, "", "convert", "-f", "qcow2", "-O", "raw", img, raw)
			for _, p := range []struct{ off, size int64 }{{1 << 20, 100 << 20}, {101 << 20, 40 << 20}} {
				want, got := testutil.MountRO(t, src, p.off, p.size), mountRW(t, raw, p.off, p.size)
				// mkfs made it anew, at another time.
				if err := os.Remove(filepath.Join(got, "lost+found")); err != nil {
					t.Fatal(err)
				}
				if fi, err := os.Stat(want); err == nil {
					os.Chtimes(got, fi.ModTime(), fi.ModTime())
				}
				testutil.CompareTrees(t, want, got, func(rel string) bool { return rel == "lost+found" })
			}
			if left, _ := filepath.Glob(filepath.Join(e.runtime, "*")); len(left) > 0 {
				t.Errorf("the restore left %v", left)
			}
			if s := sha256File(t, top); s != topSum {
				t.Error("the image changed")
			}
			if s := sha256File(t, base); s != baseSum {
				t.Error("its backing file changed")
			}
		})
	}
}

// A live qcow2 image where no reflink is possible cannot be made
// consistent: refused, with a hint to mark it offline, nothing left.
func TestQcow2LiveWithoutReflinkRefused(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon")
	e := newEnv(t)
	t.Cleanup(e.noDaemonsLeft)
	dir := t.TempDir()
	if out, err := exec.Command("cp", "--reflink=always", "/dev/null", filepath.Join(dir, "probe")).CombinedOutput(); err == nil {
		t.Skipf("%s can reflink: %s", dir, out)
	}
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "disk.qcow2", "64M")
	_, err := e.backupQcow2(filepath.Join(dir, "disk.qcow2"), false, nil)
	if err == nil || !strings.Contains(err.Error(), "reflink") || !hintsMention(err, "offline: true") {
		t.Fatalf("backup = %v (hints %q), want a refusal naming offline: true", err, fail.Hints(err))
	}
}

// An offline qcow2 image whose guest crashed: the journal is replayed
// into the throwaway overlay, the backup holds every fsynced file, and
// neither the image nor its backing file changes.
func TestQcow2JournalReplayedIntoOverlay(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon", "mkfs.ext4", "cp")
	e := newEnv(t)
	t.Cleanup(e.noDaemonsLeft)
	dir := t.TempDir()
	crash := tornImage(t, dir, "ext4")
	qemuImg(t, dir, "convert", "-f", "raw", "-O", "qcow2", crash, "base.qcow2")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2")
	top, base := filepath.Join(dir, "top.qcow2"), filepath.Join(dir, "base.qcow2")
	topSum, baseSum := sha256File(t, top), sha256File(t, base)

	m, err := e.backupQcow2(top, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := m.Filesystems[0]
	if !strings.Contains(fs.Recovery, "qcow2 overlay") {
		t.Errorf("manifest recovery %q, want the overlay named", fs.Recovery)
	}
	names := archivedNames(t, filepath.Join(e.store.Root(), "testhost", m.ID, fs.Archive))
	missing := 0
	for i := range tornFiles {
		if names[fmt.Sprintf("d/f%03d", i)] != fmt.Sprintf("file %d\n", i) {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d fsynced files missing or wrong in the backup", missing, tornFiles)
	}
	if _, ok := names["gone.txt"]; ok {
		t.Error("gone.txt, deleted before the crash, came back")
	}
	if s := sha256File(t, top); s != topSum {
		t.Error("the image changed")
	}
	if s := sha256File(t, base); s != baseSum {
		t.Error("its backing file changed")
	}
}

// A backing file that is gone fails the volume at once, saying which file
// and where it was looked for.
func TestQcow2MissingBackingFile(t *testing.T) {
	testutil.RequireTools(t, "qemu-img")
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "base.qcow2", "64M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2")
	os.Remove(filepath.Join(dir, "base.qcow2"))
	_, err := qcow2.Resolve(filepath.Join(dir, "top.qcow2"), false)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "base.qcow2")) || !hintsMention(err, "qemu-img rebase") {
		t.Fatalf("Resolve = %v", err)
	}
}

// A run killed with SIGKILL while a qcow2 image is exported (loop devices
// over the export, a filesystem mounted from it) leaves only what its
// journal names; the next command's sweep releases all of it: mounts, loop
// devices, the export and its daemon, the overlay and the clone.
func TestQcow2KilledMidBackup(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon", "mkfs.xfs")
	for _, tc := range []struct {
		stage   string
		offline bool
		// daemonDies: the storage daemon is killed too, leaving loop
		// devices over a dead FUSE file, which cannot even say whose
		// they are.
		daemonDies bool
	}{{backup.StageMount, false, false}, {backup.StageArchive, false, false}, {backup.StageArchive, true, false}, {backup.StageArchive, false, true}} {
		t.Run(fmt.Sprintf("%s-offline=%v-daemon-dies=%v", tc.stage, tc.offline, tc.daemonDies), func(t *testing.T) {
			e := newEnv(t)
			t.Cleanup(e.noDaemonsLeft)
			dir := reflinkDir(t)
			src := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "mbr", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 100, Fill: fillData}}})
			top, _ := qcowChain(t, dir, src, func(string) {})
			spec, _ := json.Marshal(killSpec{Stage: tc.stage, Image: top, Runtime: e.runtime, State: e.state,
				Scratch: e.scratch, Store: e.store.Root(), Offline: tc.offline, Qcow2: true})
			cmd := exec.Command(os.Args[0], "-test.run", "^TestKillHelper$")
			cmd.Env = append(os.Environ(), killAtEnv+"="+string(spec))
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
				t.Fatalf("helper: %v, want killed by a signal\n%s", err, out)
			}
			if left, _ := filepath.Glob(filepath.Join(e.scratch, "*overlay*")); len(left) == 0 {
				t.Fatal("the helper died before making the overlay")
			}
			if tc.daemonDies {
				ents, _ := os.ReadDir("/proc")
				for _, d := range ents {
					b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
					if err == nil && strings.Contains(string(b), "qemu-storage-daemon") && strings.Contains(string(b), e.runtime) {
						exec.Command("kill", "-9", d.Name()).Run()
					}
				}
				time.Sleep(200 * time.Millisecond)
			}
			// Journal only: the image's directory is no sweeper's, and no
			// mark is searched for.
			n, err := backup.Sweep(context.Background(), backup.SweepOptions{
				RuntimeDir: e.runtime, StateDir: e.state,
				JournalOnly: []volume.Sweeper{&image.Snapshotter{Scratch: e.scratch, Scope: backup.Scope(e.runtime)}, e.qcowSnapshotter()},
				OpenStore:   func(context.Context, string) (store.Store, error) { return e.store, nil },
				Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				t.Fatalf("sweep: %v", err)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, image.ClonePrefix+"*")); len(left) > 0 {
				t.Errorf("after the sweep (%d released) clones are left: %v", n, left)
			}
		})
	}
}

// A storage daemon that outlived its run (its journal lost) is found by
// the export id that carries the installation's scope, and stopped; its
// export goes with it.
func TestQcow2SweepFindsDaemonByMark(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon")
	e := newEnv(t)
	t.Cleanup(e.noDaemonsLeft)
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "disk.qcow2", "64M")
	v, err := qcow2.Resolve(filepath.Join(dir, "disk.qcow2"), true)
	if err != nil {
		t.Fatal(err)
	}
	dead := e.qcowSnapshotter()
	snap, err := dead.Create(context.Background(), v, "dead1")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(snap.Path); err != nil || fi.Size() != 64<<20 {
		t.Fatalf("export %s: %v, %v", snap.Path, fi, err)
	}
	// Another installation's sweep leaves it alone.
	other := &qcow2.Snapshotter{Scratch: e.scratch, Scope: backup.Scope("/run/other"), RuntimeDir: filepath.Join(e.dir, "other")}
	if n, err := other.Sweep(context.Background()); n != 0 || err != nil {
		t.Fatalf("another installation's sweep: %d, %v", n, err)
	}
	n, err := e.qcowSnapshotter().Sweep(context.Background())
	if n != 1 || err != nil {
		t.Fatalf("sweep = %d, %v; want the daemon stopped", n, err)
	}
	if _, err := os.Stat(filepath.Dir(snap.Path)); !os.IsNotExist(err) {
		t.Errorf("export directory still there: %v", err)
	}
	if _, err := (&image.Snapshotter{Scratch: e.scratch, Scope: backup.Scope(e.runtime)}).Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	dead.Release(context.Background(), snap) // its daemon is gone: nothing to do
}

// mountRW mounts partition area [off, off+size) of img read-write at a new
// temporary directory and unmounts it when the test ends.
func mountRW(t *testing.T, img string, off, size int64) string {
	t.Helper()
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--offset", fmt.Sprint(off), "--sizelimit", fmt.Sprint(size), img))
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		testutil.DetachLoop(dev)
		t.Fatalf("mount %s: %v %s", dev, err, out)
	}
	t.Cleanup(func() {
		exec.Command("umount", mnt).Run()
		testutil.DetachLoop(dev)
	})
	return mnt
}

// An offline backup of an image that a running VM holds (here a storage
// daemon that opened it for writing, as qemu does) fails on qemu's image
// lock with a hint, and leaves no overlay or export behind.
func TestQcow2OfflineImageInUseRefused(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon")
	e := newEnv(t)
	t.Cleanup(e.noDaemonsLeft)
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "disk.qcow2", "64M")
	img := filepath.Join(dir, "disk.qcow2")
	vm := exec.Command("qemu-storage-daemon",
		"--blockdev", `{"driver":"file","node-name":"f","filename":"`+img+`"}`,
		"--blockdev", `{"driver":"qcow2","node-name":"q","file":"f"}`,
		"--pidfile", filepath.Join(dir, "vm.pid"))
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Process.Kill(); vm.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(filepath.Join(dir, "vm.pid")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err := e.backupQcow2(img, true, nil)
	if err == nil || !strings.Contains(err.Error(), "lock") || !hintsMention(err, "running VM") {
		t.Fatalf("backup = %v (hints %q), want the lock refused", err, fail.Hints(err))
	}
}

// vmExport stands in for a running VM: a qemu-storage-daemon holds the
// qcow2 image open for writing (taking qemu's image locks) and exports it,
// and its ext4 is mounted from a loop device over the export. It returns
// the mount point; everything is undone when the test ends.
func vmExport(t *testing.T, img string) string {
	t.Helper()
	dir := t.TempDir()
	exp := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(exp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	vm := exec.Command("qemu-storage-daemon",
		"--blockdev", `{"driver":"file","node-name":"f","filename":"`+img+`"}`,
		"--blockdev", `{"driver":"qcow2","node-name":"q","file":"f"}`,
		"--export", `{"type":"fuse","id":"vm","node-name":"q","mountpoint":"`+exp+`","writable":true}`,
		"--pidfile", filepath.Join(dir, "pid"))
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(filepath.Join(dir, "pid")); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", exp))
	mnt := t.TempDir()
	testutil.Run(t, "mount", dev, mnt)
	t.Cleanup(func() {
		exec.Command("umount", mnt).Run()
		testutil.DetachLoop(dev)
		vm.Process.Signal(os.Interrupt)
		vm.Wait()
	})
	return mnt
}

// A live qcow2 image that a "VM" keeps writing to (files written, fsynced
// and renamed into place, one after another) is backed up from a reflink
// clone: the backup mounts after the journal replay into the overlay,
// passes the completeness check, and every file it holds is whole.
func TestQcow2LiveImageInUse(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon", "mkfs.ext4", "mkfs.xfs")
	e := newEnv(t)
	t.Cleanup(e.noDaemonsLeft)
	dir := reflinkDir(t)
	raw := filepath.Join(t.TempDir(), "disk.raw")
	os.WriteFile(raw, nil, 0o600)
	os.Truncate(raw, 128<<20)
	testutil.Run(t, "mkfs.ext4", "-q", raw)
	qemuImg(t, dir, "convert", "-f", "raw", "-O", "qcow2", raw, "vm.qcow2")
	img := filepath.Join(dir, "vm.qcow2")
	root := vmExport(t, img)

	content := []byte(strings.Repeat("0123456789abcdef", 4096)) // 64 KiB
	stop := make(chan struct{})
	written := make(chan int)
	go func() {
		n := 0
		defer func() { written <- n }()
		for ; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			tmp := filepath.Join(root, "tmp")
			f, err := os.Create(tmp)
			if err != nil {
				t.Error(err)
				return
			}
			f.Write(content)
			f.Sync()
			f.Close()
			if err := os.Rename(tmp, filepath.Join(root, fmt.Sprintf("f%05d", n))); err != nil {
				t.Error(err)
				return
			}
			if d, err := os.Open(root); err == nil {
				d.Sync()
				d.Close()
			}
		}
	}()
	time.Sleep(time.Second)
	m, err := e.backupQcow2(img, false, nil)
	close(stop)
	n := <-written
	if err != nil {
		t.Fatal(err)
	}
	fs := m.Filesystems[0]
	if c := fs.Check; c == nil || c.Counted != c.Holds {
		t.Errorf("completeness check %+v", fs.Check)
	}
	names := archivedNames(t, filepath.Join(e.store.Root(), "testhost", m.ID, fs.Archive))
	got := 0
	for name, body := range names {
		if strings.HasPrefix(name, "f") {
			got++
			if body != string(content) {
				t.Errorf("%s: %d bytes, not the whole file", name, len(body))
			}
		}
	}
	t.Logf("the VM wrote %d files, the backup holds %d", n, got)
	if got == 0 {
		t.Error("no file written before the snapshot is in the backup")
	}
}

// Two qcow2 images backed up at once share one snapshotter, as the
// volumes of a nightly run do.
func TestQcow2Concurrent(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon", "mkfs.ext4")
	e := newEnv(t)
	t.Cleanup(e.noDaemonsLeft)
	dir := t.TempDir()
	raw := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 32, Fill: fillData}}})
	qemuImg(t, dir, "convert", "-f", "raw", "-O", "qcow2", raw, "a.qcow2")
	qemuImg(t, dir, "convert", "-f", "raw", "-O", "qcow2", raw, "b.qcow2")
	s := e.qcowSnapshotter()
	errs := make(chan error, 2)
	for _, name := range []string{"a.qcow2", "b.qcow2"} {
		go func() {
			v, err := qcow2.Resolve(filepath.Join(dir, name), true)
			if err != nil {
				errs <- err
				return
			}
			o := e.options(backup.NewRunID(time.Now()), nil)
			o.Snapshotter = s
			_, err = backup.Volume(context.Background(), v, o)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// A backing file on a block device (a raw LV under a qcow2 overlay file)
// is opened with qemu's host_device driver.
func TestQcow2BackingOnBlockDevice(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon", "mkfs.ext4")
	e := newEnv(t)
	t.Cleanup(e.noDaemonsLeft)
	raw := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 32, Fill: fillData}}})
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", raw))
	t.Cleanup(func() { testutil.DetachLoop(dev) })
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-b", dev, "-F", "raw", "top.qcow2")
	m, err := e.backupQcow2(filepath.Join(dir, "top.qcow2"), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Volume.Backing) != 1 || m.Volume.Backing[0].Path != dev || m.Filesystems[0].Files == 0 {
		t.Errorf("manifest %+v %+v", m.Volume, m.Filesystems)
	}
}

// A loop device over a FUSE file whose server died cannot say whose it is
// (LOOP_GET_STATUS64 fails with ENOTCONN): listing loop devices, and so
// every sweep, goes on and lists it with the error.
func TestLoopOverDeadExportListed(t *testing.T) {
	testutil.RequireTools(t, "qemu-img", "qemu-storage-daemon")
	testutil.RequireRoot(t)
	dir := t.TempDir()
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "disk.qcow2", "64M")
	exp := filepath.Join(dir, "disk.raw")
	os.WriteFile(exp, nil, 0o600)
	d := exec.Command("qemu-storage-daemon",
		"--blockdev", `{"driver":"file","node-name":"f","filename":"`+filepath.Join(dir, "disk.qcow2")+`"}`,
		"--blockdev", `{"driver":"qcow2","node-name":"q","file":"f"}`,
		"--export", `{"type":"fuse","id":"t","node-name":"q","mountpoint":"`+exp+`","writable":true}`,
		"--pidfile", filepath.Join(dir, "pid"))
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(filepath.Join(dir, "pid")); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", exp))
	t.Cleanup(func() {
		testutil.DetachLoop(dev)
		exec.Command("umount", "-l", exp).Run()
	})
	d.Process.Kill()
	d.Wait()
	time.Sleep(1500 * time.Millisecond) // past FUSE's attribute cache
	loops, err := disk.ListLoops()
	if err != nil {
		t.Fatalf("ListLoops with a loop device over a dead FUSE file: %v", err)
	}
	for _, l := range loops {
		if l.Path == dev {
			if !errors.Is(l.Err, unix.ENOTCONN) {
				t.Errorf("%s: err %v, want ENOTCONN", dev, l.Err)
			}
			return
		}
	}
	t.Errorf("%s not listed", dev)
}
