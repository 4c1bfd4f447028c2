package btrfs_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"voltar/internal/btrfs"
	"voltar/internal/sysexec"
	"voltar/internal/testutil"
)

func TestParseList(t *testing.T) {
	out, err := os.ReadFile("testdata/subvolume-list-p-u-q.txt") // btrfs-progs v6.2
	if err != nil {
		t.Fatal(err)
	}
	es, err := btrfs.ParseList(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []btrfs.Entry{
		{ID: 256, Generation: 7, ParentID: 5, Path: "@", UUID: "cc1bcd7d-d581-d641-a153-4a2e18729703"},
		{ID: 257, Generation: 7, ParentID: 5, Path: "@home", UUID: "888ad895-f8e8-4c41-9af3-0a5dfd6ff264"},
		{ID: 258, Generation: 7, ParentID: 256, Path: "@/nested", UUID: "71510141-3d68-9647-b558-efe6280e9178"},
		{ID: 259, Generation: 7, ParentID: 5, Path: "@home-snap", UUID: "87185430-a624-6b48-ba27-c62c809ffbdd", ParentUUID: "888ad895-f8e8-4c41-9af3-0a5dfd6ff264"},
		{ID: 260, Generation: 8, ParentID: 5, Path: "a dir/with path in it", UUID: "11111111-2222-3333-4444-555555555555"},
	}
	if !slices.Equal(es, want) {
		t.Errorf("got  %+v\nwant %+v", es, want)
	}
	if _, err := btrfs.ParseList([]byte("garbage\n")); err == nil {
		t.Error("garbage parsed")
	}
}

// Info (the ioctl) and List (btrfs-progs) agree on a real filesystem.
func TestInfo(t *testing.T) {
	testutil.RequireTools(t, "mkfs.btrfs", "btrfs")
	if !testutil.KernelHas("btrfs") {
		testutil.Unavailable(t, "the kernel has no btrfs")
	}
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{
		{FS: "btrfs", SizeMiB: 128, Fill: testutil.FillBtrfsLayout},
	}})
	mnt := t.TempDir()
	testutil.Run(t, "mount", "-o", "ro,loop,subvolid=5", img, mnt)
	t.Cleanup(func() { testutil.Run(t, "umount", mnt) })
	ctx := context.Background()
	if !btrfs.Is(mnt) {
		t.Fatal("Is: false on btrfs")
	}
	if btrfs.Is("/proc") {
		t.Error("Is: true for /proc")
	}
	top, err := btrfs.Info(ctx, mnt)
	if err != nil || top.ID != btrfs.TopLevel {
		t.Fatalf("top level: %+v, %v", top, err)
	}
	es, err := btrfs.List(ctx, sysexec.Exec{}, mnt)
	if err != nil || len(es) != 4 {
		t.Fatalf("List: %+v, %v", es, err)
	}
	for _, e := range es {
		i, err := btrfs.Info(ctx, filepath.Join(mnt, e.Path))
		if err != nil {
			t.Fatal(err)
		}
		if i.ID != e.ID || i.ParentID != e.ParentID || i.UUID != e.UUID || i.ParentUUID != e.ParentUUID || i.Name != filepath.Base(e.Path) {
			t.Errorf("%s: Info %+v, List %+v", e.Path, i, e)
		}
		if snap := e.Path == "@home-snap"; i.Snapshot() != snap || i.ReadOnly() != snap {
			t.Errorf("%s: read-only %v, snapshot %v", e.Path, i.ReadOnly(), i.Snapshot())
		}
	}
	def, err := btrfs.Default(ctx, sysexec.Exec{}, mnt)
	if err != nil || def != es[0].ID {
		t.Errorf("Default %d, %v; want %d (@)", def, err, es[0].ID)
	}
}
