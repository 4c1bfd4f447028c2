package restore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store/local"
)

type fakeTracker struct {
	mu           sync.Mutex
	name         string
	total        int64
	bytes, files int64
	updates      int
	done, ok     bool
}

func (f *fakeTracker) Update(bytes, files int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if bytes < f.bytes || files < f.files {
		f.name += " (went backwards)"
	}
	f.bytes, f.files = bytes, files
	f.updates++
}

func (f *fakeTracker) Done(ok bool) { f.done, f.ok = true, ok }

// Options.Progress hears of each filesystem with its size, and ends with
// the restore's own counts and success.
func TestProgress(t *testing.T) {
	src := t.TempDir()
	for i, size := range []int{0, 10, 5000, 3 << 20} {
		p := filepath.Join(src, "d", strings.Repeat("f", i+1))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(strings.Repeat("x", size)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := local.New(t.TempDir())
	f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC), Compression: codec.Zstd},
		map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: "ext4"}})
	b := catalogtest.Resolve(t, st, f)
	var trackers []*fakeTracker
	opts := restore.Options{Progress: func(name string, total int64) restore.Tracker {
		tr := &fakeTracker{name: name, total: total}
		trackers = append(trackers, tr)
		return tr
	}}
	res, err := restore.ToDir(context.Background(), st, b, filepath.Join(t.TempDir(), "out"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(trackers) != 1 {
		t.Fatalf("%d trackers, want 1", len(trackers))
	}
	tr, fr := trackers[0], res.Filesystems[0]
	if tr.name != "fs" || tr.total != b.Manifest.Filesystems[0].SourceBytes || tr.total == 0 {
		t.Errorf("tracker for %q with total %d; want fs with %d", tr.name, tr.total, b.Manifest.Filesystems[0].SourceBytes)
	}
	if tr.updates == 0 || tr.bytes != fr.Bytes || tr.files != fr.Files || fr.Files != 4 {
		t.Errorf("last update %d bytes, %d files after %d updates; restore did %d bytes, %d files", tr.bytes, tr.files, tr.updates, fr.Bytes, fr.Files)
	}
	if !tr.done || !tr.ok {
		t.Errorf("tracker done=%v ok=%v, want done and ok", tr.done, tr.ok)
	}
}

// Several filesystems go to dir/p1, dir/p2: dir itself must be empty too.
func TestToDirSeveralNeedsEmptyDir(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := local.New(t.TempDir())
	f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC), Compression: codec.Zstd,
		Table: manifest.Table{Type: "mbr"}},
		map[string]string{"p1": src, "p2": src}, []manifest.Filesystem{{Name: "p1", Partition: 1, Type: "ext4"}, {Name: "p2", Partition: 2, Type: "ext4"}})
	b := catalogtest.Resolve(t, st, f)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.ToDir(context.Background(), st, b, dir, restore.Options{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore of two filesystems into a non-empty dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "p1")); !os.IsNotExist(err) {
		t.Errorf("p1 was created: %v", err)
	}
}
