package backup_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/disk"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/testutil"
	"voltar/internal/volume/image"
)

// extlinuxDisk is an MBR disk with extlinux installed for real in p1's
// /boot/syslinux (its boot sector holds the sectors of ldlinux.sys), and a
// p2 whose boot sector (the first bytes of the ext4's unused boot block)
// and the MBR's boot code carry LILO's signature.
func extlinuxDisk(t *testing.T) string {
	testutil.RequireTools(t, "extlinux", "sfdisk", "mkfs.ext4", "losetup")
	img := bootDisk{mib: 40, script: `label: dos
start=2048, size=32768, type=83, bootable
start=34816, size=32768, type=83
`, ext4: [][2]int64{{1 * mib, 16 * mib}, {17 * mib, 16 * mib}}}.make(t)
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--offset", fmt.Sprint(1*mib), "--sizelimit", fmt.Sprint(16*mib), img))
	testutil.Run(t, "sh", "-c", fmt.Sprintf("d=$(mktemp -d) && mount %[1]s $d && mkdir -p $d/boot/syslinux && extlinux --install $d/boot/syslinux >/dev/null; rc=$?; umount $d; rmdir $d; losetup -d %[1]s; exit $rc", dev))
	lilo := `printf '\372\353\041\001\264\001LILO' | dd of=` + img + ` bs=1 conv=notrunc status=none seek=`
	testutil.Run(t, "sh", "-c", lilo+"0")
	testutil.Run(t, "sh", "-c", lilo+fmt.Sprint(17*mib))
	return img
}

func TestBootloaderWarnings(t *testing.T) {
	e := newEnv(t)
	img := extlinuxDisk(t)
	m := e.mustBackup(img, true)
	for i, want := range []string{"syslinux/extlinux (/boot/syslinux/ldlinux.sys)", "LILO in its boot sector"} {
		fs := m.Filesystems[i]
		if fs.Mode != manifest.ModeFiles || len(fs.Warnings) != 1 || !strings.Contains(fs.Warnings[0], want) || !strings.HasSuffix(fs.Warnings[0], disk.ReinstallAdvice) {
			t.Errorf("%s: mode %s, warnings %q; want files and one saying %q ... %q", fs.Name, fs.Mode, fs.Warnings, want, disk.ReinstallAdvice)
		}
	}
	if len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "LILO in the MBR") {
		t.Errorf("volume warnings %q, want LILO in the MBR", m.Warnings)
	}
	if got := m.AllWarnings(); len(got) != 3 || !strings.HasPrefix(got[1], "p1: ") {
		t.Errorf("AllWarnings = %q", got)
	}
}

// With boot_partitions: raw the filesystems the bootloaders point into are
// stored raw and come back byte for byte, ldlinux.sys on its blocks.
func TestBootPartitionsRaw(t *testing.T) {
	testutil.RequireTools(t, "cmp")
	e := newEnv(t)
	img := extlinuxDisk(t)
	v, err := image.Resolve(img, true)
	if err != nil {
		t.Fatal(err)
	}
	// In a sandbox, the guest finds syslinux and archives nothing.
	for _, isolation := range []string{backup.IsolationKernel, backup.IsolationSandbox} {
		t.Run(isolation, func(t *testing.T) {
			if isolation == backup.IsolationSandbox {
				requireSandbox(t)
			}
			o := e.options(backup.NewRunID(time.Now()), nil)
			o.BootRaw = true
			o.Isolation = isolation
			m, err := backup.Volume(context.Background(), v, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, fs := range m.Filesystems {
				if fs.Mode != manifest.ModeRaw || !strings.Contains(fs.Reason, "boot_partitions: raw") || len(fs.Warnings) != 0 {
					t.Errorf("%s: mode %s (%s), warnings %q; want raw for its bootloader", fs.Name, fs.Mode, fs.Reason, fs.Warnings)
				}
			}
			b, err := catalog.Resolve(context.Background(), e.store, "testhost", m.ID)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "restored.img")
			if res, err := restore.ToImage(context.Background(), e.store, b, out, restore.Options{MountDir: t.TempDir()}); err != nil {
				t.Fatalf("%v\n%+v", err, res)
			}
			testutil.Run(t, "cmp", img, out)
		})
	}
}
