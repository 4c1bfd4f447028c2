package backup_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/catalog"
	"voltar/internal/testutil"
)

// The source size a backup reports is the data read, not the apparent size
// of sparse files: a 40 MiB disk holding a 4 GiB sparse file with 8 KiB of
// data reports well under 40 MiB, in the manifest (data_bytes), the backup
// summary and `voltar list`. source_bytes keeps the apparent sizes, which
// verify compares with the archive.
func TestSourceSizeIsDataNotApparent(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "mbr", Parts: []testutil.Part{
		{FS: "ext4", SizeMiB: 38, Fill: func(t testing.TB, root string) {
			f, err := os.Create(filepath.Join(root, "sparse.img"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, off := range []int64{0, 4<<30 - 4096} {
				if _, err := f.WriteAt(bytes.Repeat([]byte{0xab}, 4096), off); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(root, "plain"), bytes.Repeat([]byte{1}, 100000), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}})
	m := e.mustBackup(img, true)
	fs := m.Filesystems[0]
	if fs.SourceBytes != 4<<30+100000 {
		t.Errorf("source_bytes = %d, want the apparent sizes %d", fs.SourceBytes, int64(4<<30+100000))
	}
	if fs.DataBytes != 8192+100000 {
		t.Errorf("data_bytes = %d, want %d: the data without holes", fs.DataBytes, 8192+100000)
	}
	st, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.DataBytes(); got >= st.Size() {
		t.Errorf("the backup's source size is %d, more than the %d-byte disk", got, st.Size())
	}
	c, err := catalog.List(t.Context(), e.store, "testhost", "")
	if err != nil {
		t.Fatal(err)
	}
	var list strings.Builder
	if err := c.WriteText(&list); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(list.String(), "GiB") {
		t.Errorf("voltar list shows the apparent size:\n%s", list.String())
	}
}
