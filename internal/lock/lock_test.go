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
