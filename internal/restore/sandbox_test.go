package restore_test

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/folder"
	"voltar/internal/objio"
	"voltar/internal/restore"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
	"voltar/internal/verify"
	"voltar/internal/volume/image"
)

// The torture tree backed up with isolation: sandbox (parsed by the UML
// guest's kernel, archived by archive.Write inside it) restores
// attribute-exact.
func TestTortureTreeSandboxed(t *testing.T) {
	if _, err := exec.LookPath("linux.uml"); err != nil {
		testutil.Unavailable(t, "isolation: sandbox needs linux.uml (apt-get install user-mode-linux)")
	}
	src := mountFS(t, "ext4", 256)
	buildTorture(t, src)
	// Frozen, so the image read in place is consistent.
	testutil.Run(t, "mount", "-o", "remount,ro", src)
	img := filepath.Join(filepath.Dir(src), "ext4.img")

	dir := t.TempDir()
	st := local.New(t.TempDir())
	v, err := image.Resolve(img, true)
	if err != nil {
		t.Fatal(err)
	}
	runtime := filepath.Join(dir, "run")
	m, err := backup.Volume(context.Background(), v, backup.Options{
		Settings: folder.Settings{Store: st, Host: "h", Encoding: objio.Encoding{Compression: "zstd"},
			CleanupTimeout: time.Minute, Version: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		RuntimeDir: runtime, RunID: backup.NewRunID(time.Now()), Isolation: backup.IsolationSandbox,
		Snapshotter: &image.Snapshotter{Scratch: filepath.Join(dir, "scratch"), Scope: backup.Scope(runtime)},
	})
	if err != nil {
		t.Fatalf("sandboxed backup: %v", err)
	}
	if m.Isolation != backup.IsolationSandbox {
		t.Errorf("manifest isolation %q", m.Isolation)
	}
	b, err := catalog.Resolve(context.Background(), st, "h", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r := verify.Backup(context.Background(), st, b, nil); !r.OK {
		t.Fatalf("verify: %v", r.Problems)
	}
	dst := mountFS(t, "ext4", 256)
	res, err := restore.ToDir(context.Background(), st, b, dst, restore.Options{})
	if err != nil {
		t.Fatalf("restore: %v\n%+v", err, res)
	}
	if fr := res.Filesystems[0]; !fr.Verified || len(fr.Warnings) != 0 || fr.RefusedCount+fr.FailedCount != 0 {
		t.Errorf("result: %+v", fr)
	}
	compareTrees(t, src, dst)
}
