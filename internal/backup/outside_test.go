package backup_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/testutil"
	"voltar/internal/verify"
	"voltar/internal/volume/image"
)

// bootDisk is a disk image laid out by an sfdisk script, with ext4 in
// some partitions and random bytes written where a bootloader puts its
// own: the boot code of LBA 0 and the gaps around the partitions.
type bootDisk struct {
	mib    int
	script string
	ext4   [][2]int64 // start and size in bytes
	random [][2]int64 // offset and length of random bytes
}

func (d bootDisk) make(t *testing.T) string {
	img := filepath.Join(t.TempDir(), "boot.img")
	testutil.Run(t, "truncate", "-s", fmt.Sprintf("%dM", d.mib), img)
	testutil.Run(t, "sh", "-c", fmt.Sprintf("echo '%s' | sfdisk -q %s", d.script, img))
	for i, a := range d.ext4 {
		dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--offset", fmt.Sprint(a[0]), "--sizelimit", fmt.Sprint(a[1]), img))
		testutil.Run(t, "sh", "-c", fmt.Sprintf("mkfs.ext4 -q -F %[1]s && d=$(mktemp -d) && mount %[1]s $d && echo data%[2]d > $d/f && umount $d && rmdir $d; losetup -d %[1]s", dev, i+1))
	}
	for _, r := range d.random {
		testutil.Run(t, "sh", "-c", fmt.Sprintf("head -c %d /dev/urandom | dd of=%s bs=1 seek=%d conv=notrunc status=none", r[1], img, r[0]))
	}
	return img
}

// regions of an image's bytes that must come back as they were.
func sameBytes(t *testing.T, src, got string, regions [][2]int64) {
	t.Helper()
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(got)
	for _, r := range regions {
		if int64(len(b)) < r[0]+r[1] || !bytes.Equal(a[r[0]:r[0]+r[1]], b[r[0]:r[0]+r[1]]) {
			t.Errorf("bytes %d-%d differ from the source", r[0], r[0]+r[1])
		}
	}
}

func sfdiskDump(t *testing.T, p string) string {
	out := testutil.Run(t, "sfdisk", "-d", p)
	return strings.ReplaceAll(out, p, "DEV")
}

// readFile reads a file from the ext4 at off of img.
func readExt4File(t *testing.T, img string, off, size int64, name string) string {
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--read-only", "--offset", fmt.Sprint(off), "--sizelimit", fmt.Sprint(size), img))
	defer exec.Command("losetup", "-d", dev).Run()
	return testutil.Run(t, "sh", "-c", fmt.Sprintf("d=$(mktemp -d) && mount -o ro %s $d && cat $d/%s; umount $d; rmdir $d", dev, name))
}

const mib = 1 << 20

// The MBR disk of the issue: boot code, the gap GRUB's core.img lives in,
// a gap between the partitions and bytes after the last one.
var mbrBoot = bootDisk{mib: 64, script: `label: dos
start=2048, size=32768, type=83, bootable
start=43008, size=32768, type=83
`,
	ext4:   [][2]int64{{1 * mib, 16 * mib}, {21 * mib, 16 * mib}},
	random: [][2]int64{{0, 440}, {512, 100 << 10}, {17*mib + 333, 8000}, {50*mib + 7, 5000}},
}

// What must survive of mbrBoot: all but the partitions, and but bytes
// 444-445 (reserved, zero as sfdisk writes them): the table's bytes
// (440-511) are the restore's own, equal to the source's but for these.
var mbrOutside = [][2]int64{{0, 444}, {446, 1*mib - 446}, {17 * mib, 4 * mib}, {37 * mib, 27 * mib}}

// makeMBRBoot makes mbrBoot with 0xabcd in the MBR's reserved bytes
// 444-445: the restore must leave the table's bytes as sfdisk wrote them
// (zero there), not write the old ones over them.
func makeMBRBoot(t *testing.T) string {
	img := mbrBoot.make(t)
	testutil.Run(t, "sh", "-c", "printf '\\253\\315' | dd of="+img+" bs=1 seek=444 conv=notrunc status=none")
	return img
}

// tableOwned checks that bytes 444-445 of p are sfdisk's zeros.
func tableOwned(t *testing.T, p string) {
	t.Helper()
	b := make([]byte, 2)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, 444); err != nil || b[0] != 0 || b[1] != 0 {
		t.Errorf("%s: MBR bytes 444-445 are %x (%v), want the new table's zeros", p, b, err)
	}
}

func TestOutsideBytesMBR(t *testing.T) {
	testutil.RequireTools(t, "sfdisk", "mkfs.ext4", "losetup", "truncate", "dd", "head")
	e := newEnv(t)
	ctx := context.Background()
	img := makeMBRBoot(t)
	if src, _ := os.ReadFile(img); src[444] != 0xab || src[445] != 0xcd {
		t.Fatalf("source bytes 444-445: %x", src[444:446])
	}
	m := e.mustBackup(img, true)
	o := m.Outside
	if o == nil {
		t.Fatal("no outside object in the manifest")
	}
	if o.Archive != "outside.runs.zst" {
		t.Errorf("outside archive %q, want outside.runs.zst", o.Archive)
	}
	// Four runs, 4 KiB-aligned: LBA 0 up to the end of the 100 KiB after
	// it, the gap's bytes, the bytes after the last partition.
	want := []manifest.Run{{Offset: 0, Length: 104 << 10}, {Offset: 17 * mib, Length: 12 << 10}, {Offset: 50 * mib, Length: 8 << 10}}
	if fmt.Sprint(o.Runs) != fmt.Sprint(want) {
		t.Errorf("runs %v, want %v", o.Runs, want)
	}
	dir := filepath.Join(e.store.Root(), "testhost", m.ID)
	sums, _ := os.ReadFile(filepath.Join(dir, layout.Sums))
	if !strings.Contains(string(sums), o.SHA256+"  "+o.Archive+"\n") {
		t.Errorf("%s does not list %s:\n%s", layout.Sums, o.Archive, sums)
	}
	// By hand, as the README says: zstd -d, then dd each run.
	byHand := filepath.Join(t.TempDir(), "byhand.img")
	testutil.Run(t, "truncate", "-s", "64M", byHand)
	runs := filepath.Join(t.TempDir(), "outside.bin")
	testutil.Run(t, "sh", "-c", fmt.Sprintf("zstd -d -q < %s/%s > %s", dir, o.Archive, runs))
	for _, r := range o.Runs {
		testutil.Run(t, "sh", "-c", fmt.Sprintf("dd if=%s of=%s iflag=skip_bytes,count_bytes oflag=seek_bytes skip=%d count=%d seek=%d conv=notrunc status=none",
			runs, byHand, sumBefore(o.Runs, r), r.Length, r.Offset))
	}
	sameBytes(t, img, byHand, mbrOutside)

	b, err := catalog.Resolve(ctx, e.store, "testhost", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r := verify.Backup(ctx, e.store, b, nil); !r.OK || !hasObject(r, o.Archive) {
		t.Fatalf("verify: %+v", r)
	}
	out := filepath.Join(t.TempDir(), "restored.img")
	res, err := restore.ToImage(ctx, e.store, b, out, restore.Options{MountDir: t.TempDir()})
	if err != nil {
		t.Fatalf("%v\n%+v", err, res)
	}
	testutil.Run(t, "cmp", "-n", "440", img, out)
	sameBytes(t, img, out, mbrOutside)
	tableOwned(t, out)
	if src, got := sfdiskDump(t, img), sfdiskDump(t, out); src != got {
		t.Errorf("restored table differs:\n--- source\n%s--- restored\n%s", src, got)
	}
	for i, a := range mbrBoot.ext4 {
		if got := readExt4File(t, out, a[0], a[1], "f"); got != fmt.Sprintf("data%d\n", i+1) {
			t.Errorf("p%d: f holds %q", i+1, got)
		}
	}

	// Onto a device that held something else: the same bytes, and the
	// table is the one sfdisk wrote (here: equal to the source's).
	dev := loopDevice(t, 80*mib)
	testutil.Run(t, "sh", "-c", "head -c 2M /dev/urandom | dd of="+dev+" conv=notrunc status=none")
	if res, err := restore.ToDevice(ctx, e.store, b, dev, restore.Options{MountDir: t.TempDir()}); err != nil {
		t.Fatalf("ToDevice: %v\n%+v", err, res)
	}
	devCopy := filepath.Join(t.TempDir(), "dev.img")
	testutil.Run(t, "dd", "if="+dev, "of="+devCopy, "bs=1M", "count=64", "status=none")
	testutil.Run(t, "cmp", "-n", "440", img, devCopy)
	sameBytes(t, img, devCopy, mbrOutside)
	tableOwned(t, devCopy)
	if src, got := sfdiskDump(t, img), sfdiskDump(t, devCopy); src != got {
		t.Errorf("table on the device differs:\n--- source\n%s--- restored\n%s", src, got)
	}
}

func sumBefore(runs []manifest.Run, r manifest.Run) int64 {
	var n int64
	for _, q := range runs {
		if q == r {
			break
		}
		n += q.Length
	}
	return n
}

func hasObject(r verify.Result, name string) bool {
	for _, o := range r.Objects {
		if o.Name == name && o.SHA256 != "" {
			return true
		}
	}
	return false
}

// A GPT disk with a BIOS boot partition (GRUB's core.img on GPT): that
// partition holds no filesystem and is stored raw; the bytes in the gaps
// and the protective MBR's boot code are in the outside object; the
// table is sfdisk's.
func TestOutsideBytesGPT(t *testing.T) {
	testutil.RequireTools(t, "sfdisk", "mkfs.ext4", "losetup", "truncate", "dd", "head", "cmp")
	e := newEnv(t)
	ctx := context.Background()
	d := bootDisk{mib: 64, script: `label: gpt
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name=bios
start=8192, size=32768, type=L, name=root
`,
		ext4:   [][2]int64{{4 * mib, 16 * mib}},
		random: [][2]int64{{0, 440}, {1 * mib, 700 << 10}, {100 << 10, 3000}, {3*mib + 5, 9000}, {30 * mib, 4096}},
	}
	img := d.make(t)
	m := e.mustBackup(img, true)
	if m.Filesystems[0].Mode != manifest.ModeRaw {
		t.Errorf("BIOS boot partition: %+v, want stored raw", m.Filesystems[0])
	}
	if m.Outside == nil {
		t.Fatal("no outside object")
	}
	for _, r := range m.Outside.Runs {
		if r.Offset < 2*mib && r.Offset+r.Length > 1*mib {
			t.Errorf("run %v lies in the BIOS boot partition, which is stored raw", r)
		}
	}
	b, err := catalog.Resolve(ctx, e.store, "testhost", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "restored.img")
	if res, err := restore.ToImage(ctx, e.store, b, out, restore.Options{MountDir: t.TempDir()}); err != nil {
		t.Fatalf("%v\n%+v", err, res)
	}
	// Boot code, the gap after the entries, the BIOS boot partition, the
	// gap before root, the space after it up to the backup array.
	sameBytes(t, img, out, [][2]int64{{0, 440}, {34 * 512, 4*mib - 34*512}, {20 * mib, 44*mib - 33*512}})
	if src, got := sfdiskDump(t, img), sfdiskDump(t, out); src != got {
		t.Errorf("restored table differs:\n--- source\n%s--- restored\n%s", src, got)
	}
	if got := readExt4File(t, out, 4*mib, 16*mib, "f"); got != "data1\n" {
		t.Errorf("root: f holds %q", got)
	}
}

// With recipients, the outside object is age-encrypted like every other.
func TestOutsideBytesEncrypted(t *testing.T) {
	testutil.RequireTools(t, "sfdisk", "mkfs.ext4", "losetup", "age", "age-keygen", "zstd")
	e := newEnv(t)
	ctx := context.Background()
	key, pub := ageKey(t, t.TempDir(), "key.txt")
	rcpt, err := crypt.NewRecipients([]string{pub}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := crypt.LoadIdentities(key)
	if err != nil {
		t.Fatal(err)
	}
	img := makeMBRBoot(t)
	v, err := image.Resolve(img, true)
	if err != nil {
		t.Fatal(err)
	}
	o := e.options("run-age", nil)
	o.Recipients = rcpt
	m, err := backup.Volume(ctx, v, o)
	if err != nil {
		t.Fatal(err)
	}
	if m.Outside == nil || m.Outside.Archive != "outside.runs.zst.age" {
		t.Fatalf("outside %+v, want outside.runs.zst.age", m.Outside)
	}
	p := filepath.Join(e.store.Root(), "testhost", m.ID, m.Outside.Archive)
	data, _ := os.ReadFile(p)
	if !bytes.HasPrefix(data, []byte("age-encryption.org/v1\n")) {
		t.Errorf("%s does not start with an age header", m.Outside.Archive)
	}
	src, _ := os.ReadFile(img)
	if bytes.Contains(data, src[512:512+64]) {
		t.Errorf("%s holds the gap's bytes in plaintext", m.Outside.Archive)
	}
	plain := testutil.Run(t, "sh", "-c", fmt.Sprintf("age -d -i %s < %s | zstd -d -q | head -c 440 | sha256sum", key, p))
	want := testutil.Run(t, "sh", "-c", "head -c 440 "+img+" | sha256sum")
	if plain != want {
		t.Errorf("age -d | zstd -d does not start with the boot code")
	}
	b, err := catalog.Resolve(ctx, e.store, "testhost", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r := verify.Backup(ctx, e.store, b, ids); !r.OK || !hasObject(r, m.Outside.Archive) {
		t.Fatalf("verify: %+v", r)
	}
	out := filepath.Join(t.TempDir(), "restored.img")
	if res, err := restore.ToImage(ctx, e.store, b, out, restore.Options{MountDir: t.TempDir(), Identities: ids}); err != nil {
		t.Fatalf("%v\n%+v", err, res)
	}
	sameBytes(t, img, out, mbrOutside)
}

// A whole-disk filesystem has nothing outside it.
func TestNoOutsideWithoutTable(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 16, Fill: fillData}}})
	m := e.mustBackup(img, true)
	if m.Outside != nil {
		t.Errorf("outside %+v on a volume without a table", m.Outside)
	}
}

// loopDevice attaches a loop device over a new sparse file of size bytes.
func loopDevice(t *testing.T, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "dev.img")
	testutil.Run(t, "truncate", "-s", fmt.Sprint(size), img)
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}
