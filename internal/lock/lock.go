// Package lock keeps two voltar runs from working at once: they would fight
// over snapshots, and each would sweep the other's resources as leftovers.
package lock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gofrs/flock"

	"voltar/internal/fail"
)

// Lock is a held run lock.
type Lock struct {
	fl *flock.Flock
}

// Acquire takes the lock in dir without waiting. If another process holds
// it, the error wraps fail.ErrLocked and names that process.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fail.Hint(fmt.Errorf("lock directory: %w", err), "set runtime_dir to a writable directory")
	}
	path := filepath.Join(dir, "voltar.lock")
	l, holder, err := try(path)
	if err != nil || l != nil {
		return l, err
	}
	return nil, fail.Hint(fmt.Errorf("%w (%s, lock %s)", fail.ErrLocked, holder, path),
		"wait for it to finish; overlapping runs are refused so they cannot remove each other's snapshots")
}

// DefaultVolumeDir holds the per-volume locks. It is the same for every
// voltar installation, whatever its runtime_dir: /run/lock is where
// programs share lock files (FHS).
const DefaultVolumeDir = "/run/lock"

// ErrVolumeBusy is a volume another voltar process is snapshotting.
var ErrVolumeBusy = errors.New("being backed up by another voltar")

// Volume takes the lock of the LVM volume vg/lv in dir without waiting:
// voltar-lv-<vg>-<lv> with every '-' in the names doubled, as
// device-mapper names LVs, so no two volumes share a file. Installations
// with different runtime_dir (their own run lock) see one another here.
// If another process holds it, the error wraps ErrVolumeBusy and names it.
func Volume(dir, vg, lv string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	esc := func(s string) string { return strings.ReplaceAll(s, "-", "--") }
	path := filepath.Join(dir, "voltar-lv-"+esc(vg)+"-"+esc(lv))
	l, holder, err := try(path)
	if err != nil || l != nil {
		return l, err
	}
	return nil, fail.Hint(fmt.Errorf("%s/%s: %w (%s, lock %s)", vg, lv, ErrVolumeBusy, holder, path),
		"another voltar installation (another runtime_dir) is backing up this volume now; back it up from one installation only, or at another time")
}

// try takes the lock file path without waiting and writes this process's
// pid into it. When another process holds it, it returns no lock and
// names the holder.
func try(path string) (l *Lock, holder string, err error) {
	fl := flock.New(path, flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, "", fmt.Errorf("lock %s: %w", path, err)
	}
	if !ok {
		holder := "another process"
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = "pid " + strings.TrimSpace(string(b))
		}
		return nil, holder, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err == nil {
		f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
		f.Close()
	}
	return &Lock{fl: fl}, "", nil
}

// TryAcquire takes the lock if no run holds it right now; read-only
// commands use it to decide whether sweeping leftovers is safe.
func TryAcquire(dir string) (*Lock, bool) {
	l, err := Acquire(dir)
	if err != nil {
		return nil, false
	}
	return l, true
}

// Release drops the lock.
func (l *Lock) Release() error {
	if l == nil {
		return nil
	}
	if err := l.fl.Unlock(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
