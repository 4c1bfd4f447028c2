package lock_test

import (
	"errors"
	"strings"
	"testing"

	"voltar/internal/fail"
	"voltar/internal/lock"
)

func TestSecondAcquireFailsAndNamesHolder(t *testing.T) {
	dir := t.TempDir()
	l, err := lock.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lock.Acquire(dir)
	if !errors.Is(err, fail.ErrLocked) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second Acquire = %v, want ErrLocked naming the holder's pid", err)
	}
	if len(fail.Hints(err)) == 0 {
		t.Error("no hint on a held lock")
	}
	if _, ok := lock.TryAcquire(dir); ok {
		t.Fatal("TryAcquire succeeded while the lock is held")
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, ok := lock.TryAcquire(dir)
	if !ok {
		t.Fatal("TryAcquire failed after Release")
	}
	l2.Release()
}

// The per-LV lock: one file per vg/lv, unambiguous although LVM names may
// hold '-' (vg "a-b" lv "c" and vg "a" lv "b-c" are two locks), and a
// second taker is refused with the holder named.
func TestVolumeLock(t *testing.T) {
	dir := t.TempDir()
	l, err := lock.Volume(dir, "a-b", "c")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	other, err := lock.Volume(dir, "a", "b-c")
	if err != nil {
		t.Fatalf("a/b-c shares a-b/c's lock: %v", err)
	}
	other.Release()
	_, err = lock.Volume(dir, "a-b", "c")
	if !errors.Is(err, lock.ErrVolumeBusy) || !strings.Contains(err.Error(), "pid ") || !strings.Contains(err.Error(), "voltar-lv-a--b-c") {
		t.Fatalf("second Volume = %v, want ErrVolumeBusy naming the holder and the file", err)
	}
	if errors.Is(err, fail.ErrLocked) {
		t.Error("a busy volume is not the run lock (exit 3): it fails that volume")
	}
	if len(fail.Hints(err)) == 0 {
		t.Error("no hint on a busy volume")
	}
	l.Release()
	l, err = lock.Volume(dir, "a-b", "c")
	if err != nil {
		t.Fatalf("Volume after Release: %v", err)
	}
	l.Release()
}
