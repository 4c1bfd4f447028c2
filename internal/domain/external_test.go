package domain_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"voltar/internal/domain"
	"voltar/internal/fail"
	"voltar/internal/manifest"
	"voltar/internal/volume"
)

// fakeOverlays is an Overlayer that makes overlay files and records, in
// the guest's sequence, the external snapshot (and whether the guest was
// frozen then) and each commit; commitErr fails every commit.
type fakeOverlays struct {
	g         *fakeGuest
	mu        sync.Mutex
	on        map[string]string // target -> the overlay it runs on
	commitErr error
}

func (f *fakeOverlays) SnapshotDisks(ctx context.Context, dom string, files map[string]string) error {
	f.g.mu.Lock()
	state := "thawed"
	if f.g.frozen {
		state = "frozen"
	}
	f.g.calls = append(f.g.calls, "overlay("+state+")")
	f.g.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	for t, p := range files {
		if err := os.WriteFile(p, []byte("overlay"), 0o600); err != nil {
			return err
		}
		f.on[t] = p
	}
	return nil
}

func (f *fakeOverlays) DiskSource(ctx context.Context, dom, target string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.on[target]; ok {
		return p, true, nil
	}
	return "/images/" + target, true, nil
}

func (f *fakeOverlays) Commit(ctx context.Context, dom, target string) error {
	f.g.log("commit(" + target + ")")
	if f.commitErr != nil {
		return f.commitErr
	}
	f.mu.Lock()
	delete(f.on, target)
	f.mu.Unlock()
	return nil
}

func (f *fakeOverlays) SocketPath() string { return "/nonexistent/libvirt-sock" }

func (e *setEnv) external(f *fakeOverlays) domain.Options {
	return domain.Options{Overlays: f, Scratch: filepath.Join(e.dir, "scratch"), Scope: "s1", Reflinks: func(string) bool { return false }}
}

func sums(t *testing.T, vs []volume.Volume) [][32]byte {
	var out [][32]byte
	for _, v := range vs {
		b, err := os.ReadFile(v.Path)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sha256.Sum256(b))
	}
	return out
}

// Images that cannot be cloned: an external snapshot while the guest is
// frozen, the images read in place after the thaw, each overlay
// committed back once its disk is archived; the images are never
// written.
func TestSetExternal(t *testing.T) {
	e := newSetEnv(t)
	f := &fakeOverlays{g: e.guest, on: map[string]string{}}
	before := sums(t, e.disks)
	res := e.backup(e.external(f), nil, nil)
	e.finish()
	if got, want := e.guest.seq(), "freeze overlay(frozen) thaw snapshot(thawed) snapshot(thawed) release(root) commit(vda) release(data) commit(vdb)"; got != want {
		t.Errorf("sequence %q, want %q", got, want)
	}
	for _, r := range res {
		if r.Err != nil || r.Manifest == nil {
			t.Fatalf("%s: %v", r.Target, r.Err)
		}
		s := r.Manifest.Snapshot
		if s.Kind != string(volume.KindExternal) || s.Consistency != manifest.ConsistencyFrozen || !strings.HasPrefix(filepath.Base(s.Name), domain.OverlayPrefix) {
			t.Errorf("%s: snapshot %+v, want external, frozen, named by its overlay", r.Target, s)
		}
	}
	if after := sums(t, e.disks); after[0] != before[0] || after[1] != before[1] {
		t.Errorf("an image read below its overlay was written")
	}
}

// A commit that fails: the backups are stored, every disk's result says
// what to run by hand, the overlays stay (the guest runs on them) and so
// do their journal entries.
func TestSetExternalCommitFails(t *testing.T) {
	e := newSetEnv(t)
	f := &fakeOverlays{g: e.guest, on: map[string]string{}, commitErr: errors.New("I/O error")}
	res := e.backup(e.external(f), nil, nil)
	for _, r := range res {
		if r.Manifest == nil || r.Err == nil || !strings.Contains(r.Err.Error(), "still runs on the overlay") {
			t.Errorf("%s: manifest %v, err %v; want stored, with the failed commit", r.Target, r.Manifest != nil, r.Err)
		}
		if hs := strings.Join(fail.Hints(r.Err), "\n"); !strings.Contains(hs, "virsh blockcommit vm1 "+r.Target+" --active --pivot") {
			t.Errorf("%s: hints %q; want what to run by hand", r.Target, hs)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(e.dir, "scratch", domain.OverlayPrefix+"*")); len(left) != 2 {
		t.Errorf("overlays %v, want both kept", left)
	}
	if err := e.journal.Finish(); err == nil || !strings.Contains(err.Error(), "2 resources not released") {
		t.Errorf("journal: %v; want the two overlays kept for the sweep", err)
	}
}

// One disk's image cannot be read below its overlay: both disks fail,
// and both overlays are committed back at once.
func TestSetExternalReadFails(t *testing.T) {
	e := newSetEnv(t)
	f := &fakeOverlays{g: e.guest, on: map[string]string{}}
	res := e.backup(e.external(f), map[int]error{1: errors.New("daemon died")}, nil)
	e.finish()
	seq := e.guest.seq()
	if !strings.HasPrefix(seq, "freeze overlay(frozen) thaw") || !strings.Contains(seq, "commit(vda)") || !strings.Contains(seq, "commit(vdb)") {
		t.Errorf("sequence %q: want both overlays committed back", seq)
	}
	for _, r := range res {
		if r.Manifest != nil || r.Err == nil {
			t.Errorf("%s: manifest %v, err %v; want failed", r.Target, r.Manifest != nil, r.Err)
		}
	}
	if len(f.on) != 0 {
		t.Errorf("disks still on overlays: %v", f.on)
	}
	e.noBackups()
}
