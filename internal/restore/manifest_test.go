package restore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/catalog"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store/local"
)

// twoPartitions is a backup with p1 and p2, so ToDir makes DIR/p1, DIR/p2.
func twoPartitions(t *testing.T) (*local.Store, catalogtest.Folder) {
	t.Helper()
	st := local.New(t.TempDir())
	data := catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("./setuid", 0o4755, "x")), codec.Zstd)
	f := catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: t0,
		Table: manifest.Table{Type: "mbr", Partitions: []manifest.Partition{{Number: 1}, {Number: 2}}},
		Archives: []catalogtest.Archive{
			{FS: manifest.Filesystem{Name: "p1", Partition: 1, Type: "ext4"}, Data: data},
			{FS: manifest.Filesystem{Name: "p2", Partition: 2, Type: "ext4"}, Data: data},
		}}
	catalogtest.Write(t, st, f)
	return st, f
}

// The crafted manifests of issue 12, with manifest.json.sha256 rewritten
// to match as anyone with write access to the store could: the catalog
// refuses each (so restore and verify never see them), and ToDir, handed
// such a manifest anyway, refuses it too. Nothing appears outside the
// target, and nothing in it.
func TestCraftedManifestWritesNothingOutside(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "x", "a", "b", "target")
	for name, tc := range map[string]struct {
		edit   func(m *manifest.Manifest)
		escape string // where the escape would have written
	}{
		"../../escaped-p1": {func(m *manifest.Manifest) { m.Filesystems[0].Name = "../../escaped-p1" },
			filepath.Join(base, "x", "a", "escaped-p1")},
		"long ../ chain": {func(m *manifest.Manifest) {
			m.Filesystems[0].Name = strings.Repeat("../", 40) + strings.TrimPrefix(base, "/") + "/escaped-long"
		}, filepath.Join(base, "escaped-long")},
		"absolute": {func(m *manifest.Manifest) { m.Filesystems[0].Name = filepath.Join(base, "escaped-abs") },
			filepath.Join(base, "escaped-abs")},
		"archive with ../": {func(m *manifest.Manifest) { m.Filesystems[0].Archive = "../../escaped/p1.tar.zst" },
			filepath.Join(base, "x", "a", "b", "target", "p1")},
	} {
		t.Run(name, func(t *testing.T) {
			st, f := twoPartitions(t)
			b := catalogtest.Resolve(t, st, f)
			tc.edit(b.Manifest)
			catalogtest.PutManifest(t, st, f.Prefix(), b.Manifest)
			_, err := catalog.Resolve(context.Background(), st, "h", "vg/v/latest")
			var de *catalog.DamagedError
			if !errors.As(err, &de) {
				t.Errorf("Resolve: %v, want a *catalog.DamagedError", err)
			}
			// Past the catalog (a caller that built the manifest itself).
			_, err = restore.ToDir(context.Background(), st, b, target, restore.Options{})
			if err == nil || !strings.Contains(err.Error(), "invalid manifest") {
				t.Errorf("ToDir: %v, want the invalid manifest refused", err)
			}
			if _, serr := os.Lstat(tc.escape); serr == nil {
				t.Errorf("%s exists: restore wrote outside its target", tc.escape)
			}
			if _, serr := os.Lstat(target); serr == nil {
				t.Errorf("%s exists: restore wrote before refusing", target)
			}
		})
	}
}

// Several filesystems go into DIR/p1, DIR/p2, made beneath DIR's
// descriptor: a DIR/p1 that is a symlink (with --force) is refused, and
// nothing is written where it points.
func TestSubdirectoriesStayBeneathTarget(t *testing.T) {
	st, f := twoPartitions(t)
	b := catalogtest.Resolve(t, st, f)
	target := filepath.Join(t.TempDir(), "target")
	if _, err := restore.ToDir(context.Background(), st, b, target, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"p1/setuid", "p2/setuid"} {
		if _, err := os.Stat(filepath.Join(target, p)); err != nil {
			t.Error(err)
		}
	}

	outside := t.TempDir()
	target2 := filepath.Join(t.TempDir(), "target")
	if err := os.MkdirAll(target2, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(target2, "p1")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, outside)
	if _, err := restore.ToDir(context.Background(), st, b, target2, restore.Options{Overwrite: true}); err == nil {
		t.Error("restored through a symlinked DIR/p1")
	}
	if after := snapshot(t, outside); after != before {
		t.Errorf("written through the symlink:\n%s", after)
	}
}
