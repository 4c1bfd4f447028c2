package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"voltar/internal/archive"
	"voltar/internal/fail"
	"voltar/internal/sandbox"
	"voltar/internal/testutil"
)

func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}

// requireSandbox skips without root or UML.
func requireSandbox(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("linux.uml"); err != nil {
		testutil.Unavailable(t, "needs linux.uml (apt-get install user-mode-linux)")
	}
}

// loop attaches size bytes at off of img read-only.
func loop(t *testing.T, img string, off, size int64) string {
	t.Helper()
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--read-only", "--offset", fmt.Sprint(off), "--sizelimit", fmt.Sprint(size), img))
	t.Cleanup(func() { testutil.DetachLoopOf(dev, img) })
	return dev
}

func fill(t testing.TB, root string) {
	for i := range 50 {
		p := filepath.Join(root, fmt.Sprintf("d%d/f%d", i%5, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, i*1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("d1/f1", filepath.Join(root, "link"))
}

// The sandbox's tar stream is byte for byte what archive.Write makes of the
// same filesystem mounted on the host.
func TestSameArchiveAsKernel(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	for _, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) {
			img := testutil.MakeImage(t, dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: fs, SizeMiB: 300, Fill: fill}}})
			fi, _ := os.Stat(img)
			var got bytes.Buffer
			start := time.Now()
			res, err := sandbox.Archive(context.Background(), sandbox.Config{
				Device: loop(t, img, 0, fi.Size()), FSType: fs, Dir: t.TempDir(),
			}, &got)
			if err != nil {
				t.Fatalf("sandbox: %v\n%s", err, fail.Hints(err))
			}
			t.Logf("sandboxed archive of %s: %s, %d bytes, %+v", fs, time.Since(start).Round(time.Millisecond), got.Len(), res.Statfs)
			mnt := testutil.MountRO(t, img, 0, fi.Size())
			var want bytes.Buffer
			wres, err := archive.Write(context.Background(), mnt, &want, archive.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("tar streams differ: sandbox %d bytes, kernel %d", got.Len(), want.Len())
			}
			if res.Archive.Entries != wres.Entries || res.Archive.Inodes != wres.Inodes {
				t.Errorf("result %+v, want %+v", res.Archive, wres)
			}
		})
	}
}

var _ = errors.Is

// A filesystem the host unmounts while a sandbox runs is released at once:
// the sandbox's mount namespace holds none of the host's mounts (it began
// as a copy of them all), so the unmount flushes the filesystem to its
// device and frees it. Before, a sandbox kept the copies for its whole
// life: the host's umount returned, and a new reader of the device saw
// the filesystem as it was before its last writes.
func TestHostMountsNotHeld(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	host := testutil.MakeImage(t, dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64}}})
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", host))
	t.Cleanup(func() { testutil.DetachLoopOf(dev, host) })
	mnt := t.TempDir()
	testutil.Run(t, "mount", dev, mnt)
	mounted := true
	t.Cleanup(func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	})

	guest := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Fill: fill}}})
	fi, _ := os.Stat(guest)
	dev2, sbDir := loop(t, guest, 0, fi.Size()), t.TempDir() // here: they may t.Fatal
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := sandbox.Archive(ctx, sandbox.Config{
			Device: dev2, FSType: "ext4", Dir: sbDir,
			Limits: sandbox.Limits{TestStall: true},
		}, io.Discard)
		done <- err
	}()
	defer func() {
		cancel()
		<-done
	}()
	// The sandbox's namespace exists once UML runs (the launcher execs
	// it as this process's child).
	deadline := time.Now().Add(60 * time.Second)
	for len(testutil.SandboxPIDs(os.Getpid(), true)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no sandbox running after 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	const n = 300
	for i := range n {
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprintf("f%d", i)), []byte("written while a sandbox runs"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Run(t, "umount", mnt)
	mounted = false
	if _, err := os.Stat("/sys/fs/ext4/" + filepath.Base(dev)); err == nil {
		t.Errorf("%s unmounted on the host, and still mounted (in the sandbox's mount namespace)", dev)
	}
	hfi, _ := os.Stat(host)
	ro := testutil.MountRO(t, host, 0, hfi.Size())
	ents, err := os.ReadDir(ro)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n+1 { // and lost+found
		t.Errorf("the unmounted filesystem, read anew, holds %d entries, want %d: its last writes were not flushed", len(ents), n+1)
	}
}
