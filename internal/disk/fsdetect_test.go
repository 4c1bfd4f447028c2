package disk_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"voltar/internal/disk"
	"voltar/internal/testutil"
)

// TestDetectFSMatchesBlkid makes each filesystem with its real mkfs in an
// image file and checks DetectFS against `blkid -p`.
func TestDetectFSMatchesBlkid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sizeMB int64
		cmd    []string // the image path is appended
		stdin  string
	}{
		{"ext2", 16, []string{"mkfs.ext2", "-q", "-F", "-L", "old-two", "-U", "6f8f3c38-7a1b-4f0e-9a59-0e3b4a8b1c01"}, ""},
		{"ext3", 16, []string{"mkfs.ext3", "-q", "-F", "-L", "three", "-U", "6f8f3c38-7a1b-4f0e-9a59-0e3b4a8b1c02"}, ""},
		{"ext4", 16, []string{"mkfs.ext4", "-q", "-F", "-L", "root", "-U", "6f8f3c38-7a1b-4f0e-9a59-0e3b4a8b1c03"}, ""},
		{"ext4 without journal", 16, []string{"mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-L", "nojournal"}, ""},
		{"ext3 with ext4 features", 16, []string{"mkfs.ext3", "-q", "-F", "-O", "extent"}, ""},
		{"xfs", 320, []string{"mkfs.xfs", "-q", "-f", "-L", "data", "-m", "uuid=1b4e28ba-2fa1-11d2-883f-0016d3cca427"}, ""},
		{"btrfs", 128, []string{"mkfs.btrfs", "-q", "-f", "-L", "pool", "-U", "2c1a9f5e-1f0e-4b8e-9a3e-5d1f7d2b7c10"}, ""},
		{"fat12", 4, []string{"mkfs.vfat", "-F", "12", "-n", "SMALL", "-i", "1234ABCD"}, ""},
		{"fat16", 32, []string{"mkfs.vfat", "-F", "16", "-n", "BOOT", "-i", "0000BEEF"}, ""},
		{"fat32", 64, []string{"mkfs.vfat", "-F", "32", "-n", "EFI SYSTEM", "-i", "DEADBEEF"}, ""},
		{"fat32 without label", 64, []string{"mkfs.vfat", "-F", "32"}, ""},
		{"swap", 16, []string{"mkswap", "-L", "swap0", "-U", "7f0d1a7e-9d1b-4f6e-8d3e-0b1a2c3d4e5f"}, ""},
		{"ntfs", 32, []string{"mkntfs", "-F", "-f", "-q", "-L", "Windows Data"}, ""},
		{"luks1", 32, []string{"cryptsetup", "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--key-file", "-"}, "secret"},
		{"luks2", 32, []string{"cryptsetup", "luksFormat", "-q", "--type", "luks2", "--label", "vault", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", "-"}, "secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.RequireTools(t, tc.cmd[0])
			img := newImage(t, tc.sizeMB<<20)
			cmd := exec.Command(tc.cmd[0], append(tc.cmd[1:], img)...)
			cmd.Stdin = strings.NewReader(tc.stdin)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(tc.cmd, " "), err, out)
			}
			checkAgainstBlkid(t, img, img, 0)
		})
	}
}

// checkAgainstBlkid compares DetectFS on the bytes at off in r with what
// blkid says about dev.
func checkAgainstBlkid(t *testing.T, img, dev string, off int64) {
	t.Helper()
	want := blkidExport(t, dev)
	f, size := openImage(t, img)
	if dev != img {
		d, dsize := openImage(t, dev)
		f, size, off = d, dsize, 0
	}
	got, err := disk.DetectFS(f, off, size-off)
	if err != nil {
		t.Fatalf("DetectFS: %v", err)
	}
	if got.Type != want["TYPE"] || got.UUID != want["UUID"] || got.Label != want["LABEL"] {
		t.Errorf("DetectFS = %+v\nblkid says TYPE=%q UUID=%q LABEL=%q", got, want["TYPE"], want["UUID"], want["LABEL"])
	}
	if got.Ambiguous != "" {
		t.Errorf("a freshly made %s is ambiguous: %s", got.Type, got.Ambiguous)
	}
}

// LVM refuses plain files, so the PV goes on a loop device.
func TestDetectFSLVM2(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "pvcreate")
	img := newImage(t, 16<<20)
	l := attach(t, img, 0, 0, false)
	cmd := exec.Command("pvcreate", "-q", "-y", "--config", `devices { filter = [ "a|^/dev/loop|", "r|.*|" ] obtain_device_list_from_udev = 0 } global { use_lvmetad = 0 }`, l.Path)
	cmd.Env = append(os.Environ(), "DM_DISABLE_UDEV=1", "LVM_SUPPRESS_FD_WARNINGS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		testutil.Unavailable(t, "pvcreate on %s failed (no device-mapper?): %v\n%s", l.Path, err, out)
	}
	checkAgainstBlkid(t, img, l.Path, 0)
}

func TestDetectFSUnknownAndSmall(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"zeros", make([]byte, 1<<20)},
		{"tiny", []byte("XFSB")},
		{"empty", nil},
		{"text", bytes.Repeat([]byte("not a filesystem "), 10000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := disk.DetectFS(bytes.NewReader(tc.data), 0, int64(len(tc.data)))
			if err != nil || got != (disk.FS{}) {
				t.Errorf("DetectFS = %+v, %v; want nothing found", got, err)
			}
		})
	}
}

// DetectFS reads relative to the partition start and never past its end.
func TestDetectFSAtOffset(t *testing.T) {
	testutil.RequireTools(t, "mkfs.ext4")
	const off = 3 << 20
	img := newImage(t, 20<<20)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-L", "inner", "-E", "offset=3145728", img, "16M")
	f, _ := openImage(t, img)
	got, err := disk.DetectFS(f, off, 16<<20)
	if err != nil || got.Type != "ext4" || got.Label != "inner" {
		t.Fatalf("DetectFS at offset = %+v, %v", got, err)
	}
	// A window too small for the superblock finds nothing.
	got, err = disk.DetectFS(f, off, 1500)
	if err != nil || got.Type != "" {
		t.Fatalf("DetectFS in 1500 bytes = %+v, %v; want nothing", got, err)
	}
}

// Content that is not certainly one thing is Ambiguous, so the backup
// stores it raw instead of skipping it or reading it as the wrong thing.
func TestDetectFSAmbiguous(t *testing.T) {
	testutil.RequireTools(t, "mkswap", "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "sfdisk")
	for _, tc := range []struct {
		name string
		size int64
		make func(t *testing.T, img string)
		want string // in Ambiguous
	}{
		{"old swap under a disk image", 64 << 20, func(t *testing.T, img string) {
			// A partition once used as swap, now a guest's whole disk:
			// its MBR and first partition start below, the old swap
			// signature at 4 KiB survives.
			testutil.Run(t, "mkswap", img)
			sfdisk(t, img, "label: dos\nstart=2048, type=83\n")
			testutil.Run(t, "mkfs.ext4", "-q", "-F", "-E", "offset=1048576", img, "60M")
		}, "swap, mbr partition table"},
		{"disk image only", 64 << 20, func(t *testing.T, img string) {
			sfdisk(t, img, "label: gpt\nstart=2048, type=L\n")
		}, "gpt partition table"},
		{"swap larger than its partition", 16 << 20, func(t *testing.T, img string) {
			big := newImage(t, 32<<20)
			testutil.Run(t, "mkswap", big)
			copyHead(t, big, img, 8192)
		}, "more than the"},
		{"ext4 superblock checksum", 16 << 20, func(t *testing.T, img string) {
			testutil.Run(t, "mkfs.ext4", "-q", "-F", img)
			flip(t, img, 1024+0x78) // in the volume name
		}, "ext superblock checksum"},
		{"xfs superblock checksum", 320 << 20, func(t *testing.T, img string) {
			testutil.Run(t, "mkfs.xfs", "-q", "-f", img)
			flip(t, img, 108) // in the label
		}, "xfs superblock checksum"},
		{"btrfs superblock checksum", 128 << 20, func(t *testing.T, img string) {
			testutil.Run(t, "mkfs.btrfs", "-q", "-f", img)
			flip(t, img, 0x10000+0x12b) // in the label
		}, "btrfs superblock checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := newImage(t, tc.size)
			tc.make(t, img)
			f, size := openImage(t, img)
			got, err := disk.DetectFS(f, 0, size)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(got.Ambiguous, tc.want) {
				t.Errorf("DetectFS = %+v; want Ambiguous mentioning %q", got, tc.want)
			}
		})
	}
}

func flip(t *testing.T, img string, off int64) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0x20
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func copyHead(t *testing.T, from, to string, n int64) {
	t.Helper()
	b := make([]byte, n)
	src, _ := openImage(t, from)
	if _, err := src.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(to, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := dst.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}
