package local_test

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"voltar/internal/store/local"
	"voltar/internal/testutil"
)

// Usage says what df says of the same filesystem: on ext4 with 5% of its
// blocks reserved for root, those blocks are neither used nor available.
func TestUsageMatchesDf(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "df")
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-m", "5", img)
	mnt := t.TempDir()
	testutil.Run(t, "mount", "-o", "loop", img, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	// Some data, so used is well above the filesystem's own metadata.
	if err := os.WriteFile(filepath.Join(mnt, "data"), make([]byte, 64<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "sync", "-f", mnt)
	os.Mkdir(filepath.Join(mnt, "store"), 0o700)

	u, err := local.New(filepath.Join(mnt, "store")).Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(testutil.Run(t, "df", "--block-size=1", "--output=size,used,avail,pcent", mnt))
	if len(f) != 8 {
		t.Fatalf("df output %q", f)
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(strings.TrimSuffix(s, "%"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	size, used, avail, pcent := num(f[4]), num(f[5]), num(f[6]), num(f[7])
	if u.Size != size || u.Used != used || u.Avail != avail {
		t.Errorf("Usage = %+v; df says size %d, used %d, avail %d", u, size, used, avail)
	}
	// df rounds Use% up.
	if got := int64(math.Ceil(u.UsedPercent())); got != pcent {
		t.Errorf("UsedPercent = %.2f (%d%% rounded up), df says %d%%", u.UsedPercent(), got, pcent)
	}
	if total := float64(u.Size-u.Avail) * 100 / float64(u.Size); int64(math.Ceil(total)) == pcent {
		t.Logf("note: size minus available gives the same rounded figure here (%.2f%%)", total)
	}
}
