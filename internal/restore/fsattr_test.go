package restore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/fsattr"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
)

// Inode flags, xfs project ids and extent size hints survive a backup and
// a restore: ext4 chattr +i +a +d +A, xfs chproj, +P and an extent size
// hint, btrfs +C (nocow). Immutable and append-only files are still
// written completely (the flags are set last).
func TestRestoreKeepsInodeAttributes(t *testing.T) {
	testutil.RequireTools(t, "chattr", "lsattr", "xfs_io")
	for _, tc := range []struct {
		fs    string
		setup func(t *testing.T, root string)
		want  map[string]fsattr.Attrs
	}{
		{"ext4", func(t *testing.T, root string) {
			write(t, root, "immutable", "locked\n")
			write(t, root, "append.log", "line 1\n")
			write(t, root, "nodump", "skip me in dump(8)\n")
			os.Mkdir(filepath.Join(root, "noatime-dir"), 0o755)
			write(t, root, "noatime-dir/f", "x")
			testutil.Run(t, "chattr", "+i", filepath.Join(root, "immutable"))
			testutil.Run(t, "chattr", "+a", filepath.Join(root, "append.log"))
			testutil.Run(t, "chattr", "+d", filepath.Join(root, "nodump"))
			testutil.Run(t, "chattr", "+A", filepath.Join(root, "noatime-dir"))
		}, map[string]fsattr.Attrs{
			"immutable":   {Flags: fsattr.FlagImmutable},
			"append.log":  {Flags: fsattr.FlagAppend},
			"nodump":      {Flags: fsattr.FlagNoDump},
			"noatime-dir": {Flags: fsattr.FlagNoAtime},
		}},
		{"xfs", func(t *testing.T, root string) {
			os.Mkdir(filepath.Join(root, "project"), 0o755)
			testutil.Run(t, "xfs_io", "-c", "chproj 42", filepath.Join(root, "project"))
			testutil.Run(t, "chattr", "+P", filepath.Join(root, "project"))
			write(t, root, "project/f", "in project 42\n")
			f := filepath.Join(root, "hinted")
			write(t, root, "hinted", "")
			testutil.Run(t, "xfs_io", "-c", "extsize 1m", f)
			write(t, root, "hinted", "data after the hint\n")
		}, map[string]fsattr.Attrs{
			"project":   {Flags: fsattr.FlagProjInherit, ProjID: 42},
			"project/f": {ProjID: 42},
			"hinted":    {ExtSize: 1 << 20},
		}},
		{"btrfs", func(t *testing.T, root string) {
			write(t, root, "db.img", "")
			testutil.Run(t, "chattr", "+C", filepath.Join(root, "db.img"))
			write(t, root, "db.img", strings.Repeat("page", 4096))
		}, map[string]fsattr.Attrs{
			"db.img": {Flags: fsattr.FlagNoCOW},
		}},
	} {
		t.Run(tc.fs, func(t *testing.T) {
			size := map[string]int64{"ext4": 64, "xfs": 320, "btrfs": 128}[tc.fs]
			src := mountFS(t, tc.fs, size)
			tc.setup(t, src)
			st := local.New(t.TempDir())
			f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC), Compression: codec.Zstd},
				map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: tc.fs}})
			b := catalogtest.Resolve(t, st, f)
			dst := mountFS(t, tc.fs, size)
			res, err := restore.ToDir(context.Background(), st, b, dst, restore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if w := res.Filesystems[0].Warnings; len(w) > 0 {
				t.Errorf("restore warned: %q", w)
			}
			for rel, want := range tc.want {
				if got := attrsOf(t, filepath.Join(dst, rel)); got != want {
					t.Errorf("%s: restored %+v (%s), source %+v", rel, got, fsattr.FlagsText(got.Flags), attrsOf(t, filepath.Join(src, rel)))
				}
			}
			// Written in full before the flags were set.
			for rel := range tc.want {
				a, b := readOrDir(t, filepath.Join(src, rel)), readOrDir(t, filepath.Join(dst, rel))
				if a != b {
					t.Errorf("%s: restored content differs", rel)
				}
			}
		})
	}
}

func write(t *testing.T, root, rel, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, rel), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func attrsOf(t *testing.T, p string) fsattr.Attrs {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	a, err := fsattr.Get(fd)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func readOrDir(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "dir"
	}
	return string(b)
}

// Preallocated ranges (fallocate, and fallocate --keep-size past the end)
// come back preallocated: the same blocks, the same size.
func TestRestoreKeepsPreallocation(t *testing.T) {
	testutil.RequireTools(t, "fallocate")
	for _, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) {
			size := map[string]int64{"ext4": 64, "xfs": 320}[fs]
			src := mountFS(t, fs, size)
			testutil.Run(t, "fallocate", "-l", "4M", filepath.Join(src, "reserved.db"))
			write(t, src, "growing.log", "first line\n")
			testutil.Run(t, "fallocate", "-n", "-o", "4096", "-l", "8M", filepath.Join(src, "growing.log"))
			testutil.Run(t, "sync", "-f", src)
			st := local.New(t.TempDir())
			f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC), Compression: codec.Zstd},
				map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: fs}})
			b := catalogtest.Resolve(t, st, f)
			dst := mountFS(t, fs, size)
			if _, err := restore.ToDir(context.Background(), st, b, dst, restore.Options{}); err != nil {
				t.Fatal(err)
			}
			testutil.Run(t, "sync", "-f", dst)
			for _, name := range []string{"reserved.db", "growing.log"} {
				var a, b unix.Stat_t
				unix.Stat(filepath.Join(src, name), &a)
				unix.Stat(filepath.Join(dst, name), &b)
				if a.Size != b.Size || a.Blocks != b.Blocks {
					t.Errorf("%s: restored size %d, %d blocks; source %d, %d blocks", name, b.Size, b.Blocks, a.Size, a.Blocks)
				}
			}
		})
	}
}
