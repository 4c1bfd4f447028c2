package backup_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/restore"
	"voltar/internal/testutil"
	"voltar/internal/volume/image"
)

// A restored image has the source's partition table, as sfdisk reads it: a
// GPT made for 4096-byte sectors is written for 4096-byte sectors, GPT
// attribute bits survive, and an MBR extended container keeps its extent
// (not just the span of its logical partitions).
func TestRestoredTableMatchesSource(t *testing.T) {
	testutil.RequireTools(t, "sfdisk", "mkfs.ext4", "losetup")
	for _, tc := range []struct {
		name   string
		sector int
		mib    int
		script string
		fs     [][2]int64 // start and size in bytes of each ext4
	}{
		{"gpt-4k-sectors-attrs", 4096, 80, `label: gpt
start=256, size=8192, type=L, name="root", attrs="RequiredPartition NoBlockIOProtocol GUID:60,63"
start=8448, size=8192, type=L, attrs="LegacyBIOSBootable"
`, [][2]int64{{1 << 20, 32 << 20}, {33 << 20, 32 << 20}}},
		{"mbr-wide-extended", 512, 100, `label: dos
start=2048, size=32768, type=83
start=40960, size=131072, type=5
start=43008, size=32768, type=83
`, [][2]int64{{1 << 20, 16 << 20}, {43008 * 512, 16 << 20}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			img := filepath.Join(t.TempDir(), "disk.img")
			testutil.Run(t, "truncate", "-s", fmt.Sprintf("%dM", tc.mib), img)
			// A 4Kn disk: the table is written through a loop device
			// with 4096-byte logical sectors, as on such a disk.
			onLoop := func(p, cmd string) string {
				return testutil.Run(t, "sh", "-c", fmt.Sprintf("l=$(losetup -b %d -f --show %s) && { %s; rc=$?; losetup -d $l; exit $rc; }", tc.sector, p, cmd))
			}
			onLoop(img, fmt.Sprintf("echo '%s' | sfdisk -q $l", tc.script))
			for _, a := range tc.fs {
				dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--offset", fmt.Sprint(a[0]), "--sizelimit", fmt.Sprint(a[1]), img))
				testutil.Run(t, "sh", "-c", "mkfs.ext4 -q -F "+dev+" && mkdir -p /tmp/voltar-geom.$$ && mount "+dev+" /tmp/voltar-geom.$$ && echo data > /tmp/voltar-geom.$$/f && umount /tmp/voltar-geom.$$ && rmdir /tmp/voltar-geom.$$; losetup -d "+dev)
			}
			v, err := image.Resolve(img, true)
			if err != nil {
				t.Fatal(err)
			}
			m, err := backup.Volume(context.Background(), v, e.options("run1", nil))
			if err != nil {
				t.Fatal(err)
			}
			if m.Table.SectorSize != tc.sector {
				t.Errorf("manifest sector size %d, want %d", m.Table.SectorSize, tc.sector)
			}
			b, err := catalog.Resolve(context.Background(), e.store, "testhost", m.ID)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "restored.img")
			if _, err := restore.ToImage(context.Background(), e.store, b, out, restore.Options{MountDir: t.TempDir()}); err != nil {
				t.Fatal(err)
			}
			dump := func(p string) string {
				d := onLoop(p, "sfdisk -d $l | sed \"s|$l|DEV|\"")
				return d
			}
			if src, got := dump(img), dump(out); src != got {
				t.Errorf("restored table differs:\n--- source\n%s--- restored\n%s", src, got)
			}
		})
	}
}
