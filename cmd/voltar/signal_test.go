package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"voltar/internal/testutil"
)

// killOnWrite sends this process SIGTERM the first time it is written to:
// when voltar prints its results, after the last backup completed.
type killOnWrite struct {
	once sync.Once
	bytes.Buffer
}

func (k *killOnWrite) Write(p []byte) (int, error) {
	k.once.Do(func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		time.Sleep(200 * time.Millisecond) // the signal cancels run's context meanwhile
	})
	return k.Buffer.Write(p)
}

// A signal that arrives after every backup completed does not turn the
// finished backup into an interrupted command: exit 0, not 130.
func TestSignalAfterBackupCompleted(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	testutil.Run(t, "truncate", "-s", "32M", img)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", img)
	os.Mkdir(filepath.Join(dir, "store"), 0o700)
	cfg := filepath.Join(dir, "voltar.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("store: %[1]s/store\nhost: h1\nruntime_dir: %[1]s/run\nstate_dir: %[1]s/state\n", dir)), 0o600)
	var stdout killOnWrite
	var stderr bytes.Buffer
	code := run([]string{"--config", cfg, "backup", img}, &stdout, &stderr)
	if code != 0 {
		t.Errorf("exit %d after a completed backup and a late SIGTERM, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
}
