package backup_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"voltar/internal/catalog"
	"voltar/internal/restore"
	"voltar/internal/testutil"
)

// btrfsImage makes a whole-disk btrfs image of sizeMiB with mkfs.btrfs
// args, mounts it with opts and fills it.
func btrfsImage(t *testing.T, sizeMiB int, mkfs []string, opts string, fill func(root string)) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.btrfs", "btrfs", "mount", "umount")
	if !testutil.KernelHas("btrfs") {
		testutil.Unavailable(t, "the kernel has no btrfs")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	testutil.Run(t, "truncate", "-s", strconv.Itoa(sizeMiB)+"M", img)
	testutil.Run(t, "mkfs.btrfs", append(append([]string{"-q", "-f"}, mkfs...), img)...)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	testutil.Run(t, "mount", "-o", "loop,"+opts, img, mnt)
	fill(mnt)
	testutil.Run(t, "umount", mnt)
	return img
}

// superblock is what `btrfs inspect-internal dump-super` says of key.
func superblock(t *testing.T, img, key string) string {
	t.Helper()
	out := testutil.Run(t, "btrfs", "inspect-internal", "dump-super", img)
	m := regexp.MustCompile(`(?m)^` + key + `\s+(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("dump-super has no %s:\n%s", key, out)
	}
	return m[1]
}

// A btrfs made with non-default parameters (64 KiB nodes, single metadata,
// no no-holes, no free space tree) and data compressed with zstd is
// re-made by --to-image with the same parameters, and its data is
// compressed again: mkfs.btrfs's defaults would give 16 KiB nodes, DUP
// metadata, both features, and twice the data on disk.
func TestBtrfsMkfsParameters(t *testing.T) {
	e := newEnv(t)
	text := bytes.Repeat([]byte("the same line of a log file, over and over again\n"), 1<<20/50)
	img := btrfsImage(t, 256, []string{"-n", "65536", "-m", "single", "-d", "single", "-O", "^no-holes", "-R", "^free-space-tree"}, "compress=zstd", func(root string) {
		for i := range 40 {
			if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("log%02d", i)), text, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		os.Mkdir(filepath.Join(root, "lzo"), 0o755)
		testutil.Run(t, "btrfs", "property", "set", filepath.Join(root, "lzo"), "compression", "lzo")
	})
	m := e.mustBackup(img, true)
	mp := m.Filesystems[0].Mkfs
	if mp == nil || mp.NodeSize != 65536 || mp.SectorSize != 4096 || mp.DataProfile != "single" || mp.MetadataProfile != "single" ||
		!slices.Contains(mp.Compression, "zstd") || slices.Contains(mp.Features, "no-holes") || slices.Contains(mp.Features, "free-space-tree") ||
		!slices.Contains(mp.Features, "skinny-metadata") {
		t.Fatalf("mkfs parameters recorded: %+v", mp)
	}
	out := e.restoreImage(m)
	if got := superblock(t, out, "nodesize"); got != "65536" {
		t.Errorf("restored nodesize %s, want 65536", got)
	}
	if got := superblock(t, out, "compat_ro_flags"); got != "0x0" {
		t.Errorf("restored compat_ro_flags %s, want 0x0 (no free space tree)", got)
	}
	incompat, _ := strconv.ParseUint(strings.TrimPrefix(superblock(t, out, "incompat_flags"), "0x"), 16, 64)
	if incompat&0x200 != 0 || incompat&0x10 == 0 {
		t.Errorf("restored incompat_flags %#x: want no no-holes (0x200) and zstd-compressed data (0x10)", incompat)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o755)
	testutil.Run(t, "mount", "-o", "loop,ro", out, mnt)
	defer testutil.Run(t, "umount", mnt)
	if got := testutil.Run(t, "btrfs", "property", "get", filepath.Join(mnt, "lzo"), "compression"); !strings.Contains(got, "compression=lzo") {
		t.Errorf("the directory's compression property came back as %q", got)
	}
	df := testutil.Run(t, "btrfs", "filesystem", "df", "-b", mnt)
	if !strings.Contains(df, "Metadata, single") || !strings.Contains(df, "Data, single") {
		t.Errorf("restored profiles:\n%s", df)
	}
	used := regexp.MustCompile(`Data, single: total=\d+, used=(\d+)`).FindStringSubmatch(df)
	if used == nil {
		t.Fatalf("no data usage in:\n%s", df)
	}
	if n, _ := strconv.ParseInt(used[1], 10, 64); n > 10<<20 {
		t.Errorf("restored data takes %d bytes for 40 MiB that zstd compresses to a fraction: not compressed", n)
	}
}

// Data its files share (reflinked copies) is counted at backup; a restore
// that would write it once per file into a filesystem of the source's size
// too small for that is refused before anything is written, naming the
// sizes; one that fits says how much the filesystem grew.
func TestReflinkedDataCapacity(t *testing.T) {
	e := newEnv(t)
	reflinked := func(copies int, mib int) func(root string) {
		return func(root string) {
			data := make([]byte, mib<<20)
			rand.Read(data)
			first := filepath.Join(root, "data0")
			if err := os.WriteFile(first, data, 0o644); err != nil {
				t.Fatal(err)
			}
			for i := 1; i < copies; i++ {
				testutil.Run(t, "cp", "--reflink=always", first, filepath.Join(root, fmt.Sprintf("data%d", i)))
			}
		}
	}
	// 4 x 40 MiB in a 200 MiB filesystem: 160 MiB of data in 40 MiB.
	img := btrfsImage(t, 200, nil, "", reflinked(4, 40))
	m := e.mustBackup(img, true)
	sp := m.Filesystems[0].Space
	if sp == nil || sp.Shared != 160<<20 || sp.SharedOnce != 40<<20 {
		t.Fatalf("space recorded: %+v; want 160 MiB shared, 40 MiB of it once", sp)
	}
	b, err := catalog.Resolve(context.Background(), e.store, "testhost", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "restored.img")
	_, err = restore.ToImage(context.Background(), e.store, b, out, restore.Options{MountDir: t.TempDir()})
	if !errors.Is(err, restore.ErrNoRoom) || !strings.Contains(err.Error(), "share 160.0 MiB") || !strings.Contains(err.Error(), "120.0 MiB more") {
		t.Fatalf("restore of 4 reflinked copies into their source's size: %v; want refused, naming the sizes", err)
	}
	t.Logf("refused: %v", err)
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused restore left %s (%v)", out, err)
	}

	// 2 x 30 MiB: fits, and the report says it grew.
	img = btrfsImage(t, 200, nil, "", reflinked(2, 30))
	m = e.mustBackup(img, true)
	if b, err = catalog.Resolve(context.Background(), e.store, "testhost", m.ID); err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(t.TempDir(), "restored2.img")
	res, err := restore.ToImage(context.Background(), e.store, b, out, restore.Options{MountDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	restore.WriteText(&text, res)
	if !strings.Contains(text.String(), "30.0 MiB of data the source shared between files") {
		t.Errorf("restore output does not report the growth:\n%s", text.String())
	}
	t.Logf("restore output:\n%s", text.String())
}

// xfs with reflink (mkfs.xfs's default) shares extents too: the backup
// counts them like btrfs's.
func TestXFSReflinksCounted(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "mbr", Parts: []testutil.Part{
		{FS: "xfs", SizeMiB: 320, Fill: func(t testing.TB, root string) {
			data := make([]byte, 8<<20)
			rand.Read(data)
			if err := os.WriteFile(filepath.Join(root, "a"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"b", "c"} {
				testutil.Run(t, "cp", "--reflink=always", filepath.Join(root, "a"), filepath.Join(root, n))
			}
		}},
	}})
	m := e.mustBackup(img, true)
	fs := m.Filesystems[0]
	if fs.Mkfs == nil || !slices.Contains(fs.Mkfs.Features, "reflink") {
		t.Skipf("mkfs.xfs made no reflink filesystem: %+v", fs.Mkfs)
	}
	if sp := fs.Space; sp == nil || sp.Shared != 24<<20 || sp.SharedOnce != 8<<20 || sp.Unshared() != 16<<20 {
		t.Errorf("space recorded: %+v; want 24 MiB shared, 8 MiB of it once", sp)
	}
}
