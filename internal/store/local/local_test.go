package local_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/store/local"
	"voltar/internal/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, local.New(t.TempDir()))
}

func TestPermissions(t *testing.T) {
	old := unixUmask(0)
	defer unixUmask(old)
	root := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	s := local.New(root)
	if _, err := s.Put(context.Background(), "h/vg/v/ts/p1.tar.zst", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = fs.ModeDir | 0o700
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
