package local_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/store"
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
	if _, err := s.Put(context.Background(), "h/vg/v/ts/p1.tar.zst", strings.NewReader("x"), store.PutOptions{}); err != nil {
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

// files lists every file under root, hidden temporary ones included (List
// does not show those).
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("source failed")
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

// A failed Put leaves no file at all, temporary ones included; RemoveTemp
// removes what a killed writer left in a folder, and the folder once empty.
func TestNoTempLeft(t *testing.T) {
	root := t.TempDir()
	st := local.New(root)
	ctx := context.Background()
	if _, err := st.Put(ctx, "h/vg/v/ts/p1.tar.zst", &failingReader{n: 3 << 20}, store.PutOptions{}); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if fs := files(t, root); len(fs) != 0 {
		t.Errorf("files after a failed Put: %v", fs)
	}
	dir := filepath.Join(root, "h/vg/v/ts")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, local.TempPrefix+"p2.tar.zst-123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveTemp(ctx, "h/vg/v/ts/"); err != nil {
		t.Fatal(err)
	}
	if fs := files(t, root); len(fs) != 0 {
		t.Errorf("files after RemoveTemp: %v", fs)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("empty folder kept: %v", err)
	}
}
