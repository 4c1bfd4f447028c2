package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Part describes one partition of a test image.
type Part struct {
	FS      string // ext4, xfs, btrfs, vfat, swap, or "" to leave it empty
	SizeMiB int
	Label   string
	// Fill writes the partition's content into its mounted root.
	Fill func(t testing.TB, root string)
}

// Image describes a test disk image.
type Image struct {
	Table string // "mbr", "gpt" or "none" (one filesystem on the whole image)
	Parts []Part
}

// MakeImage creates the image under dir with real mkfs tools and fills each
// filesystem through a loop mount. It returns the image path.
func MakeImage(t testing.TB, dir string, spec Image) string {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "sfdisk", "losetup", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat", "mkswap")
	img := filepath.Join(dir, "disk.img")
	total := 2 // MiB for the table and GPT backup
	for _, p := range spec.Parts {
		total += p.SizeMiB
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(total)<<20); err != nil {
		t.Fatal(err)
	}
	type area struct{ off, size int64 }
	var areas []area
	switch spec.Table {
	case "none":
		if len(spec.Parts) != 1 {
			t.Fatal("MakeImage: table none takes exactly one part")
		}
		if err := os.Truncate(img, int64(spec.Parts[0].SizeMiB)<<20); err != nil {
			t.Fatal(err)
		}
		areas = append(areas, area{0, int64(spec.Parts[0].SizeMiB) << 20})
	case "mbr", "gpt":
		label := map[string]string{"mbr": "dos", "gpt": "gpt"}[spec.Table]
		var script strings.Builder
		fmt.Fprintf(&script, "label: %s\n", label)
		start := int64(1) << 20
		for i, p := range spec.Parts {
			size := int64(p.SizeMiB) << 20
			typ := "L"
			if p.FS == "swap" {
				typ = "S"
			} else if p.FS == "vfat" {
				typ = map[string]string{"dos": "b", "gpt": "U"}[label]
			}
			name := ""
			if label == "gpt" {
				name = fmt.Sprintf(", name=part%d", i+1)
			}
			fmt.Fprintf(&script, "start=%d, size=%d, type=%s%s\n", start/512, size/512, typ, name)
			areas = append(areas, area{start, size})
			start += size
		}
		cmd := exec.Command("sfdisk", "--quiet", img)
		cmd.Stdin = strings.NewReader(script.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk: %v\n%s", err, out)
		}
	default:
		t.Fatalf("MakeImage: unknown table %q", spec.Table)
	}
	for i, p := range spec.Parts {
		if p.FS == "" {
			continue
		}
		a := areas[i]
		dev := strings.TrimSpace(Run(t, "losetup", "--find", "--show", "--offset", fmt.Sprint(a.off), "--sizelimit", fmt.Sprint(a.size), img))
		func() {
			defer DetachLoop(dev)
			var args []string
			switch p.FS {
			case "ext4":
				args = []string{"mkfs.ext4", "-q", "-F"}
				if p.Label != "" {
					args = append(args, "-L", p.Label)
				}
			case "xfs":
				args = []string{"mkfs.xfs", "-q", "-f"}
				if p.Label != "" {
					args = append(args, "-L", p.Label)
				}
			case "btrfs":
				args = []string{"mkfs.btrfs", "-q", "-f"}
			case "vfat":
				args = []string{"mkfs.vfat"}
				if p.Label != "" {
					args = append(args, "-n", p.Label)
				}
			case "swap":
				args = []string{"mkswap"}
			default:
				t.Fatalf("MakeImage: unknown fs %q", p.FS)
			}
			Run(t, args[0], append(args[1:], dev)...)
			if p.Fill == nil || p.FS == "swap" {
				return
			}
			if p.FS == "vfat" && !KernelHas("vfat") {
				// Fill through mtools when the kernel cannot mount FAT.
				RequireTools(t, "mcopy")
				stage := t.TempDir()
				p.Fill(t, stage)
				entries, _ := os.ReadDir(stage)
				args := []string{"-s", "-p", "-m", "-i", dev}
				for _, e := range entries {
					args = append(args, filepath.Join(stage, e.Name()))
				}
				Run(t, "mcopy", append(args, "::/")...)
				return
			}
			mnt := t.TempDir()
			Run(t, "mount", dev, mnt)
			defer func() {
				if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v %s", mnt, err, out)
				}
			}()
			p.Fill(t, mnt)
		}()
	}
	return img
}

// MountRO mounts partition area [off, off+size) of img read-only at a new
// temporary directory and unmounts it when the test ends.
func MountRO(t testing.TB, img string, off, size int64) string {
	t.Helper()
	dev := strings.TrimSpace(Run(t, "losetup", "--find", "--show", "--read-only", "--offset", fmt.Sprint(off), "--sizelimit", fmt.Sprint(size), img))
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "ro", dev, mnt).CombinedOutput(); err != nil {
		DetachLoop(dev)
		t.Fatalf("mount %s: %v %s", dev, err, out)
	}
	t.Cleanup(func() {
		exec.Command("umount", mnt).Run()
		DetachLoop(dev)
	})
	return mnt
}

// KernelHas reports whether the running kernel can mount fs.
func KernelHas(fs string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(strings.TrimPrefix(line, "nodev")) == fs {
			return true
		}
	}
	return false
}

// DetachLoop detaches a loop device a test attached with losetup and waits
// (up to 5 s) until the kernel let it go: a device whose filesystem was
// just unmounted is freed asynchronously, and a test that checks for
// leftover loop devices right after must not find the fixture's own.
// DetachLoopOf detaches dev only while it is still bound to backing: a
// cleanup that runs after the test detached the device itself must not
// detach the device of another test (other packages run at the same
// time) that was given the same number since.
func DetachLoopOf(dev, backing string) {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil || strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)") != backing {
		return
	}
	DetachLoop(dev)
}

func DetachLoop(dev string) {
	exec.Command("losetup", "-d", dev).Run()
	backing := filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file")
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(backing); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
