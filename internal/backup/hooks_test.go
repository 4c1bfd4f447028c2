package backup_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"voltar/internal/backup"
	"voltar/internal/hook"
	"voltar/internal/manifest"
	"voltar/internal/store"
	"voltar/internal/testutil"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
)

// recorder is a hook that appends its name, VOLTAR_STATUS, whether the
// snapshot it is told of exists, and the volume to a log file, then runs
// extra shell code.
func recorder(logFile, extra string) []string {
	return []string{"/bin/sh", "-c", `s=none; [ -n "$VOLTAR_SNAPSHOT" ] && { [ -e "$VOLTAR_SNAPSHOT" ] && s=exists || s=gone; }
echo "$VOLTAR_HOOK status=$VOLTAR_STATUS snapshot=$s volume=$VOLTAR_VOLUME device=$VOLTAR_DEVICE id=$VOLTAR_BACKUP_ID" >> "$0"
` + extra, logFile}
}

func readLines(t *testing.T, p string) []string {
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// failingCreate is a snapshotter whose Create fails.
type failingCreate struct{ volume.Snapshotter }

func (failingCreate) Create(context.Context, volume.Volume, string) (*volume.Snapshot, error) {
	return nil, errors.New("no room for the snapshot")
}

// The hooks run around the snapshot: pre before it exists, post after it
// was made (and still exists), with the volume in their environment; the
// manifest says the backup is hooked. A failing pre hook fails the volume
// before any snapshot, and the post hook still runs; so it does after a
// failed snapshot, a hook that hangs past its timeout, and a cancel during
// the pre hook. A failing post hook fails the volume too. Nothing is left
// behind in any case.
func TestSnapshotHooks(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 32, Fill: fillData}}})
	run := func(t *testing.T, pre, post []string, timeout time.Duration, adjust func(*backup.Options), ctx context.Context) (*manifest.Manifest, error) {
		t.Helper()
		v, err := image.Resolve(img, false)
		if err != nil {
			t.Fatal(err)
		}
		o := e.options(backup.NewRunID(time.Now()), nil)
		o.Hooks = hook.Set{Pre: hook.Command{Argv: pre, Timeout: timeout}, Post: hook.Command{Argv: post, Timeout: timeout}}
		if adjust != nil {
			adjust(&o)
		}
		return backup.Volume(ctx, v, o)
	}
	noSnapshot := func(t *testing.T) {
		t.Helper()
		if left, _ := filepath.Glob(filepath.Join(e.scratch, image.ClonePrefix+"*")); len(left) > 0 {
			t.Errorf("snapshot left: %v", left)
		}
	}

	t.Run("order and environment", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "log")
		m, err := run(t, recorder(log, ""), recorder(log, ""), 0, nil, context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := readLines(t, log)
		want := []string{
			"pre_snapshot status= snapshot=none volume=image/disk.img device=" + img + " id=" + m.ID,
			"post_snapshot status=ok snapshot=exists volume=image/disk.img device=" + img + " id=" + m.ID,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("hooks ran as\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if m.Snapshot.Consistency != manifest.ConsistencyHooked {
			t.Errorf("consistency %q, want hooked", m.Snapshot.Consistency)
		}
		noSnapshot(t)
	})

	t.Run("no hooks: crash-consistent", func(t *testing.T) {
		m, err := run(t, nil, nil, 0, nil, context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if m.Snapshot.Consistency != manifest.ConsistencyCrash {
			t.Errorf("consistency %q, want crash", m.Snapshot.Consistency)
		}
	})

	t.Run("failing pre hook", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "log")
		_, err := run(t, recorder(log, "echo app will not quiesce >&2; exit 4"), recorder(log, ""), 0, nil, context.Background())
		var he *hook.Error
		if !errors.As(err, &he) || he.Name != hook.PreSnapshot || !strings.Contains(err.Error(), "app will not quiesce") {
			t.Fatalf("backup = %v, want the pre hook's failure", err)
		}
		got := readLines(t, log)
		if len(got) != 2 || !strings.HasPrefix(got[1], "post_snapshot status=failed snapshot=none") {
			t.Errorf("hooks ran as %q, want the post hook after the failed pre hook, without a snapshot", got)
		}
		noSnapshot(t)
	})

	t.Run("failed snapshot", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "log")
		_, err := run(t, recorder(log, ""), recorder(log, `echo "error=$VOLTAR_ERROR" >> "$0"`), 0,
			func(o *backup.Options) { o.Snapshotter = failingCreate{o.Snapshotter} }, context.Background())
		if err == nil || !strings.Contains(err.Error(), "no room for the snapshot") {
			t.Fatalf("backup = %v", err)
		}
		got := readLines(t, log)
		if len(got) != 3 || !strings.HasPrefix(got[1], "post_snapshot status=failed") || !strings.Contains(got[2], "no room for the snapshot") {
			t.Errorf("hooks ran as %q", got)
		}
	})

	t.Run("hanging pre hook", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "log")
		start := time.Now()
		_, err := run(t, recorder(log, "sleep 60"), recorder(log, ""), 500*time.Millisecond, nil, context.Background())
		if !errors.Is(err, hook.ErrTimeout) || time.Since(start) > 10*time.Second {
			t.Fatalf("backup = %v after %s, want the timeout", err, time.Since(start))
		}
		if got := readLines(t, log); len(got) != 2 || !strings.HasPrefix(got[1], "post_snapshot status=failed") {
			t.Errorf("hooks ran as %q", got)
		}
		noSnapshot(t)
	})

	t.Run("cancel during the pre hook", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "log")
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		_, err := run(t, recorder(log, "sleep 60"), recorder(log, ""), 0, nil, ctx)
		if err == nil {
			t.Fatal("backup succeeded after a cancel")
		}
		if got := readLines(t, log); len(got) != 2 || !strings.HasPrefix(got[1], "post_snapshot status=failed") {
			t.Errorf("hooks ran as %q, want the post hook after the cancel", got)
		}
		noSnapshot(t)
	})

	t.Run("failing post hook", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "log")
		_, err := run(t, recorder(log, ""), recorder(log, "exit 1"), 0, nil, context.Background())
		var he *hook.Error
		if !errors.As(err, &he) || he.Name != hook.PostSnapshot {
			t.Fatalf("backup = %v, want the post hook's failure", err)
		}
		noSnapshot(t)
	})
}

// pre_backup runs before anything of the backup (before the snapshot
// hooks), post_backup after everything (the snapshot already released),
// with the outcome; a failing pre_backup fails the volume before any
// snapshot and post_backup still says so; a failing post_backup fails the
// volume, whose backup stays stored.
func TestBackupHooks(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 32, Fill: fillData}}})
	run := func(t *testing.T, h hook.Set) (*manifest.Manifest, error) {
		t.Helper()
		v, err := image.Resolve(img, false)
		if err != nil {
			t.Fatal(err)
		}
		o := e.options(backup.NewRunID(time.Now()), nil)
		o.Hooks = h
		return backup.Volume(context.Background(), v, o)
	}
	outcome := `echo "stored=$VOLTAR_STORED_BYTES level=$VOLTAR_LEVEL error=$VOLTAR_ERROR" >> "$0"`

	t.Run("order and outcome", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "log")
		m, err := run(t, hook.Set{Pre: hook.Command{Argv: recorder(log, "")}, Post: hook.Command{Argv: recorder(log, "")},
			PreBackup: hook.Command{Argv: recorder(log, "")}, PostBackup: hook.Command{Argv: recorder(log, outcome)}})
		if err != nil {
			t.Fatal(err)
		}
		got := readLines(t, log)
		want := []string{
			"pre_backup status= snapshot=none volume=image/disk.img device=" + img + " id=" + m.ID,
			"pre_snapshot status= snapshot=none volume=image/disk.img device=" + img + " id=" + m.ID,
			"post_snapshot status=ok snapshot=exists volume=image/disk.img device=" + img + " id=" + m.ID,
			"post_backup status=ok snapshot=none volume=image/disk.img device=" + img + " id=" + m.ID,
			"stored=" + strconv.FormatInt(m.PublishedBytes, 10) + " level=0 error=",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("hooks ran as\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if left, _ := filepath.Glob(filepath.Join(e.scratch, image.ClonePrefix+"*")); len(left) > 0 {
			t.Errorf("snapshot left: %v", left)
		}
	})

	t.Run("failing pre_backup", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "log")
		m, err := run(t, hook.Set{Pre: hook.Command{Argv: recorder(log, "")},
			PreBackup: hook.Command{Argv: recorder(log, "echo maintenance window >&2; exit 3")}, PostBackup: hook.Command{Argv: recorder(log, outcome)}})
		var he *hook.Error
		if m != nil || !errors.As(err, &he) || he.Name != hook.PreBackup || !strings.Contains(err.Error(), "maintenance window") {
			t.Fatalf("backup = %v, %v; want the pre_backup hook's failure", m, err)
		}
		got := readLines(t, log)
		if len(got) < 3 || !strings.HasPrefix(got[0], "pre_backup") || !strings.HasPrefix(got[1], "post_backup status=failed") ||
			!strings.Contains(strings.Join(got[2:], "\n"), "maintenance window") || strings.Contains(strings.Join(got, "\n"), "pre_snapshot") {
			t.Errorf("hooks ran as %q, want pre_backup, then post_backup with the failure, and no snapshot hook", got)
		}
	})

	t.Run("failing post_backup", func(t *testing.T) {
		m, err := run(t, hook.Set{PostBackup: hook.Command{Argv: []string{"/bin/false"}}})
		var he *hook.Error
		if m == nil || !errors.As(err, &he) || he.Name != hook.PostBackup {
			t.Fatalf("backup = %v, %v; want the stored backup and the post_backup hook's failure", m, err)
		}
	})
}

// A run killed with SIGKILL after its pre hook ran owes the post hook:
// the next command's sweep runs it from the journal, with
// VOLTAR_STATUS=killed.
func TestOwedPostHookRunBySweep(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 32, Fill: fillData}}})
	log := filepath.Join(t.TempDir(), "log")
	spec, _ := json.Marshal(killSpec{Stage: "never", Image: img, Runtime: e.runtime, State: e.state,
		Scratch: e.scratch, Store: e.store.Root(),
		PreHook:  recorder(log, "kill -9 $PPID; sleep 5"),
		PostHook: recorder(log, "")})
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKillHelper$")
	cmd.Env = append(os.Environ(), killAtEnv+"="+string(spec))
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("helper: %v, want killed by a signal\n%s", err, out)
	}
	if got := readLines(t, log); len(got) != 1 {
		t.Fatalf("before the sweep the hooks ran as %q, want the pre hook only", got)
	}
	_, err = backup.Sweep(context.Background(), backup.SweepOptions{
		RuntimeDir: e.runtime, StateDir: e.state,
		Sweepers:  []volume.Sweeper{&image.Snapshotter{Scratch: e.scratch, Scope: backup.Scope(e.runtime)}},
		OpenStore: func(context.Context, string) (store.Store, error) { return e.store, nil },
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := readLines(t, log)
	if len(got) != 2 || !strings.HasPrefix(got[1], "post_snapshot status=killed") || !strings.Contains(got[1], "volume=image/disk.img") {
		t.Fatalf("after the sweep the hooks ran as %q", got)
	}
	// Run once: a second sweep finds nothing owed.
	backup.Sweep(context.Background(), backup.SweepOptions{RuntimeDir: e.runtime, StateDir: e.state,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if got := readLines(t, log); len(got) != 2 {
		t.Errorf("a second sweep ran the hook again: %q", got)
	}
}
