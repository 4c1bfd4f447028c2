package restore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/folder"
	"voltar/internal/objio"
	"voltar/internal/restore"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
	"voltar/internal/volume/image"
)

// btrfsBackup backs up img with the backup pipeline into a new local store.
func btrfsBackup(t *testing.T, img string, snapshots bool) (*local.Store, *catalog.Backup) {
	t.Helper()
	v, err := image.Resolve(img, false)
	if err != nil {
		t.Fatal(err)
	}
	st := local.New(t.TempDir())
	runtime := t.TempDir()
	m, err := backup.Volume(context.Background(), v, backup.Options{
		Settings: folder.Settings{Store: st, Host: "h", Encoding: objio.Encoding{Compression: "zstd"},
			CleanupTimeout: time.Minute, Version: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		RuntimeDir: runtime, RunID: backup.NewRunID(time.Now()),
		Snapshotter:    &image.Snapshotter{Scratch: t.TempDir(), Scope: backup.Scope(runtime)},
		BtrfsSnapshots: snapshots,
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := catalog.Resolve(context.Background(), st, "h", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	return st, b
}

// subvolumes is `btrfs subvolume list` as paths with "ro" for read-only
// ones, and the default subvolume's path.
func subvolumes(t *testing.T, mnt string) (list []string, def string) {
	t.Helper()
	ro := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(testutil.Run(t, "btrfs", "subvolume", "list", "-r", mnt)), "\n") {
		if _, p, ok := strings.Cut(l, " path "); ok {
			ro[p] = true
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(testutil.Run(t, "btrfs", "subvolume", "list", mnt)), "\n") {
		if _, p, ok := strings.Cut(l, " path "); ok {
			if ro[p] {
				p += " ro"
			}
			list = append(list, p)
		}
	}
	slices.Sort(list)
	_, def, _ = strings.Cut(strings.TrimSpace(testutil.Run(t, "btrfs", "subvolume", "get-default", mnt)), " path ")
	return list, def
}

// withMount runs f with the btrfs top level of img's area [off, off+size)
// mounted read-only, and detaches it all before returning.
func withMount(t *testing.T, img string, off, size int64, f func(mnt string)) {
	t.Helper()
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--read-only",
		"--offset", fmt.Sprint(off), "--sizelimit", fmt.Sprint(size), img))
	defer exec.Command("losetup", "-d", dev).Run()
	mnt := t.TempDir()
	testutil.Run(t, "mount", "-o", "ro,subvolid=5", dev, mnt)
	defer umount(t, mnt)
	f(mnt)
}

func TestToImageBtrfsSubvolumes(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.btrfs", "btrfs", "getfacl")
	if !testutil.KernelHas("btrfs") {
		testutil.Unavailable(t, "the kernel has no btrfs")
	}
	src := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "gpt", Parts: []testutil.Part{
		{FS: "btrfs", SizeMiB: 128, Fill: testutil.FillBtrfsLayout},
	}})
	off, size := int64(1<<20), int64(128<<20)
	// mkfs.btrfs refuses a UUID that a block device shows: restores run
	// while the source is not attached, comparisons after.
	var wantList []string
	var wantDef string
	withMount(t, src, off, size, func(mnt string) { wantList, wantDef = subvolumes(t, mnt) })
	if wantDef != "@" || len(wantList) != 4 {
		t.Fatalf("source layout: %v, default %q", wantList, wantDef)
	}

	// btrfs_snapshots: include: everything comes back, subvolume for
	// subvolume.
	st, b := btrfsBackup(t, src, true)
	out := filepath.Join(t.TempDir(), "restored.img")
	res, err := restore.ToImage(context.Background(), st, b, out, restore.Options{MountDir: t.TempDir()})
	if err != nil {
		t.Fatalf("ToImage: %v\n%+v", err, res)
	}
	checkNoLeftovers(t, out, "voltar-restore-")
	withMount(t, out, off, size, func(dst string) {
		if list, def := subvolumes(t, dst); !slices.Equal(list, wantList) || def != wantDef {
			t.Errorf("restored subvolumes %v, default %q; want %v, default %q", list, def, wantList, wantDef)
		}
		// A second filesystem of the same UUID mounts (temp-fsid).
		withMount(t, src, off, size, func(srcMnt string) { compareTrees(t, srcMnt, dst) })
	})

	// By default the read-only snapshot is not in the backup: the rest
	// comes back as subvolumes, the snapshot as an empty directory, and
	// the result says so.
	st, b = btrfsBackup(t, src, false)
	out = filepath.Join(t.TempDir(), "restored.img")
	res, err = restore.ToImage(context.Background(), st, b, out, restore.Options{MountDir: t.TempDir()})
	if err != nil {
		t.Fatalf("ToImage: %v\n%+v", err, res)
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "@home-snap") }) {
		t.Errorf("warnings %q do not name the skipped snapshot", res.Warnings)
	}
	withMount(t, out, off, size, func(dst string) {
		list, def := subvolumes(t, dst)
		if want := slices.DeleteFunc(slices.Clone(wantList), func(p string) bool { return strings.HasPrefix(p, "@home-snap") }); !slices.Equal(list, want) || def != wantDef {
			t.Errorf("restored subvolumes %v, default %q; want %v, default %q", list, def, want, wantDef)
		}
		if names, err := os.ReadDir(filepath.Join(dst, "@home-snap")); err != nil || len(names) != 0 {
			t.Errorf("@home-snap: %v %v, want an empty directory", names, err)
		}
	})

	// Onto a device, the same.
	dev := loopDevice(t, b.Manifest.Volume.Size)
	if res, err := restore.ToDevice(context.Background(), st, b, dev, restore.Options{MountDir: t.TempDir()}); err != nil {
		t.Fatalf("ToDevice: %v\n%+v", err, res)
	}
	withMount(t, dev, off, size, func(dst string) {
		if list, def := subvolumes(t, dst); len(list) != 3 || def != wantDef {
			t.Errorf("subvolumes on the device %v, default %q; want 3, default %q", list, def, wantDef)
		}
	})

	// Into a directory: plain directories, and a warning that says so.
	dir := t.TempDir()
	res, err = restore.ToDir(context.Background(), st, b, dir, restore.Options{})
	if err != nil {
		t.Fatalf("ToDir: %v", err)
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool {
		return strings.Contains(w, "plain directories") && strings.Contains(w, "@/nested")
	}) {
		t.Errorf("ToDir warnings %q do not say the subvolumes became directories", res.Warnings)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "@/nested/data.txt")); err != nil || string(data) != "in @/nested\n" {
		t.Errorf("@/nested/data.txt: %q %v", data, err)
	}
}
