package backup_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"voltar/internal/backup"
	"voltar/internal/cleanup"
	"voltar/internal/store/storetest"
	"voltar/internal/testutil"
	"voltar/internal/volume/image"
)

// Every archive goes to the store with a bound on its size (what an S3
// store sizes its parts from): at least the filesystem's or partition's
// size, and not wildly more.
func TestArchivesCarrySizeHints(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "mbr", Parts: []testutil.Part{
		{FS: "ext4", SizeMiB: 64, Fill: fillData},
		{FS: "", SizeMiB: 8},
	}})
	testutil.Run(t, "sh", "-c", fmt.Sprintf("head -c 4M /dev/urandom | dd of=%s bs=1M seek=66 conv=notrunc status=none", img))
	v, err := image.Resolve(img, false)
	if err != nil {
		t.Fatal(err)
	}
	j, err := cleanup.Start(e.state, "run1")
	if err != nil {
		t.Fatal(err)
	}
	o := e.options("run1", j)
	// Record the size hint each Put came with.
	var mu sync.Mutex
	hints := map[string]int64{}
	fs := storetest.NewFaulty(e.store)
	fs.Observe = func(c storetest.Call) {
		if c.Op == storetest.OpPut {
			mu.Lock()
			hints[c.Key[strings.LastIndexByte(c.Key, '/')+1:]] = c.Put.SizeHint
			mu.Unlock()
		}
	}
	o.Store = fs
	m, err := backup.Volume(context.Background(), v, o)
	if err != nil {
		t.Fatal(err)
	}
	j.Finish()
	for _, c := range []struct {
		key      string
		min, max int64
	}{
		{"p1.tar.zst", 50 << 20, 64<<20*5/4 + 64<<20},
		{"p2.raw.zst", 8 << 20, 10 << 20},
		{"SHA256SUMS", 0, 0},
		{"manifest.json", 0, 0},
	} {
		if h := hints[c.key]; h < c.min || h > c.max {
			t.Errorf("%s: size hint %d, want %d..%d", c.key, h, c.min, c.max)
		}
	}
	for _, f := range m.Filesystems {
		if f.StoredBytes > hints[f.Archive] {
			t.Errorf("%s: stored %d bytes, above its hint %d", f.Archive, f.StoredBytes, hints[f.Archive])
		}
	}
}

// A resource the journal cannot record is not kept: the backup stops and
// releases it (the journal is closed here; a full state_dir does the same).
func TestUnjournaledResourceStopsBackup(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 32, Fill: fillData}}})
	v, err := image.Resolve(img, false)
	if err != nil {
		t.Fatal(err)
	}
	j, err := cleanup.Start(e.state, "run1")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Finish(); err != nil {
		t.Fatal(err)
	}
	_, err = backup.Volume(context.Background(), v, e.options("run1", j))
	if err == nil || !strings.Contains(err.Error(), "journal closed") {
		t.Fatalf("backup with a journal that cannot record: %v", err)
	}
	if objs, _ := e.store.List(context.Background(), ""); len(objs) != 0 {
		t.Errorf("objects left in the store: %v", objs)
	}
	// assertNothingLeft (cleanup) checks clones, loops and mounts.
}

// The file index is part of the backup: a store that fails its write
// fails the volume, and nothing of the folder stays (the archive already
// written beside it included), nor a loop device or mount (newEnv).
func TestIndexWriteFailureFailsBackup(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Fill: fillData}}})
	v, err := image.Resolve(img, false)
	if err != nil {
		t.Fatal(err)
	}
	o := e.options("run1", nil)
	o.Store = storetest.NewFaulty(e.store, &storetest.Fault{Op: storetest.OpPut, KeySuffix: ".index.zst", Err: errors.New("disk full")})
	_, err = backup.Volume(context.Background(), v, o)
	t.Logf("backup: %v", err)
	if err == nil || !strings.Contains(err.Error(), "fs.index.zst") {
		t.Fatalf("backup with the index's write failing: %v, want an error naming fs.index.zst", err)
	}
	objs, err := e.store.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 0 {
		t.Errorf("the store keeps %v after the failed backup", objs)
	}
}
