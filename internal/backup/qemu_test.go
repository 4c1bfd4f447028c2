package backup_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/restore"
	"voltar/internal/testutil"
	"voltar/internal/volume/image"
)

// bootMarker is what the guest's init prints on the serial console.
const bootMarker = "VOLTAR-BOOT-MARKER-7f3a"

// guestKernel is the Debian kernel the guests boot (linux-image-amd64).
func guestKernel(t *testing.T) string {
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(ks) == 0 {
		testutil.Unavailable(t, "no kernel in /boot (apt-get install linux-image-amd64)")
	}
	return ks[len(ks)-1]
}

// guestInitrd is an initramfs whose init prints bootMarker and powers off.
func guestInitrd(t *testing.T, dir string) string {
	root := filepath.Join(dir, "initrd")
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	testutil.Run(t, "cp", "/bin/busybox", filepath.Join(root, "bin", "busybox"))
	init := "#!/bin/busybox sh\n/bin/busybox echo " + bootMarker + "\n/bin/busybox poweroff -f\n"
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(init), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "initrd.img")
	testutil.Run(t, "sh", "-c", fmt.Sprintf("cd %s && find . | cpio -o -H newc --quiet | gzip > %s", root, out))
	return out
}

// grubDisk is a BIOS-booting disk: GRUB's boot.img in LBA 0, its core.img
// (with the config that boots the kernel built in) in the gap after LBA 0
// on MBR or in a BIOS boot partition on GPT, and an ext4 with /boot.
// core.img is placed by hand as grub-bios-setup would: grub-install
// cannot find the disk of a partition mapped by a loop offset.
func grubDisk(t *testing.T, dir, label string) string {
	testutil.RequireTools(t, "qemu-system-x86_64", "grub-mkimage", "cpio", "busybox", "gzip", "sfdisk", "mkfs.ext4", "losetup")
	if _, err := os.Stat("/usr/lib/grub/i386-pc/boot.img"); err != nil {
		testutil.Unavailable(t, "no GRUB for BIOS (apt-get install grub-pc-bin)")
	}
	kernel := guestKernel(t)
	initrd := guestInitrd(t, dir)
	img := filepath.Join(dir, "disk.img")
	testutil.Run(t, "truncate", "-s", "64M", img)
	if label == "uefi" {
		return uefiDisk(t, dir, img, kernel, initrd)
	}
	var script, part, mods string
	var fsStart, coreLBA int64
	switch label {
	case "mbr":
		script = "label: dos\nstart=2048, size=81920, type=83, bootable\n"
		part, mods, fsStart, coreLBA = "msdos1", "part_msdos", 2048, 1
	case "gpt":
		script = "label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name=bios\nstart=4096, size=81920, type=L, name=boot\n"
		part, mods, fsStart, coreLBA = "gpt2", "part_gpt", 4096, 2048
	}
	testutil.Run(t, "sh", "-c", fmt.Sprintf("echo '%s' | sfdisk -q %s", script, img))
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--offset", fmt.Sprint(fsStart*512), "--sizelimit", fmt.Sprint(81920*512), img))
	testutil.Run(t, "sh", "-c", fmt.Sprintf("mkfs.ext4 -q -F %[1]s && d=$(mktemp -d) && mount %[1]s $d && mkdir $d/boot && cp %[2]s $d/boot/vmlinuz && cp %[3]s $d/boot/initrd.img; rc=$?; umount $d; rmdir $d; losetup -d %[1]s; exit $rc", dev, kernel, initrd))

	cfg := filepath.Join(dir, "early.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("set root=(hd0,%s)\nlinux /boot/vmlinuz console=ttyS0 panic=1 quiet\ninitrd /boot/initrd.img\nboot\n", part)), 0o644)
	core := filepath.Join(dir, "core.img")
	testutil.Run(t, "grub-mkimage", "-O", "i386-pc", "-c", cfg, "-p", "(hd0,"+part+")/boot/grub", "-o", core, "biosdisk", mods, "ext2", "linux", "boot", "normal", "echo")
	boot, err := os.ReadFile("/usr/lib/grub/i386-pc/boot.img")
	if err != nil {
		t.Fatal(err)
	}
	c, err := os.ReadFile(core)
	if err != nil {
		t.Fatal(err)
	}
	// boot.img loads the sector at 0x5c (its "kernel sector"), diskboot
	// (core.img's first sector) the blocklist at its end: the rest of
	// core.img, starting one sector later. grub-mkimage set its length.
	binary.LittleEndian.PutUint64(boot[0x5c:], uint64(coreLBA))
	binary.LittleEndian.PutUint64(c[512-12:], uint64(coreLBA+1))
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(boot[:440], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(c, coreLBA*512); err != nil {
		t.Fatal(err)
	}
	return img
}

// OVMF's firmware code and the template of its variable store.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

// uefiDisk makes img a UEFI disk: GPT, a vfat ESP with GRUB as the
// fallback loader /EFI/BOOT/BOOTX64.EFI (no NVRAM entry needed), and an
// ext4 with /boot.
func uefiDisk(t *testing.T, dir, img, kernel, initrd string) string {
	testutil.RequireTools(t, "mkfs.vfat", "mmd", "mcopy")
	for _, f := range []string{ovmfCode, ovmfVars, "/usr/lib/grub/x86_64-efi/linux.mod"} {
		if _, err := os.Stat(f); err != nil {
			testutil.Unavailable(t, "no %s (apt-get install ovmf grub-efi-amd64-bin)", f)
		}
	}
	testutil.Run(t, "truncate", "-s", "96M", img)
	testutil.Run(t, "sh", "-c", "echo 'label: gpt\nstart=2048, size=65536, type=U, name=esp\nstart=67584, size=81920, type=L, name=boot' | sfdisk -q "+img)
	cfg := filepath.Join(dir, "efi.cfg")
	os.WriteFile(cfg, []byte("set root=(hd0,gpt2)\nlinux /boot/vmlinuz console=ttyS0 panic=1 quiet\ninitrd /boot/initrd.img\nboot\n"), 0o644)
	efi := filepath.Join(dir, "bootx64.efi")
	testutil.Run(t, "grub-mkimage", "-O", "x86_64-efi", "-c", cfg, "-p", "(hd0,gpt2)/boot/grub", "-o", efi, "part_gpt", "ext2", "fat", "linux", "boot", "normal", "echo")
	esp := filepath.Join(dir, "esp.img")
	testutil.Run(t, "truncate", "-s", "32M", esp)
	testutil.Run(t, "mkfs.vfat", "-F", "16", esp)
	testutil.Run(t, "mmd", "-i", esp, "::/EFI", "::/EFI/BOOT")
	testutil.Run(t, "mcopy", "-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI")
	testutil.Run(t, "dd", "if="+esp, "of="+img, "bs=1M", "seek=1", "conv=notrunc", "status=none")
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--offset", fmt.Sprint(67584*512), "--sizelimit", fmt.Sprint(81920*512), img))
	testutil.Run(t, "sh", "-c", fmt.Sprintf("mkfs.ext4 -q -F %[1]s && d=$(mktemp -d) && mount %[1]s $d && mkdir $d/boot && cp %[2]s $d/boot/vmlinuz && cp %[3]s $d/boot/initrd.img; rc=$?; umount $d; rmdir $d; losetup -d %[1]s; exit $rc", dev, kernel, initrd))
	return img
}

// boots starts a PC under TCG on disk (BIOS, or OVMF with uefi) and
// reports whether the guest printed bootMarker within the time it may
// take.
func boots(t *testing.T, disk string, uefi bool) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"-machine", "pc", "-m", "256", "-display", "none",
		"-serial", "stdio", "-monitor", "none", "-no-reboot", "-drive", "file=" + disk + ",format=raw,if=ide"}
	if uefi {
		vars := filepath.Join(t.TempDir(), "vars.fd")
		testutil.Run(t, "cp", ovmfVars, vars)
		args = append(args, "-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode, "-drive", "if=pflash,format=raw,file="+vars)
		args[1], args[3] = "q35", "512"
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if !strings.Contains(out.String(), bootMarker) {
		t.Logf("%s did not boot (%v); console:\n%s", disk, err, out.String())
		return false
	}
	return true
}

// A BIOS/MBR disk with GRUB, a GPT disk with a BIOS boot partition and a
// UEFI disk (OVMF, GRUB on a vfat ESP) boot, are backed up, restored into
// an image (and, MBR, onto a loop device), and boot again. Under TCG:
// slow, so not with -short.
func TestRestoredDiskBoots(t *testing.T) {
	if testing.Short() {
		t.Skip("boots virtual machines under TCG")
	}
	for _, label := range []string{"mbr", "gpt", "uefi"} {
		t.Run(label, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			img := grubDisk(t, t.TempDir(), label)
			uefi := label == "uefi"
			if !boots(t, img, uefi) {
				t.Fatal("the source disk does not boot: the test's disk is wrong")
			}
			v, err := image.Resolve(img, true)
			if err != nil {
				t.Fatal(err)
			}
			m, err := backup.Volume(ctx, v, e.options("run1", nil))
			if err != nil {
				t.Fatal(err)
			}
			b, err := catalog.Resolve(ctx, e.store, "testhost", m.ID)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "restored.img")
			if res, err := restore.ToImage(ctx, e.store, b, out, restore.Options{MountDir: t.TempDir()}); err != nil {
				t.Fatalf("%v\n%+v", err, res)
			}
			if !boots(t, out, uefi) {
				t.Error("the restored image does not boot")
			}
			if label != "mbr" {
				return
			}
			dev := loopDevice(t, 64<<20)
			if res, err := restore.ToDevice(ctx, e.store, b, dev, restore.Options{MountDir: t.TempDir()}); err != nil {
				t.Fatalf("ToDevice: %v\n%+v", err, res)
			}
			if !boots(t, dev, uefi) {
				t.Error("the device restored onto does not boot")
			}
		})
	}
}
