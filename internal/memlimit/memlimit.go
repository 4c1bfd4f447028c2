// Package memlimit keeps Go's soft memory limit (runtime/debug) at what
// voltar's running work holds: a base set once from the config (the
// compressors and buffers a backup holds whatever the volume, see
// cmd/voltar), plus what each piece of work whose memory grows with its
// input holds while it runs (an increment's parent index grows with the
// file count).
//
// Without the second part a large parent index outgrew the base limit and
// the garbage collector ran without pause: 28% of the CPU of an unchanged
// re-backup of a million files.
package memlimit

import (
	"runtime/debug"
	"sync"
)

var (
	mu      sync.Mutex
	managed bool  // Set was called: voltar owns the limit
	base    int64 // Set's
	held    int64 // by Hold, not released yet
)

// Set makes voltar own the soft memory limit, at base plus what is held.
// Not called (GOMEMLIMIT set: the operator's own limit), Hold does nothing.
func Set(n int64) {
	mu.Lock()
	defer mu.Unlock()
	managed, base = true, n
	apply()
}

// Hold raises the limit by n until release is called (once; later calls
// do nothing).
func Hold(n int64) (release func()) {
	mu.Lock()
	defer mu.Unlock()
	if !managed || n <= 0 {
		return func() {}
	}
	held += n
	apply()
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			held -= n
			apply()
		})
	}
}

func apply() { debug.SetMemoryLimit(base + held) }
