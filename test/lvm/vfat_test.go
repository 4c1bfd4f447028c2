//go:build uml

package lvm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"voltar/internal/manifest"
	"voltar/internal/testutil"
)

// An instance booted with UEFI: an EFI system partition (vfat) before the
// root filesystem. The host kernel here has no vfat driver, so only the
// guest, which loads the module, exercises vfat as files: backed up file by
// file (not raw), extracted with GNU tar, and restored by voltar into a new
// image whose vfat partition is re-created and mounted.
func TestVfatSystemPartition(t *testing.T) {
	testutil.RequireTools(t, "mkfs.vfat")
	v := newVoltar(t, config{})
	const lv = "volume-00000005"
	dev := lvcreate(t, v.vg, lv, "-L", "96M")
	parts := partition(t, dev, 40, 48)
	esp := loop(t, dev, parts[0][0], parts[0][1])
	testutil.Run(t, "mkfs.vfat", "-F", "32", "-n", "ESP", esp)
	root := loop(t, dev, parts[1][0], parts[1][1])
	mkfs(t, "ext4", root, "root")

	m := mount(t, esp)
	writeFile(t, m, "EFI/BOOT/BOOTX64.EFI", 300<<10)
	writeFile(t, m, "EFI/debian/grubx64.efi", 1<<20)
	writeFile(t, m, "EFI/debian/Long File Name With Spaces.cfg", 777)
	writeFile(t, m, "startup.nsh", 0)
	// vfat keeps mtimes in 2 s steps; give the files a fixed one.
	when := time.Date(2026, 11, 20, 10, 30, 44, 0, time.UTC)
	filepath.Walk(m, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			os.Chtimes(p, when, when)
		}
		return nil
	})
	staging := t.TempDir()
	tree(t, staging, "before", "root")
	copyTree(t, staging, mount(t, root))
	testutil.Run(t, "sync")

	v.mustRun(0, "backup", v.vg+"/"+lv)
	v.assertClean()
	folder, man := v.onlyBackup(lv)
	if len(man.Filesystems) != 2 {
		t.Fatalf("manifest filesystems %+v, want p1 vfat and p2 ext4", man.Filesystems)
	}
	p1 := man.Filesystems[0]
	if p1.Name != "p1" || p1.Type != "vfat" || p1.Mode != manifest.ModeFiles || p1.Archive != "p1.tar.zst" || p1.Label != "ESP" {
		t.Fatalf("p1 in the manifest: %+v; want vfat labelled ESP, backed up as files to p1.tar.zst", p1)
	}
	if p1.Files != 4 {
		t.Errorf("p1: %d files archived, want 4", p1.Files)
	}
	testutil.CompareTrees(t, m, extract(t, folder, "p1.tar.zst"), nil)
	testutil.CompareTrees(t, staging, extract(t, folder, "p2.tar.zst"), nil)

	// voltar restore re-creates the table and both filesystems.
	img := filepath.Join(t.TempDir(), "restored.img")
	v.mustRun(0, "restore", v.vg+"/"+lv+"/latest", "--to-image", img)
	v.assertClean()
	rp1 := loop(t, img, parts[0][0], parts[0][1])
	if got := strings.TrimSpace(testutil.Run(t, "blkid", "-o", "value", "-s", "TYPE", rp1)); got != "vfat" {
		t.Errorf("restored p1 is %q, want vfat", got)
	}
	if got := strings.TrimSpace(testutil.Run(t, "blkid", "-o", "value", "-s", "LABEL", rp1)); got != "ESP" {
		t.Errorf("restored p1 label %q, want ESP", got)
	}
	testutil.CompareTrees(t, m, mount(t, rp1), nil)
}
