package backup_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"voltar/internal/backup"
	"voltar/internal/cleanup"
	"voltar/internal/hook"
	"voltar/internal/store"
	"voltar/internal/store/local"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
	"voltar/internal/volume/qcow2"
)

// killAt is the helper process of TestKilledRightAfterCreation: it backs up
// the image its environment names and kills itself with SIGKILL at a stage.
const killAtEnv = "VOLTAR_TEST_KILL_AT"

type killSpec struct {
	Stage, Image, Runtime, State, Scratch, Store string
	Offline, Qcow2                               bool
	PreHook, PostHook                            []string
}

func TestKillHelper(t *testing.T) {
	raw := os.Getenv(killAtEnv)
	if raw == "" {
		t.Skip("helper process of TestKilledRightAfterCreation")
	}
	var k killSpec
	if err := json.Unmarshal([]byte(raw), &k); err != nil {
		t.Fatal(err)
	}
	resolve := image.Resolve
	if k.Qcow2 {
		resolve = qcow2.Resolve
	}
	v, err := resolve(k.Image, k.Offline)
	if err != nil {
		t.Fatal(err)
	}
	j, err := cleanup.Start(k.State, "run1")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, runtime: k.Runtime, state: k.State, scratch: k.Scratch}
	o := e.options("run1", j)
	if k.Qcow2 {
		o.Snapshotter = e.qcowSnapshotter()
	}
	o.Hooks = hook.Set{Pre: hook.Command{Argv: k.PreHook}, Post: hook.Command{Argv: k.PostHook}}
	o.Store = local.New(k.Store)
	o.Inject = func(stage string) error {
		if stage == k.Stage {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
	backup.Volume(context.Background(), v, o)
	t.Fatalf("backup ended without reaching stage %s", k.Stage)
}

// A clone or writable copy is journaled before it is made: a run killed
// the instant after making it leaves a journal entry, so the next
// command's sweep removes it from the journal alone — also a clone next to
// an image named only on the command line, which no configured directory
// lists for the sweep to search.
func TestKilledRightAfterCreation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stage   string
		offline bool
	}{
		{"image clone", backup.StageCreated, false},
		{"writable copy for journal replay", backup.StageCopied, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			dir := reflinkDir(t) // the clone lands next to the image
			var img string
			if tc.offline {
				img = tornImage(t, dir, "ext4")
			} else {
				img = tornImage(t, dir, "xfs")
			}
			spec, _ := json.Marshal(killSpec{Stage: tc.stage, Image: img, Runtime: e.runtime, State: e.state,
				Scratch: e.scratch, Store: e.store.Root(), Offline: tc.offline})
			cmd := exec.Command(os.Args[0], "-test.run", "^TestKillHelper$")
			cmd.Env = append(os.Environ(), killAtEnv+"="+string(spec))
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
				t.Fatalf("helper: %v, want killed by a signal\n%s", err, out)
			}
			clones, _ := filepath.Glob(filepath.Join(dir, image.ClonePrefix+"*"))
			if len(clones) == 0 {
				t.Fatalf("the helper died before making the clone")
			}
			// The image's directory is not among the sweeper's: only the
			// journal can lead the sweep to the clone.
			sw := &image.Snapshotter{Scratch: e.scratch, Scope: backup.Scope(e.runtime),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			n, err := backup.Sweep(context.Background(), backup.SweepOptions{
				RuntimeDir: e.runtime, StateDir: e.state, JournalOnly: []volume.Sweeper{sw},
				OpenStore: func(context.Context, string) (store.Store, error) { return e.store, nil },
				Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
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
