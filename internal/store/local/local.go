// Package local keeps backups in a directory tree on a local (or NFS)
// filesystem. Every object is written to a hidden temporary name in its final
// directory, fsynced, renamed into place and the directory fsynced, so a
// crash leaves either the whole object or none of it.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"voltar/internal/store"
)

// TempPrefix starts the name of every object still being written.
const TempPrefix = ".voltar-tmp-"

// Store is a directory holding backups.
type Store struct {
	root string
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.Space       = (*Store)(nil)
	_ store.TempRemover = (*Store)(nil)
	_ store.RangeReader = (*Store)(nil)
)

// New returns a store rooted at dir. The directory is created (0700) on the
// first Put if it does not exist.
func New(dir string) *Store { return &Store{root: filepath.Clean(dir)} }

func (s *Store) String() string { return s.root }

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) path(key string) (string, error) {
	if err := store.CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (int64, error) {
	dst, err := s.path(key)
	if err != nil {
		return 0, err
	}
	dir := filepath.Dir(dst)
	if err := mkdirAll(s.root, dir); err != nil {
		return 0, err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, TempPrefix+filepath.Base(dst)+"-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// Writes of 1 MiB: *os.File's ReadFrom would take over the copy with
	// 32 KiB chunks, so hide it.
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, store.ContextReader(ctx, r), make([]byte, 1<<20))
	if err != nil {
		return n, fmt.Errorf("write %s: %w", dst, err)
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("fsync %s: %w", dst, err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("close %s: %w", dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return n, fmt.Errorf("publish %s: %w", dst, err)
	}
	ok = true
	return n, syncDir(dir)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", key, store.ErrNotFound)
	}
	return f, err
}

// GetRange implements store.RangeReader with preads of the object's file.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", p)
	}
	if err == nil {
		n, err = store.CheckRange(fi.Size(), off, n)
		if err != nil {
			err = fmt.Errorf("%s: %w", key, err)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return rangeReader{io.NewSectionReader(f, off, n), f}, nil
}

// rangeReader reads a section of a file and closes the file.
type rangeReader struct {
	*io.SectionReader
	io.Closer
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Object, error) {
	p, err := s.path(key)
	if err != nil {
		return store.Object{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return store.Object{}, fmt.Errorf("%s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.Object{}, err
	}
	return store.Object{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements store.Store. Objects still being written are not listed.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	var out []store.Object
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Skip subtrees that cannot hold the prefix.
			if key != "." && !strings.HasPrefix(prefix, key+"/") && !strings.HasPrefix(key, prefix) && !strings.HasPrefix(key+"/", prefix) {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), TempPrefix) || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		out = append(out, store.Object{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, err
}

// Delete implements store.Store. Directories left empty are removed up to the root.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for dir := filepath.Dir(p); dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// RemoveTemp deletes objects left half-written in the folder prefix by a
// dead run, and the folder itself once empty. It implements store.TempRemover.
func (s *Store) RemoveTemp(ctx context.Context, prefix string) error {
	dir, err := s.path(strings.TrimSuffix(prefix, "/"))
	if err != nil {
		return err
	}
	var errs []error
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), TempPrefix) {
			if err := os.Remove(p); err != nil {
				errs = append(errs, err)
			}
		}
		return nil
	})
	for d := dir; d != s.root && strings.HasPrefix(d, s.root+string(filepath.Separator)); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// Usage implements store.Space.
func (s *Store) Usage(ctx context.Context) (store.Usage, error) {
	var st unix.Statfs_t
	var err error
	dir := s.root
	for {
		if err = unix.Statfs(dir, &st); err == nil || dir == "/" {
			break
		}
		dir = filepath.Dir(dir)
	}
	if err != nil {
		return store.Usage{}, fmt.Errorf("statfs %s: %w", s.root, err)
	}
	bs := int64(st.Frsize)
	if bs == 0 {
		bs = st.Bsize
	}
	return store.Usage{
		Size:  int64(st.Blocks) * bs,
		Used:  int64(st.Blocks-st.Bfree) * bs,
		Avail: int64(st.Bavail) * bs,
	}, nil
}

// mkdirAll creates dir and its parents with mode 0700, fsyncing each parent
// that gained an entry so the new directories survive a crash.
func mkdirAll(root, dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if dir != root && parent != dir {
		if err := mkdirAll(root, parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
