package backup_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"voltar/internal/backup"
	"voltar/internal/cleanup"
	"voltar/internal/disk"
	"voltar/internal/store"
	"voltar/internal/testutil"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
)

// What a killed run leaves — a journaled clone, loop device, mount and
// half-written backup, plus an unjournaled tagged loop — is all released.
func TestSweepReleasesDeadRun(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, e.dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Fill: fillData}}})
	ctx := context.Background()

	// The dead run "dead1".
	j, err := cleanup.Start(e.state, "dead1")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(e.scratch, 0o700)
	clone := filepath.Join(e.scratch, image.ClonePrefix+"dead1-disk.img")
	testutil.Run(t, "cp", "--sparse=always", img, clone)
	j.Add(cleanup.Clone, clone)
	loop, err := disk.AttachLoop(ctx, clone, 0, 64<<20, false, backup.LoopTag(e.runtime, "dead1"))
	if err != nil {
		t.Fatal(err)
	}
	j.Add(cleanup.Loop, loop.Path)
	mnt := filepath.Join(e.runtime, "dead1", "image-disk.img", "fs")
	os.MkdirAll(mnt, 0o700)
	j.Add(cleanup.Mount, mnt)
	if err := disk.Mount(ctx, loop.Path, mnt, "ext4"); err != nil {
		t.Fatal(err)
	}
	prefix := "h/image/disk.img/2026-11-25T010000Z/"
	e.store.Put(ctx, prefix+"fs.tar.zst", io.LimitReader(zero{}, 1000), store.PutOptions{})
	j.Add(cleanup.Partial, e.store.String()+"\t"+prefix)
	// A reflink clone next to its image whose journal entry was never
	// written (killed right after FICLONE).
	imgClone := filepath.Join(filepath.Dir(img), image.CloneName(backup.Scope(e.runtime), "dead1", "disk.img"))
	if err := os.WriteFile(imgClone, []byte("clone"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Another installation's clone, in use by its live run: hands off.
	otherClone := filepath.Join(filepath.Dir(img), image.CloneName(backup.Scope("/run/other-voltar"), "live1", "disk.img"))
	if err := os.WriteFile(otherClone, []byte("clone"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(otherClone)
	// An unjournaled loop that still carries the tag.
	stray, err := disk.AttachLoop(ctx, img, 0, 64<<20, true, backup.LoopTag(e.runtime, "dead2"))
	if err != nil {
		t.Fatal(err)
	}
	// A dead process's loop fds are closed; this process still holds them,
	// so the kernel defers the sweep's detach (it sets AUTOCLEAR) until they
	// close below. crash.txtar covers a real kill -9.
	defer stray.Detach()
	// A voltar with another runtime directory is alive: hands off.
	other, err := disk.AttachLoop(ctx, img, 0, 64<<20, true, backup.LoopTag("/run/other-voltar", "live1"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Detach()
	defer loop.Detach()

	n, err := backup.Sweep(ctx, backup.SweepOptions{
		RuntimeDir: e.runtime, StateDir: e.state,
		Sweepers:  []volume.Sweeper{&image.Snapshotter{Scratch: e.scratch, Scope: backup.Scope(e.runtime), Dirs: []string{filepath.Dir(img)}}},
		OpenStore: func(context.Context, string) (store.Store, error) { return e.store, nil },
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if n < 5 {
		t.Errorf("Sweep released %d resources, want at least 5", n)
	}
	if ms, _ := disk.MountsUnder(e.runtime); len(ms) != 0 {
		t.Errorf("mounts left: %v", ms)
	}
	if _, err := os.Stat(clone); !os.IsNotExist(err) {
		t.Errorf("clone still present: %v", err)
	}
	if _, err := os.Stat(imgClone); !os.IsNotExist(err) {
		t.Errorf("unjournaled clone next to the image still present: %v", err)
	}
	if _, err := os.Stat(otherClone); err != nil {
		t.Errorf("another installation's clone was removed: %v", err)
	}
	if objs, _ := e.store.List(ctx, ""); len(objs) != 0 {
		t.Errorf("half-written backup still in the store: %v", objs)
	}
	if _, err := os.Stat(filepath.Join(e.state, "runs", "dead1.journal")); !os.IsNotExist(err) {
		t.Errorf("journal still present: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.runtime, "dead1")); !os.IsNotExist(err) {
		t.Errorf("run directory still present: %v", err)
	}
	loops, _ := disk.ListLoops()
	found := false
	for _, l := range loops {
		found = found || l.Path == other.Path && l.Tag == other.Tag
	}
	if !found {
		t.Errorf("sweep detached %s, a loop device of another voltar's live run", other.Path)
	}
	// env's cleanup asserts that no tagged loop device is left.
}

type zero struct{}

func (zero) Read(p []byte) (int, error) { clear(p); return len(p), nil }
