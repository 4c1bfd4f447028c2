package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"voltar/internal/archive"
	"voltar/internal/disk"
	"voltar/internal/fsattr"
	"voltar/internal/manifest"
	"voltar/internal/testutil"
)

// An ext4 filesystem made without the project feature is archived without
// asking for project ids (archive.Options.NoProjectIDs), one made with it
// is not, and only ext2/3/4 whose superblock was read can be told so. (This
// machine's kernel cannot mount ext4 with the project feature: no
// CONFIG_QFMT_V2. The superblock is read from a real mkfs.ext4 -O project,
// and the archive of an xfs with project ids is in internal/restore.)
func TestNoProjectIDs(t *testing.T) {
	for _, tc := range []struct {
		fs   manifest.Filesystem
		want bool
	}{
		{manifest.Filesystem{Type: "ext4", Mkfs: &manifest.MkfsParams{Features: []string{"has_journal", "extent"}}}, true},
		{manifest.Filesystem{Type: "ext3", Mkfs: &manifest.MkfsParams{}}, true},
		{manifest.Filesystem{Type: "ext4", Mkfs: &manifest.MkfsParams{Features: []string{"extent", "project"}}}, false},
		{manifest.Filesystem{Type: "ext4"}, false}, // superblock not read
		{manifest.Filesystem{Type: "xfs", Mkfs: &manifest.MkfsParams{}}, false},
		{manifest.Filesystem{Type: "btrfs", Mkfs: &manifest.MkfsParams{}}, false},
	} {
		if got := noProjectIDs(&tc.fs); got != tc.want {
			t.Errorf("%s %+v: noProjectIDs %v, want %v", tc.fs.Type, tc.fs.Mkfs, got, tc.want)
		}
	}

	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "chattr", "mount", "umount")
	for _, tc := range []struct {
		name    string
		mkfs    []string
		project bool
	}{
		{"plain", nil, false},
		{"project", []string{"-O", "project,quota"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "fs.img")
			testutil.Run(t, "truncate", "-s", "64M", img)
			testutil.Run(t, "mkfs.ext4", append(append([]string{"-q", "-F"}, tc.mkfs...), img)...)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			mp, err := disk.ReadMkfsParams(f, 0, 64<<20, "ext4")
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			fs := &manifest.Filesystem{Type: "ext4", Mkfs: &manifest.MkfsParams{Features: mp.Features}}
			if got := noProjectIDs(fs); got == tc.project {
				t.Fatalf("features %v: noProjectIDs %v", mp.Features, got)
			}
			if tc.project {
				return
			}
			mnt := filepath.Join(dir, "mnt")
			os.Mkdir(mnt, 0o755)
			testutil.Run(t, "mount", "-o", "loop", img, mnt)
			t.Cleanup(func() { testutil.Run(t, "umount", mnt) })
			if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("in project 42\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			testutil.Run(t, "chattr", "+d", filepath.Join(mnt, "f"))
			var tarball bytes.Buffer
			if _, err := archive.Write(context.Background(), mnt, &tarball, archive.Options{NoProjectIDs: noProjectIDs(fs)}); err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(&tarball)
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					t.Fatal("no entry ./f in the archive")
				}
				if err != nil {
					t.Fatal(err)
				}
				if h.Name != "./f" {
					continue
				}
				// The inode flags are still read.
				if got := h.PAXRecords[fsattr.PAXFlags]; got != "nodump" {
					t.Errorf("./f: %s %q, want nodump", fsattr.PAXFlags, got)
				}
				return
			}
		})
	}
}
