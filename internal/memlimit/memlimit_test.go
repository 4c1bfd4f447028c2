package memlimit

import (
	"runtime/debug"
	"testing"
)

func TestHold(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)

	debug.SetMemoryLimit(1 << 40)
	r := Hold(1 << 20)
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("not managed (GOMEMLIMIT): Hold changed the limit to %d", got)
	}
	r()
	Set(100 << 20)
	a := Hold(30 << 20)
	b := Hold(20 << 20)
	if got := debug.SetMemoryLimit(-1); got != 150<<20 {
		t.Fatalf("limit %d, want %d", got, 150<<20)
	}
	a()
	a() // a second release does nothing
	if got := debug.SetMemoryLimit(-1); got != 120<<20 {
		t.Fatalf("after one release: limit %d, want %d", got, 120<<20)
	}
	b()
	if got := debug.SetMemoryLimit(-1); got != 100<<20 {
		t.Fatalf("after both: limit %d, want %d", got, 100<<20)
	}
}
