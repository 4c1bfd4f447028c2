package restore

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/manifest"
	"voltar/internal/testutil"
)

func TestSfdiskScript(t *testing.T) {
	const mib = 1 << 20
	mbr := manifest.Table{Type: "mbr", SectorSize: 512, DiskID: "0x1234abcd", Partitions: []manifest.Partition{
		{Number: 1, Start: mib, Size: 10 * mib, Type: "0x83", Bootable: true},
		{Number: 3, Start: 11 * mib, Size: 10 * mib, Type: "0x0c"},
		{Number: 5, Start: 23 * mib, Size: 5 * mib, Type: "0x83", Logical: true},
		{Number: 6, Start: 29 * mib, Size: 5 * mib, Type: "0x82", Logical: true},
	}}
	got, err := sfdiskScript(mbr, 512)
	if err != nil {
		t.Fatal(err)
	}
	want := `label: dos
label-id: 0x1234abcd
unit: sectors

part1 : start=2048, size=20480, type=83, bootable
part2 : start=45056, size=24576, type=05
part3 : start=22528, size=20480, type=0c
part5 : start=47104, size=10240, type=83
part6 : start=59392, size=10240, type=82
`
	if got != want {
		t.Errorf("mbr script:\n%s\nwant:\n%s", got, want)
	}
	// sfdisk takes it and makes the table asked for.
	testutil.RequireTools(t, "sfdisk")
	img := filepath.Join(t.TempDir(), "mbr.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 40*mib); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", "-q", img)
	cmd.Stdin = strings.NewReader(got)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	js := testutil.Run(t, "sfdisk", "--json", img)
	for _, want := range []string{`"id": "0x1234abcd"`, `"node": "` + img + `5",` + "\n" + `            "start": 47104,`, `"type": "82"`, `"bootable": true`} {
		if !strings.Contains(js, want) {
			t.Errorf("sfdisk --json lacks %q:\n%s", want, js)
		}
	}

	gpt := manifest.Table{Type: "gpt", DiskID: "01234567-89ab-cdef-0123-456789abcdef", Partitions: []manifest.Partition{
		{Number: 2, Start: mib, Size: 4096, Type: "21686148-6449-6e6f-744e-656564454649", UUID: "11111111-2222-3333-4444-555555555555", Name: `odd "name"`, Bootable: true},
	}}
	got, err = sfdiskScript(gpt, 512)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "label: gpt\nlabel-id: 01234567-89ab-cdef-0123-456789abcdef\nunit: sectors\n") ||
		!strings.Contains(got, `part2 : start=2048, size=8, type=21686148-6449-6e6f-744e-656564454649, uuid=11111111-2222-3333-4444-555555555555, attrs="LegacyBIOSBootable"`) ||
		strings.Contains(got, "odd") {
		t.Errorf("gpt script:\n%s", got)
	}
	gpt.Partitions[0].Start = 34 * 512
	if got, _ := sfdiskScript(gpt, 512); !strings.Contains(got, "first-lba: 34\n") {
		t.Errorf("partition at sector 34, script:\n%s", got)
	}
	gpt.Partitions[0].Start = 1<<20 + 512
	if _, err := sfdiskScript(gpt, 4096); err == nil {
		t.Error("misaligned partition accepted")
	}
	if _, err := sfdiskScript(manifest.Table{Type: "none"}, 512); err == nil {
		t.Error("table none accepted")
	}
}

func TestMkfsCommand(t *testing.T) {
	for _, tc := range []struct {
		fs   manifest.Filesystem
		want string
	}{
		{manifest.Filesystem{Type: "ext4", UUID: "u", Label: "root"}, "mkfs.ext4 -q -F -U u -L root /dev/loop9"},
		{manifest.Filesystem{Type: "ext3"}, "mkfs.ext3 -q -F /dev/loop9"},
		{manifest.Filesystem{Type: "xfs", UUID: "u", Label: "data"}, "mkfs.xfs -q -f -m uuid=u -L data /dev/loop9"},
		{manifest.Filesystem{Type: "btrfs", UUID: "u"}, "mkfs.btrfs -q -f -U u /dev/loop9"},
		{manifest.Filesystem{Type: "vfat", UUID: "ABCD-1234", Label: "EFI"}, "mkfs.vfat -i ABCD1234 -n EFI /dev/loop9"},
		{manifest.Filesystem{Type: "swap", UUID: "u", Label: "sw"}, "mkswap -U u -L sw /dev/loop9"},
	} {
		got, err := mkfsCommand(tc.fs, "/dev/loop9")
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("mkfsCommand(%+v) = %q, %v; want %q", tc.fs, got, err, tc.want)
		}
	}
	if _, err := mkfsCommand(manifest.Filesystem{Name: "p2", Type: "ntfs"}, "/dev/x"); err == nil {
		t.Error("ntfs accepted")
	}
}

// The kernel here cannot mount vfat, so restoring vfat files is refused
// before anything is written (see TestToImageRefusesUnmountableFS); the
// mkfs part is tested on its own: same serial and label.
func TestMkfsVfatKeepsSerialAndLabel(t *testing.T) {
	testutil.RequireTools(t, "mkfs.vfat", "blkid")
	img := filepath.Join(t.TempDir(), "fat.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	args, err := mkfsCommand(manifest.Filesystem{Type: "vfat", UUID: "1A2B-3C4D", Label: "EFI"}, img)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, args[0], args[1:]...)
	out := testutil.Run(t, "blkid", "-p", "-o", "export", img)
	for _, want := range []string{"TYPE=vfat", "UUID=1A2B-3C4D", "LABEL=EFI"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("blkid lacks %s:\n%s", want, out)
		}
	}
}
