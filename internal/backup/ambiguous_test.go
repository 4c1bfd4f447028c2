package backup_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/manifest"
	"voltar/internal/testutil"
)

// A partition that once was swap and now holds a guest's whole disk (an
// MBR with ext4 inside; the old swap signature at 4 KiB survives) is not
// taken for swap and skipped: it is stored raw, said to be ambiguous, and
// comes back byte for byte.
func TestAmbiguousPartitionStoredRaw(t *testing.T) {
	testutil.RequireTools(t, "mkswap", "sfdisk", "mkfs.ext4", "cmp", "dd")
	e := newEnv(t)
	dir := t.TempDir()
	img := testutil.MakeImage(t, dir, testutil.Image{Table: "mbr", Parts: []testutil.Part{
		{FS: "ext4", SizeMiB: 32, Fill: fillData},
		{FS: "swap", SizeMiB: 64},
	}})
	// The guest disk, written over the old swap area.
	const p2 = 33 << 20 // 1 MiB of table, then 32 MiB of p1
	nested := filepath.Join(t.TempDir(), "nested.img")
	testutil.Run(t, "truncate", "-s", "64M", nested)
	testutil.Run(t, "sh", "-c", fmt.Sprintf("echo 'label: dos\nstart=2048, type=83' | sfdisk -q %s", nested))
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-E", "offset=1048576", nested, "60M")
	testutil.Run(t, "sh", "-c", fmt.Sprintf("dd if=%s of=%s bs=1M skip=1 seek=%d conv=notrunc,sparse status=none", nested, img, p2>>20+1))
	testutil.Run(t, "sh", "-c", fmt.Sprintf("dd if=%s of=%s bs=512 count=1 seek=%d conv=notrunc status=none", nested, img, p2/512))

	m := e.mustBackup(img, true)
	fs := m.Filesystems[1]
	if fs.Mode != manifest.ModeRaw || !strings.Contains(fs.Reason, "swap, mbr partition table") {
		t.Fatalf("p2 = %+v; want stored raw as ambiguous", fs)
	}

	out := e.restoreImage(m)
	testutil.Run(t, "cmp", "-i", fmt.Sprint(p2)+":"+fmt.Sprint(p2), "-n", fmt.Sprint(64<<20), img, out)
}
