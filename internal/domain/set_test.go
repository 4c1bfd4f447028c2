package domain_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"voltar/internal/backup"
	"voltar/internal/cleanup"
	"voltar/internal/domain"
	"voltar/internal/folder"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
)

// fakeGuest is a Freezer that records what it is asked, in order.
type fakeGuest struct {
	mu        sync.Mutex
	calls     []string
	frozen    bool
	freezeErr error
	block     bool // Freeze waits for its context to end
	thawErr   error
}

func (f *fakeGuest) Freeze(ctx context.Context, name string) (int, error) {
	f.log("freeze")
	if f.block {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	if f.freezeErr != nil {
		return 0, f.freezeErr
	}
	f.mu.Lock()
	f.frozen = true
	f.mu.Unlock()
	return 2, nil
}

func (f *fakeGuest) Thaw(ctx context.Context, name string) (int, error) {
	f.log("thaw")
	if f.thawErr != nil {
		return 0, f.thawErr
	}
	f.mu.Lock()
	f.frozen = false
	f.mu.Unlock()
	return 2, nil
}

func (f *fakeGuest) SocketPath() string { return "/nonexistent/libvirt-sock" }

func (f *fakeGuest) log(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}

func (f *fakeGuest) seq() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, " ")
}

// watched wraps a disk's snapshotter: it records in the guest's sequence
// that a snapshot was made and whether the guest was frozen then, and
// fails Create when fail is set.
type watched struct {
	volume.Snapshotter
	g    *fakeGuest
	fail error
}

func (w *watched) Planned(v volume.Volume, runID, part string) []volume.Planned {
	return w.Snapshotter.(volume.Planner).Planned(v, runID, part)
}

func (w *watched) Release(ctx context.Context, s *volume.Snapshot) error {
	disk := "data"
	if strings.Contains(filepath.Base(s.Name), "root") {
		disk = "root"
	}
	w.g.log("release(" + disk + ")")
	return w.Snapshotter.Release(ctx, s)
}

func (w *watched) Create(ctx context.Context, v volume.Volume, runID string) (*volume.Snapshot, error) {
	w.g.mu.Lock()
	state := "thawed"
	if w.g.frozen {
		state = "frozen"
	}
	w.g.calls = append(w.g.calls, "snapshot("+state+")")
	w.g.mu.Unlock()
	if w.fail != nil {
		return nil, w.fail
	}
	return w.Snapshotter.Create(ctx, v, runID)
}

// setEnv is a domain of two raw image disks with ext4, a local store and
// a journal.
type setEnv struct {
	t       *testing.T
	dir     string
	store   *local.Store
	journal *cleanup.Journal
	state   string
	runID   string
	disks   []volume.Volume
	guest   *fakeGuest
	snap    *image.Snapshotter
}

func newSetEnv(t *testing.T) *setEnv {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "truncate")
	dir := t.TempDir()
	e := &setEnv{t: t, dir: dir, state: filepath.Join(dir, "state"), runID: backup.NewRunID(time.Now()), guest: &fakeGuest{}}
	os.Mkdir(filepath.Join(dir, "store"), 0o700)
	e.store = local.New(filepath.Join(dir, "store"))
	j, err := cleanup.Start(e.state, e.runID)
	if err != nil {
		t.Fatal(err)
	}
	e.journal = j
	e.snap = &image.Snapshotter{Scratch: filepath.Join(dir, "scratch"), Scope: backup.Scope(filepath.Join(dir, "run"))}
	for _, name := range []string{"vm1-root.img", "vm1-data.img"} {
		p := filepath.Join(dir, name)
		testutil.Run(t, "truncate", "-s", "16M", p)
		testutil.Run(t, "mkfs.ext4", "-q", "-F", p)
		v, err := image.Resolve(p, false)
		if err != nil {
			t.Fatal(err)
		}
		e.disks = append(e.disks, v)
	}
	return e
}

// backup backs the domain up; fail[i] fails disk i's snapshot, inject[i]
// its backup at a stage.
func (e *setEnv) backup(o domain.Options, fail map[int]error, inject map[int]string) []domain.Result {
	return e.backupCtx(context.Background(), o, fail, inject)
}

func (e *setEnv) backupCtx(ctx context.Context, o domain.Options, fail map[int]error, inject map[int]string) []domain.Result {
	var ms []domain.Member
	for i, v := range e.disks {
		bo := backup.Options{
			Settings: folder.Settings{Store: e.store, Host: "testhost", Encoding: objio.Encoding{Compression: "zstd"},
				Journal: e.journal, CleanupTimeout: time.Minute, Version: "test",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			RuntimeDir: filepath.Join(e.dir, "run"), RunID: e.runID,
			Snapshotter: &watched{Snapshotter: e.snap, g: e.guest, fail: fail[i]},
		}
		if stage, ok := inject[i]; ok {
			bo.Inject = func(s string) error {
				if s == stage {
					return errors.New("injected")
				}
				return nil
			}
		}
		ms = append(ms, domain.Member{Target: []string{"vda", "vdb"}[i], Volume: v, Options: bo})
	}
	o.Client, o.Domain, o.UUID, o.RunID, o.Journal, o.Running = e.guest, "vm1", "uuid-1", e.runID, e.journal, true
	return domain.Backup(ctx, ms, o)
}

// finish closes the journal: everything the set made must be released.
func (e *setEnv) finish() {
	if err := e.journal.Finish(); err != nil {
		e.t.Errorf("journal: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(e.dir, "scratch", "*"))
	if len(left) > 0 {
		e.t.Errorf("snapshots left: %v", left)
	}
}

func TestSetFrozen(t *testing.T) {
	e := newSetEnv(t)
	res := e.backup(domain.Options{}, nil, nil)
	e.finish()
	// vdb is read (and released) only after vda's backup ended.
	if got, want := e.guest.seq(), "freeze snapshot(frozen) snapshot(frozen) thaw release(root) release(data)"; got != want {
		t.Errorf("sequence %q, want %q", got, want)
	}
	for _, r := range res {
		if r.Err != nil || r.Manifest == nil {
			t.Fatalf("%s: %v", r.Target, r.Err)
		}
		s := r.Manifest.Snapshot
		if s.Consistency != manifest.ConsistencyFrozen || s.Set == nil || s.Set.Disk != r.Target || s.Set.Domain != "vm1" ||
			len(s.Set.Disks) != 2 || s.Set.Disks[1].Volume != "image/vm1-data.img" || s.Set.ID != e.runID+"/vm1" {
			t.Errorf("%s: snapshot %+v, set %+v", r.Target, s, s.Set)
		}
	}
}

func TestSetNoAgent(t *testing.T) {
	noAgent := golibvirt.Error{Code: uint32(golibvirt.ErrAgentUnresponsive), Message: "Guest agent is not responding: QEMU guest agent is not connected"}
	t.Run("crash", func(t *testing.T) {
		e := newSetEnv(t)
		e.guest.freezeErr = noAgent
		res := e.backup(domain.Options{}, nil, nil)
		e.finish()
		for _, r := range res {
			if r.Err != nil || r.Manifest.Snapshot.Consistency != manifest.ConsistencyCrash || r.Manifest.Snapshot.Set == nil {
				t.Errorf("%s: err %v, snapshot %+v; want crash-consistent, in its set", r.Target, r.Err, r.Manifest)
			}
		}
		if got, want := e.guest.seq(), "freeze snapshot(thawed) snapshot(thawed) thaw release(root) release(data)"; got != want {
			t.Errorf("sequence %q, want %q", got, want)
		}
	})
	t.Run("require_freeze", func(t *testing.T) {
		e := newSetEnv(t)
		e.guest.freezeErr = noAgent
		res := e.backup(domain.Options{RequireFreeze: true}, nil, nil)
		e.finish()
		for _, r := range res {
			if r.Manifest != nil || r.Err == nil || !strings.Contains(r.Err.Error(), "require_freeze") {
				t.Errorf("%s: manifest %v, err %v; want failed for require_freeze", r.Target, r.Manifest, r.Err)
			}
		}
		if got, want := e.guest.seq(), "freeze thaw"; got != want {
			t.Errorf("sequence %q, want %q (no snapshot, thaw after the attempt)", got, want)
		}
		e.noBackups()
	})
}

// A freeze that does not finish within freeze_timeout is given up: the
// guest is thawed and the disks are taken crash-consistent.
func TestSetFreezeTimeout(t *testing.T) {
	e := newSetEnv(t)
	e.guest.block = true
	start := time.Now()
	res := e.backup(domain.Options{FreezeTimeout: 300 * time.Millisecond}, nil, nil)
	e.finish()
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s", d)
	}
	if got, want := e.guest.seq(), "freeze snapshot(thawed) snapshot(thawed) thaw release(root) release(data)"; got != want {
		t.Errorf("sequence %q, want %q", got, want)
	}
	for _, r := range res {
		if r.Err != nil || r.Manifest.Snapshot.Consistency != manifest.ConsistencyCrash {
			t.Errorf("%s: %v", r.Target, r.Err)
		}
	}
}

// One disk's snapshot fails: the other's is released, the guest thawed,
// both disks fail, nothing is stored.
func TestSetSnapshotFails(t *testing.T) {
	e := newSetEnv(t)
	res := e.backup(domain.Options{}, map[int]error{1: errors.New("no space for the clone")}, nil)
	e.finish()
	if got, want := e.guest.seq(), "freeze snapshot(frozen) snapshot(frozen) thaw release(root)"; got != want {
		t.Errorf("sequence %q, want %q", got, want)
	}
	if res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "no space for the clone") {
		t.Errorf("vdb: %v", res[1].Err)
	}
	if res[0].Manifest != nil || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "disk vdb of the same domain failed") {
		t.Errorf("vda: manifest %v, err %v; want failed for its sibling", res[0].Manifest, res[0].Err)
	}
	e.noBackups()
}

// A disk that fails before its snapshot (here: at the snapshot stage, so
// it never reaches Create) fails the set before any freeze.
func TestSetSiblingFailsEarly(t *testing.T) {
	e := newSetEnv(t)
	res := e.backup(domain.Options{}, nil, map[int]string{0: backup.StageSnapshot})
	e.finish()
	if got := e.guest.seq(); got != "" {
		t.Errorf("sequence %q, want nothing (no freeze)", got)
	}
	if res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "disk vda of the same domain failed") {
		t.Errorf("vdb: %v", res[1].Err)
	}
	e.noBackups()
}

// A thaw that fails keeps the journal's freeze entry for the next sweep
// and says so in every disk's result; the backups are stored.
func TestSetThawFails(t *testing.T) {
	e := newSetEnv(t)
	e.guest.thawErr = errors.New("agent hung")
	res := e.backup(domain.Options{}, nil, nil)
	for _, r := range res {
		if r.Manifest == nil || r.Err == nil || !strings.Contains(r.Err.Error(), "may still be frozen") {
			t.Errorf("%s: manifest %v err %v; want stored, with the thaw's failure", r.Target, r.Manifest != nil, r.Err)
		}
	}
	err := e.journal.Finish()
	if err == nil {
		t.Fatal("journal finished clean; want the freeze entry kept for the sweep")
	}
	// The sweep's handler gets the entry; libvirt is not there: later.
	released, serr := cleanup.SweepJournals(context.Background(), e.state,
		map[string]cleanup.Handler{cleanup.Freeze: domain.ThawLeftover(slog.New(slog.NewTextHandler(io.Discard, nil)))},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if serr != nil || len(released) != 0 {
		t.Errorf("sweep without libvirt: released %v, err %v; want the entry kept for later, no error", released, serr)
	}
	if js, _ := filepath.Glob(filepath.Join(e.state, "runs", "*.journal")); len(js) != 1 {
		t.Errorf("journals %v, want the one kept", js)
	}
}

// noBackups: no manifest and no partial folder in the store.
func (e *setEnv) noBackups() {
	objs, err := e.store.List(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range objs {
		e.t.Errorf("left in the store: %s", o.Key)
	}
}

// SIGINT/SIGTERM (the context cancelled) during the freeze: the thaw
// still runs, every disk fails, nothing is left.
func TestSetCancelledDuringFreeze(t *testing.T) {
	e := newSetEnv(t)
	e.guest.block = true
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	res := e.backupCtx(ctx, domain.Options{FreezeTimeout: time.Minute}, nil, nil)
	e.finish()
	if got, want := e.guest.seq(), "freeze thaw"; got != want {
		t.Errorf("sequence %q, want %q", got, want)
	}
	for _, r := range res {
		if r.Manifest != nil || !errors.Is(r.Err, context.Canceled) {
			t.Errorf("%s: manifest %v, err %v; want failed, cancelled", r.Target, r.Manifest != nil, r.Err)
		}
	}
	e.noBackups()
}
