package restore

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// targets is where a restore --to DIR writes: DIR itself for a backup of
// one filesystem, DIR/<name> (p1, p2, ...) for each of several. Every
// target is checked before anything is written (checkTargets), and
// reached beneath DIR's descriptor, never through a symlink.
type targets struct {
	dir  string
	sub  bool // one directory per filesystem
	root int  // O_PATH descriptor of dir, once opened
}

// checkTargets checks dir and, when sub, dir/<name> for each name: each
// must be missing, or a directory that is empty (lost+found aside) unless
// overwrite.
func checkTargets(dir string, names []string, sub, overwrite bool) (*targets, error) {
	if err := checkTarget(dir, overwrite); err != nil {
		return nil, err
	}
	if sub {
		// dir itself must be empty too (checked above): it gets only p1, p2, ...
		for _, n := range names {
			if err := plainName(n); err != nil {
				return nil, fmt.Errorf("filesystem %q: %w; not restoring", n, err)
			}
			if err := checkSubTarget(dir, n, filepath.Join(dir, n), overwrite); err != nil {
				return nil, err
			}
		}
	}
	return &targets{dir: dir, sub: sub, root: -1}, nil
}

// open creates dir if missing and opens it.
func (t *targets) open() error {
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return fmt.Errorf("create target: %w", err)
	}
	root, err := openTarget(t.dir)
	if err != nil {
		return err
	}
	t.root = root
	return nil
}

// of returns the descriptor and path of filesystem name's target; the
// caller gives the descriptor back with release.
func (t *targets) of(name string) (int, string, error) {
	if !t.sub {
		return t.root, t.dir, nil
	}
	path := filepath.Join(t.dir, name)
	fd, err := openDir(t.root, name, true, nil)
	if err != nil {
		return -1, path, fmt.Errorf("create target %s: %w", path, err)
	}
	return fd, path, nil
}

func (t *targets) release(fd int) {
	if fd != t.root {
		unix.Close(fd)
	}
}

func (t *targets) close() {
	if t.root >= 0 {
		unix.Close(t.root)
	}
}
