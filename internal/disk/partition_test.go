package disk_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"voltar/internal/disk"
	"voltar/internal/testutil"
)

// Scripts for sfdisk; the fuzz corpus is generated from the same ones.
var sfdiskScripts = []struct {
	name   string
	size   int64
	script string
}{
	{"mbr-two-primaries", 4 << 20, `label: dos
label-id: 0x1234abcd
start=2048, size=2048, type=83, bootable
start=4096, size=2048, type=7
`},
	{"mbr-extended-logicals", 8 << 20, `label: dos
label-id: 0xdeadbeef
start=2048, size=2048, type=83
start=4096, size=10240, type=5
start=6144, size=2048, type=83
start=10240, size=2048, type=82
`},
	{"gpt-three-named", 8 << 20, `label: gpt
label-id: 7156B2A6-F20A-6541-BD38-5488A0EAC351
start=2048, size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root fs"
start=4096, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI", attrs="LegacyBIOSBootable RequiredPartition NoBlockIOProtocol GUID:60,63"
start=6144, size=4096, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name="swäp"
`},
}

func TestReadTableMatchesSfdisk(t *testing.T) {
	for _, tc := range sfdiskScripts {
		t.Run(tc.name, func(t *testing.T) {
			img := newImage(t, tc.size)
			sfdisk(t, img, tc.script)
			want := sfdiskJSON(t, img)
			f, size := openImage(t, img)
			got, err := disk.ReadTable(f, size)
			if err != nil {
				t.Fatalf("ReadTable: %v", err)
			}
			compareSfdisk(t, img, got, want)
		})
	}
}

func compareSfdisk(t *testing.T, img string, got *disk.Table, want sfdiskTable) {
	t.Helper()
	pt := want.PartitionTable
	wantType := map[string]string{"dos": "mbr", "gpt": "gpt"}[pt.Label]
	if got.Type != wantType || got.SectorSize != pt.SectorSize || !strings.EqualFold(got.DiskID, pt.ID) {
		t.Errorf("table = %s, %d-byte sectors, id %s; sfdisk says %s, %d, %s", got.Type, got.SectorSize, got.DiskID, pt.Label, pt.SectorSize, pt.ID)
	}
	if len(got.Warnings) > 0 {
		t.Errorf("unexpected warnings: %q", got.Warnings)
	}
	var wantParts []disk.Partition
	for _, p := range pt.Partitions {
		n := partNumber(t, img, p.Node)
		wp := disk.Partition{
			Number: n,
			Start:  p.Start * int64(pt.SectorSize),
			Size:   p.Size * int64(pt.SectorSize),
			Name:   p.Name,
		}
		if pt.Label == "dos" {
			if p.Type == "5" || p.Type == "f" || p.Type == "85" {
				continue // the extended container holds no filesystem
			}
			wp.Type = fmt.Sprintf("0x%02s", p.Type)
			wp.UUID = fmt.Sprintf("%s-%02x", strings.TrimPrefix(pt.ID, "0x"), n)
			wp.Bootable = p.Bootable
			wp.Logical = n >= 5
		} else {
			wp.Type = strings.ToLower(p.Type)
			wp.UUID = strings.ToLower(p.UUID)
			wp.Bootable = strings.Contains(p.Attrs, "LegacyBIOSBootable")
			wp.Attrs = sfdiskAttrs(t, p.Attrs)
		}
		wantParts = append(wantParts, wp)
	}
	if fmt.Sprint(got.Partitions) != fmt.Sprint(wantParts) {
		t.Errorf("partitions:\n got %+v\nwant %+v", got.Partitions, wantParts)
	}
}

// A GPT written for 4096-byte sectors (a 4Kn disk, or a volume copied from
// one) is found by trying both sector sizes.
func TestReadTable4KSectors(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "losetup", "sfdisk")
	img := newImage(t, 64<<20)
	// This sfdisk has no --sector-size option: give it a loop device
	// with 4096-byte logical sectors.
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--sector-size", "4096", img))
	t.Cleanup(func() { testutil.DetachLoopOf(dev, img) })
	sfdisk(t, dev, `label: gpt
start=256, size=1024, name="first"
start=2048, size=4096, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name="second"
`)
	want := sfdiskJSON(t, dev)
	if err := exec.Command("losetup", "-d", dev).Run(); err != nil {
		t.Fatal(err)
	}
	f, size := openImage(t, img)
	got, err := disk.ReadTable(f, size)
	if err != nil {
		t.Fatalf("ReadTable: %v", err)
	}
	compareSfdisk(t, img, got, want)
}

func TestReadTableGPTRecoversFromBackup(t *testing.T) {
	tc := sfdiskScripts[2]
	for _, damage := range []struct {
		name   string
		offset int64 // inside the primary GPT
		want   string
	}{
		{"header CRC", 512 + 16, "header CRC32"},
		{"signature", 512, "no \"EFI PART\" signature"},
		{"entries", 1024 + 40, "partition entries CRC32"},
	} {
		t.Run(damage.name, func(t *testing.T) {
			img := newImage(t, tc.size)
			sfdisk(t, img, tc.script)
			want := sfdiskJSON(t, img)
			corrupt(t, img, damage.offset)
			f, size := openImage(t, img)
			got, err := disk.ReadTable(f, size)
			if err != nil {
				t.Fatalf("ReadTable: %v", err)
			}
			if len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], damage.want) || !strings.Contains(got.Warnings[0], "backup") {
				t.Errorf("warnings = %q, want one about %q and the backup", got.Warnings, damage.want)
			}
			got.Warnings = nil
			compareSfdisk(t, img, got, want)
		})
	}
	t.Run("both damaged", func(t *testing.T) {
		img := newImage(t, tc.size)
		sfdisk(t, img, tc.script)
		corrupt(t, img, 512+16)
		corrupt(t, img, tc.size-512+16)
		f, size := openImage(t, img)
		_, err := disk.ReadTable(f, size)
		var te *disk.TableError
		if !errors.As(err, &te) {
			t.Fatalf("ReadTable error = %v, want *TableError", err)
		}
		for _, want := range []string{"primary header at LBA 1: header CRC32", "backup header at LBA 16383: header CRC32", "4096-byte sectors"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	})
}

// corrupt flips the bits of one byte of the file.
func corrupt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestReadTableRejectsBadMBR(t *testing.T) {
	const size = 1 << 20
	const sectors = size / 512
	for _, tc := range []struct {
		name    string
		build   func(img []byte)
		noTable bool   // want ErrNoTable
		reason  string // else want a *TableError containing this
	}{
		{"no signature", func(img []byte) {}, true, ""},
		{"empty table", func(img []byte) { putMBR(img, 0x11223344) }, true, ""},
		{"boot code, not a table", func(img []byte) {
			for i := range 510 {
				img[i] = byte(i*7 + 3)
			}
			putMBR(img, 0)
		}, false, "boot indicator"},
		{"past the end", func(img []byte) {
			putMBR(img, 1, mbrEntry{0, 0x83, 64, 100}, mbrEntry{0, 0x83, 1024, sectors})
		}, false, fmt.Sprintf("partition 2 ends at byte %d past the end of the volume (%d bytes)", (1024+sectors)*512, size)},
		{"starts at 0", func(img []byte) {
			putMBR(img, 1, mbrEntry{0, 0x83, 0, 100})
		}, false, "partition 1 starts at byte 0"},
		{"overlap", func(img []byte) {
			putMBR(img, 1, mbrEntry{0, 0x83, 64, 100}, mbrEntry{0, 0x83, 128, 100})
		}, false, "partition 2 (bytes 65536-116736) overlaps partition 1"},
		{"primary inside extended", func(img []byte) {
			putMBR(img, 1, mbrEntry{0, 0x05, 64, 1000}, mbrEntry{0, 0x83, 128, 100})
		}, false, "overlaps partition 1"},
		{"EBR loop", func(img []byte) {
			putMBR(img, 1, mbrEntry{0, 0x05, 64, 1000})
			putMBR(img[64*512:], 0, mbrEntry{0, 0x83, 2, 10}, mbrEntry{0, 0x05, 100, 50})
			// The second EBR links to itself.
			putMBR(img[164*512:], 0, mbrEntry{0, 0x83, 2, 10}, mbrEntry{0, 0x05, 100, 50})
		}, false, "EBR chain loops back to sector 164"},
		{"logical outside extended", func(img []byte) {
			putMBR(img, 1, mbrEntry{0, 0x05, 64, 100})
			putMBR(img[64*512:], 0, mbrEntry{0, 0x83, 2, 1000})
		}, false, "logical partition 5 (bytes 33792-545792) lies outside its extended partition 1"},
		{"EBR without signature in the chain", func(img []byte) {
			putMBR(img, 1, mbrEntry{0, 0x05, 64, 1000})
			putMBR(img[64*512:], 0, mbrEntry{0, 0x83, 2, 10}, mbrEntry{0, 0x05, 100, 50})
		}, false, "EBR at sector 164 has no boot signature"},
		{"protective MBR without GPT", func(img []byte) {
			putMBR(img, 0, mbrEntry{0, 0xee, 1, sectors - 1})
		}, false, "protective MBR but no valid GPT (512-byte sectors: primary header at LBA 1: no \"EFI PART\" signature; backup header at LBA 2047: no \"EFI PART\" signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := make([]byte, size)
			tc.build(img)
			_, err := disk.ReadTable(bytes.NewReader(img), size)
			if tc.noTable {
				if !errors.Is(err, disk.ErrNoTable) {
					t.Fatalf("err = %v, want ErrNoTable", err)
				}
				return
			}
			var te *disk.TableError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want *TableError", err)
			}
			if !strings.Contains(te.Reason, tc.reason) {
				t.Errorf("reason = %q, want it to contain %q", te.Reason, tc.reason)
			}
		})
	}
}

func TestReadTableEmptyExtended(t *testing.T) {
	img := make([]byte, 1<<20)
	putMBR(img, 0xabcdef01, mbrEntry{0x80, 0x83, 2048 - 1024, 512}, mbrEntry{0, 0x0f, 1600, 100})
	got, err := disk.ReadTable(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	want := []disk.Partition{{Number: 1, Start: 1024 * 512, Size: 512 * 512, Type: "0x83", UUID: "abcdef01-01", Bootable: true}}
	if fmt.Sprint(got.Partitions) != fmt.Sprint(want) {
		t.Errorf("partitions = %+v, want %+v", got.Partitions, want)
	}
}

// A filesystem made on the whole volume has a boot sector ending in 0x55AA
// (FAT, NTFS): that is not a partition table.
func TestReadTableWholeDiskBootSector(t *testing.T) {
	for _, tc := range []struct {
		name, fs string
		mkfs     []string
	}{
		{"fat16", "vfat", []string{"mkfs.vfat", "-F", "16", "-n", "WHOLE"}},
		{"fat32", "vfat", []string{"mkfs.vfat", "-F", "32", "-n", "WHOLE32"}},
		{"ntfs", "ntfs", []string{"mkntfs", "-F", "-f", "-q", "-L", "whole"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.RequireTools(t, tc.mkfs[0])
			img := newImage(t, 64<<20)
			testutil.Run(t, tc.mkfs[0], append(tc.mkfs[1:], img)...)
			f, size := openImage(t, img)
			if _, err := disk.ReadTable(f, size); !errors.Is(err, disk.ErrNoTable) {
				t.Fatalf("ReadTable error = %v, want ErrNoTable", err)
			}
			fs, err := disk.DetectFS(f, 0, size)
			if err != nil || fs.Type != tc.fs {
				t.Fatalf("DetectFS = %+v, %v; want type %s", fs, err, tc.fs)
			}
		})
	}
}

// sfdiskAttrs parses sfdisk's attrs ("RequiredPartition LegacyBIOSBootable
// GUID:60,63") into the GPT attribute bits.
func sfdiskAttrs(t testing.TB, s string) uint64 {
	var a uint64
	for _, f := range strings.Fields(s) {
		switch f {
		case "RequiredPartition":
			a |= 1 << 0
		case "NoBlockIOProtocol":
			a |= 1 << 1
		case "LegacyBIOSBootable":
			a |= 1 << 2
		default:
			bits, ok := strings.CutPrefix(f, "GUID:")
			if !ok {
				t.Fatalf("sfdisk attrs %q: unknown %q", s, f)
			}
			for _, b := range strings.Split(bits, ",") {
				var n uint
				fmt.Sscan(b, &n)
				a |= 1 << n
			}
		}
	}
	return a
}
