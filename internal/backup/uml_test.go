//go:build uml

// Inside the User-Mode Linux guest (real LVM):
//
//	test/uml/go-test.sh ./internal/backup -test.v -test.run UML

package backup_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"voltar/internal/backup"
	"voltar/internal/cleanup"
	"voltar/internal/store"
	"voltar/internal/store/local"
	"voltar/internal/sysexec"
	"voltar/internal/testutil"
	"voltar/internal/volume"
	"voltar/internal/volume/lvm"
)

func umlVG(t *testing.T) string {
	t.Helper()
	if os.Getenv("VOLTAR_UML") != "1" || os.Getenv("VOLTAR_UML_VG") == "" {
		testutil.Unavailable(t, "test needs real LVM in the UML guest: test/uml/go-test.sh ./internal/backup -test.run UML")
	}
	return os.Getenv("VOLTAR_UML_VG")
}

type umlKill struct{ VG, LV, Runtime, State, Store string }

const umlKillEnv = "VOLTAR_TEST_UML_KILL"

// The helper process: back up an LV and die with SIGKILL the instant the
// snapshot exists.
func TestUMLKillHelper(t *testing.T) {
	raw := os.Getenv(umlKillEnv)
	if raw == "" {
		t.Skip("helper process of TestUMLKilledRightAfterSnapshot")
	}
	var k umlKill
	if err := json.Unmarshal([]byte(raw), &k); err != nil {
		t.Fatal(err)
	}
	snap := &lvm.Snapshotter{Runner: sysexec.Exec{}, Scope: backup.Scope(k.Runtime)}
	v, err := snap.Resolve(context.Background(), k.VG+"/"+k.LV)
	if err != nil {
		t.Fatalf("resolve %s/%s: %v", k.VG, k.LV, err)
	}
	j, err := cleanup.Start(k.State, "run1")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, runtime: k.Runtime, state: k.State}
	o := e.options("run1", j)
	o.Store, o.Snapshotter = local.New(k.Store), snap
	o.Inject = func(stage string) error {
		if stage == backup.StageCreated {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
	backup.Volume(context.Background(), v, o)
	t.Fatal("backup ended without making its snapshot")
}

// An LVM snapshot is journaled before lvcreate: a run killed the instant
// after lvcreate leaves a journal entry, and the sweep of a command that
// does not scan for tagged LVs (voltar list) removes the snapshot.
func TestUMLKilledRightAfterSnapshot(t *testing.T) {
	vg := umlVG(t)
	const lv = "volume-umlkill"
	testutil.Run(t, "lvcreate", "-q", "--yes", "-L", "16M", "-n", lv, vg)
	t.Cleanup(func() { exec.Command("lvremove", "-f", vg+"/"+lv).Run() })
	dir := t.TempDir()
	k := umlKill{VG: vg, LV: lv, Runtime: dir + "/run", State: dir + "/state", Store: dir + "/store"}
	os.Mkdir(k.Store, 0o700)
	spec, _ := json.Marshal(k)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestUMLKillHelper$")
	cmd.Env = append(os.Environ(), umlKillEnv+"="+string(spec))
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("helper: %v, want killed by a signal\n%s", err, out)
	}
	tagged := func() []string {
		out := testutil.Run(t, "lvs", "--noheadings", "-o", "lv_name", "-S", "lv_tags=voltar", vg)
		return strings.Fields(out)
	}
	if len(tagged()) == 0 {
		t.Fatal("the helper died before its snapshot existed")
	}
	sw := &lvm.Snapshotter{Runner: sysexec.Exec{}, Scope: backup.Scope(k.Runtime)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := backup.Sweep(ctx, backup.SweepOptions{
		RuntimeDir: k.Runtime, StateDir: k.State, JournalOnly: []volume.Sweeper{sw},
		OpenStore: func(context.Context, string) (store.Store, error) { return local.New(k.Store), nil },
		Logger:    log,
	}); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if left := tagged(); len(left) > 0 {
		t.Errorf("snapshots left after a journal-only sweep: %v", left)
	}
}
