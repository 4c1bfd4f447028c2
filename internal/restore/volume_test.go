package restore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"voltar/internal/catalog"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/disk"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store/local"
	"voltar/internal/store/storetest"
	"voltar/internal/testutil"
)

// fill writes a small tree with a few attributes into a new filesystem.
func fill(name string) func(testing.TB, string) {
	return func(t testing.TB, root string) {
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.MkdirAll(filepath.Join(root, "etc", name), 0o755))
		must(os.WriteFile(filepath.Join(root, "etc", name, "conf"), []byte("fs "+name+"\n"), 0o640))
		must(os.Chown(filepath.Join(root, "etc", name, "conf"), 4242, 4243))
		must(os.Symlink("etc/"+name+"/conf", filepath.Join(root, "conf")))
		must(unix.Setxattr(filepath.Join(root, "etc", name, "conf"), "user.fs", []byte(name), 0))
		f, err := os.Create(filepath.Join(root, "sparse"))
		must(err)
		_, err = f.WriteAt([]byte("end"), 50<<20)
		must(err)
		must(f.Close())
	}
}

// imageBackup backs up a disk image the way the backup pipeline does: read
// its table and filesystems with internal/disk, mount each filesystem and
// archive it.
func imageBackup(t *testing.T, img string, skip map[string]bool) (*local.Store, *catalog.Backup) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	m := catalogtest.Folder{Host: "h", Group: "image", Volume: filepath.Base(img), Time: t0, Compression: codec.Zstd,
		Volume0: manifest.Volume{Kind: "image", Name: filepath.Base(img), Group: "image", Path: img, Size: fi.Size()}}
	type area struct {
		name   string
		number int
		off    int64
		size   int64
	}
	var areas []area
	tbl, err := disk.ReadTable(f, fi.Size())
	switch {
	case errors.Is(err, disk.ErrNoTable):
		m.Table = manifest.Table{Type: "none"}
		areas = append(areas, area{"fs", 0, 0, fi.Size()})
	case err != nil:
		t.Fatal(err)
	default:
		m.Table = manifest.Table{Type: tbl.Type, SectorSize: tbl.SectorSize, DiskID: tbl.DiskID}
		for _, p := range tbl.Partitions {
			m.Table.Partitions = append(m.Table.Partitions, manifest.Partition{Number: p.Number, Start: p.Start, Size: p.Size,
				Type: p.Type, UUID: p.UUID, Name: p.Name, Bootable: p.Bootable, Logical: p.Logical})
			areas = append(areas, area{fmt.Sprintf("p%d", p.Number), p.Number, p.Start, p.Size})
		}
	}
	st := local.New(t.TempDir())
	trees := map[string]string{}
	var fss, skipped []manifest.Filesystem
	for _, a := range areas {
		d, err := disk.DetectFS(f, a.off, a.size)
		if err != nil {
			t.Fatal(err)
		}
		fs := manifest.Filesystem{Name: a.name, Partition: a.number, Type: d.Type, UUID: d.UUID, Label: d.Label}
		if d.Type == "swap" || skip[a.name] {
			fs.Mode, fs.Reason = manifest.ModeSkipped, "swap"
			skipped = append(skipped, fs)
			continue
		}
		trees[a.name] = mountRO(t, img, a.off, a.size, d.Type)
		fss = append(fss, fs)
	}
	m = backupOf(t, st, m, trees, fss)
	if len(skipped) > 0 {
		b := catalogtest.Resolve(t, st, m)
		b.Manifest.Filesystems = append(b.Manifest.Filesystems, skipped...)
		catalogtest.PutManifest(t, st, b.Prefix, b.Manifest)
	}
	return st, catalogtest.Resolve(t, st, m)
}

// sfdiskJSON is the table as sfdisk reads it, without device names.
func sfdiskJSON(t *testing.T, img string) string {
	t.Helper()
	var v struct {
		PT struct {
			Label, ID  string
			Unit       string
			FirstLBA   int64 `json:"firstlba"`
			SectorSize int   `json:"sectorsize"`
			Partitions []struct {
				Node             string
				Start, Size      int64
				Type, UUID, Name string
				Attrs            string
				Bootable         bool
			}
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(testutil.Run(t, "sfdisk", "--json", img)), &v); err != nil {
		t.Fatal(err)
	}
	for i := range v.PT.Partitions {
		p := &v.PT.Partitions[i]
		p.Node = strings.TrimLeft(strings.TrimPrefix(p.Node, img), "p") // /dev/loop0p1, disk.img1
	}
	b, _ := json.MarshalIndent(v, "", " ")
	return string(b)
}

// blkid probes the filesystem at off in img.
func blkid(t *testing.T, img string, off, size int64) string {
	t.Helper()
	out, _ := exec.Command("blkid", "-p", "-o", "export", "-O", fmt.Sprint(off), "-S", fmt.Sprint(size), "-s", "TYPE", "-s", "UUID", "-s", "LABEL", img).Output()
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "TYPE=") || strings.HasPrefix(l, "UUID=") || strings.HasPrefix(l, "LABEL=") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, " ")
}

func TestToImage(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "sfdisk", "blkid", "mkfs.ext4", "mkfs.xfs", "mkswap")
	for _, tc := range []struct {
		name string
		spec testutil.Image
	}{
		{"mbr", testutil.Image{Table: "mbr", Parts: []testutil.Part{
			{FS: "ext4", SizeMiB: 64, Label: "root", Fill: fill("root")},
			{FS: "xfs", SizeMiB: 320, Label: "data", Fill: fill("data")},
			{FS: "swap", SizeMiB: 16},
		}}},
		{"gpt", testutil.Image{Table: "gpt", Parts: []testutil.Part{
			{FS: "ext4", SizeMiB: 64, Label: "boot", Fill: fill("boot")},
			{FS: "ext4", SizeMiB: 64, Fill: fill("root")},
		}}},
		{"whole-disk", testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Label: "whole", Fill: fill("whole")}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := testutil.MakeImage(t, t.TempDir(), tc.spec)
			st, b := imageBackup(t, src, nil)
			out := filepath.Join(t.TempDir(), "restored.img")
			res, err := restore.ToImage(context.Background(), st, b, out, restore.Options{MountDir: t.TempDir()})
			if err != nil {
				t.Fatalf("ToImage: %v\n%+v", err, res)
			}
			checkNoLeftovers(t, out, "voltar-restore-")
			for _, fr := range res.Filesystems {
				if fr.Dir != "" && fr.Dir != fr.Name+" of "+out {
					t.Errorf("%s restored to %q, want %q (not the temporary mount point)", fr.Name, fr.Dir, fr.Name+" of "+out)
				}
			}
			if tc.spec.Table != "none" {
				if got, want := sfdiskJSON(t, out), sfdiskJSON(t, src); got != want {
					t.Errorf("sfdisk --json:\n%s\nwant:\n%s", got, want)
				}
			}
			var fi, fo unix.Stat_t
			unix.Stat(src, &fi)
			unix.Stat(out, &fo)
			if fo.Size != fi.Size || fo.Blocks > fi.Blocks*2 {
				t.Errorf("image size %d (%d blocks), source %d (%d blocks)", fo.Size, fo.Blocks, fi.Size, fi.Blocks)
			}
			for _, fs := range b.Manifest.Filesystems {
				off, size := int64(0), b.Manifest.Volume.Size
				for _, p := range b.Manifest.Table.Partitions {
					if p.Number == fs.Partition {
						off, size = p.Start, p.Size
					}
				}
				if got, want := blkid(t, out, off, size), blkid(t, src, off, size); got != want || !strings.Contains(want, "UUID=") {
					t.Errorf("%s: blkid %q, want %q", fs.Name, got, want)
				}
				if fs.Mode != manifest.ModeFiles {
					continue
				}
				compareTrees(t, mountRO(t, src, off, size, fs.Type), mountRO(t, out, off, size, fs.Type))
			}
			if len(res.Filesystems) != len(b.Manifest.Filesystems) {
				t.Errorf("result: %+v", res)
			}
		})
	}
}

func TestToImageRefusesExistingFile(t *testing.T) {
	st, b := storeTar(t, catalogtest.Tar(t, catalogtest.File("./a", 0o644, "a")))
	out := filepath.Join(t.TempDir(), "precious.img")
	if err := os.WriteFile(out, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := restore.ToImage(context.Background(), st, b, out, restore.Options{MountDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("err = %v", err)
	}
	if got, _ := os.ReadFile(out); string(got) != "data" {
		t.Errorf("image changed: %q", got)
	}
}

func TestToImageFailureRemovesImage(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4")
	var entries []catalogtest.Entry
	for i := range 50 {
		entries = append(entries, catalogtest.File(fmt.Sprintf("./f%02d", i), 0o644, strings.Repeat(fmt.Sprint(i), 5000)))
	}
	st, b := storeTar(t, catalogtest.Tar(t, entries...))
	key := filepath.Join(st.Root(), b.Key(b.Manifest.Filesystems[0].Archive))
	data, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(key, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "new.img")
	res, err := restore.ToImage(context.Background(), st, b, out, restore.Options{MountDir: t.TempDir()})
	if !errors.Is(err, restore.ErrChecksum) || !strings.Contains(err.Error(), "image removed") {
		t.Fatalf("err = %v, want a checksum error", err)
	}
	t.Log(err)
	if _, serr := os.Stat(out); serr == nil {
		t.Errorf("image left behind")
	}
	if len(res.Filesystems) != 1 || res.Filesystems[0].Made == nil || res.Filesystems[0].Verified {
		t.Errorf("result: %+v", res)
	}
	checkNoLeftovers(t, out, "voltar-restore-")
}

func TestToImageRefusesUnmountableFS(t *testing.T) {
	st, b := storeTar(t, catalogtest.Tar(t, catalogtest.File("./a", 0o644, "a")))
	b.Manifest.Filesystems[0].Type = "ntfs"
	out := filepath.Join(t.TempDir(), "new.img")
	if _, err := restore.ToImage(context.Background(), st, b, out, restore.Options{MountDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "ntfs") {
		t.Errorf("ntfs: err = %v", err)
	}
	if !testutil.KernelHas("vfat") {
		b.Manifest.Filesystems[0].Type = "vfat"
		if _, err := restore.ToImage(context.Background(), st, b, out, restore.Options{MountDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "cannot mount vfat") {
			t.Errorf("vfat: err = %v", err)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("image created although the restore was refused")
	}
}

func TestToImageCanceledReleasesEverything(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4")
	src := t.TempDir()
	for i := range 30 {
		data := make([]byte, 256<<10)
		for j := range data {
			data[j] = byte(i ^ j ^ j>>9)
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprint(i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := local.New(t.TempDir())
	f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: t0, Compression: codec.Zstd,
		Volume0: manifest.Volume{Kind: "image", Name: "v", Group: "vg", Size: 64 << 20}},
		map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: "ext4"}})
	b := catalogtest.Resolve(t, st, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Interrupted halfway through reading the archive.
	cs := storetest.NewFaulty(st, &storetest.Fault{Op: storetest.OpGet, Cancel: cancel, AfterBytes: int64(b.Manifest.Filesystems[0].StoredBytes / 2)})
	out := filepath.Join(t.TempDir(), "new.img")
	_, err := restore.ToImage(ctx, cs, b, out, restore.Options{MountDir: t.TempDir()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if errors.Is(err, restore.ErrChecksum) {
		t.Errorf("a cancel reported as corruption: %v", err)
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Error("image left behind")
	}
	checkNoLeftovers(t, out, "voltar-restore-")
}

// loopDevice attaches a loop device over a new sparse file of size bytes.
func loopDevice(t *testing.T, size int64) string {
	t.Helper()
	testutil.RequireTools(t, "losetup")
	img := filepath.Join(t.TempDir(), "dev.img")
	if err := os.WriteFile(img, []byte("MARK"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}

func marked(t *testing.T, dev string) bool {
	b := make([]byte, 4)
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.ReadAt(b, 0)
	return string(b) == "MARK"
}

func TestToDevice(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "sfdisk", "mkfs.ext4")
	src := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "mbr", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Label: "root", Fill: fill("root")}}})
	st, b := imageBackup(t, src, nil)
	ctx := context.Background()

	small := loopDevice(t, b.Manifest.Volume.Size-1<<20)
	if _, err := restore.ToDevice(ctx, st, b, small, restore.Options{MountDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "needs") || strings.Contains(err.Error(), "partial restore") {
		t.Errorf("too small: err = %v", err)
	}
	if !marked(t, small) {
		t.Error("too small device was written")
	}

	dev := loopDevice(t, b.Manifest.Volume.Size)
	mnt := t.TempDir()
	testutil.Run(t, "mkfs.ext4", "-q", "-F", dev)
	testutil.Run(t, "mount", dev, mnt)
	_, err := restore.ToDevice(ctx, st, b, dev, restore.Options{MountDir: t.TempDir()})
	umount(t, mnt)
	if err == nil || !strings.Contains(err.Error(), "is mounted on "+mnt) {
		t.Errorf("mounted: err = %v", err)
	}

	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = restore.ToDevice(ctx, st, b, dev, restore.Options{MountDir: t.TempDir()})
	f.Close()
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("opened exclusively: err = %v", err)
	}

	// A mounted partition of the device (partx adds the partition node
	// that this kernel does not scan for by itself).
	if _, err := exec.LookPath("partx"); err == nil {
		cmd := exec.Command("sfdisk", "-q", "--no-reread", dev)
		cmd.Stdin = strings.NewReader("label: dos\nstart=2048, size=65536, type=83\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk: %v %s", err, out)
		}
		testutil.Run(t, "partx", "-a", dev)
		t.Cleanup(func() { exec.Command("partx", "-d", dev).Run() })
		testutil.Run(t, "mkfs.ext4", "-q", "-F", dev+"p1")
		testutil.Run(t, "mount", dev+"p1", mnt)
		_, err := restore.ToDevice(ctx, st, b, dev, restore.Options{MountDir: t.TempDir()})
		umount(t, mnt)
		testutil.Run(t, "partx", "-d", dev)
		if err == nil || !strings.Contains(err.Error(), dev+"p1 is mounted on "+mnt) {
			t.Errorf("partition mounted: err = %v", err)
		}
	} else if testutil.RequireAll() {
		t.Error("partx missing: mounted-partition refusal not tested")
	}

	if _, err := restore.ToDevice(ctx, st, b, src, restore.Options{MountDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("regular file: err = %v", err)
	}

	res, err := restore.ToDevice(ctx, st, b, dev, restore.Options{MountDir: t.TempDir()})
	if err != nil {
		t.Fatalf("ToDevice: %v\n%+v", err, res)
	}
	if got, want := sfdiskJSON(t, dev), sfdiskJSON(t, src); got != want {
		t.Errorf("sfdisk --json:\n%s\nwant:\n%s", got, want)
	}
	p := b.Manifest.Table.Partitions[0]
	if got, want := blkid(t, dev, p.Start, p.Size), blkid(t, src, p.Start, p.Size); got != want {
		t.Errorf("blkid %q, want %q", got, want)
	}
	compareTrees(t, mountRO(t, src, p.Start, p.Size, "ext4"), mountRO(t, dev, p.Start, p.Size, "ext4"))
	checkNoLeftovers(t, "voltar-restore-")
}

func TestToImageRawPartition(t *testing.T) {
	testutil.RequireTools(t, "sfdisk")
	raw := make([]byte, 4<<20)
	for i := range raw[:1<<20] {
		raw[i] = byte(i*31 + i>>11)
	}
	copy(raw[3<<20:], "tail data")
	st := local.New(t.TempDir())
	f := catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: t0,
		Volume0: manifest.Volume{Kind: "image", Name: "v", Group: "vg", Size: 8 << 20},
		Table: manifest.Table{Type: "mbr", SectorSize: 512, DiskID: "0x0badcafe", Partitions: []manifest.Partition{
			{Number: 1, Start: 1 << 20, Size: 4 << 20, Type: "0x07"}}},
		Archives: []catalogtest.Archive{{
			FS:   manifest.Filesystem{Name: "p1", Partition: 1, Type: "ntfs", Mode: manifest.ModeRaw, Archive: "p1.raw.zst"},
			Data: catalogtest.Compress(t, raw, codec.Zstd),
		}}}
	catalogtest.Write(t, st, f)
	b := catalogtest.Resolve(t, st, f)
	out := filepath.Join(t.TempDir(), "raw.img")
	res, err := restore.ToImage(context.Background(), st, b, out, restore.Options{MountDir: t.TempDir()})
	if err != nil {
		t.Fatalf("ToImage: %v", err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[1<<20:5<<20]) != string(raw) || !res.Filesystems[0].Verified {
		t.Error("raw partition content differs")
	}
	var text strings.Builder
	restore.WriteText(&text, res)
	if !strings.Contains(text.String(), "p1 (ntfs, raw bytes written back): 4.0 MiB written; sha256 verified") {
		t.Errorf("text of a raw restore:\n%s", text.String())
	}
	if js := testutil.Run(t, "sfdisk", "--json", out); !strings.Contains(js, `"id": "0x0badcafe"`) || !strings.Contains(js, `"type": "7"`) {
		t.Errorf("table: %s", js)
	}

	// A directory restore cannot take a raw partition.
	if _, err := restore.ToDir(context.Background(), st, b, t.TempDir(), restore.Options{Partition: "p1"}); err == nil ||
		!strings.Contains(err.Error(), "stored raw") {
		t.Errorf("ToDir raw: err = %v", err)
	}
}
