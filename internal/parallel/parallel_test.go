package parallel_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"voltar/internal/parallel"
)

// Results keep the order of the items, and no more than limit run at once.
func TestMapOrderAndLimit(t *testing.T) {
	var running, most atomic.Int32
	got := parallel.Map(context.Background(), []int{1, 2, 3, 4, 5, 6}, 2, func(n int) int {
		r := running.Add(1)
		for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		running.Add(-1)
		return n * 10
	})
	if want := []int{10, 20, 30, 40, 50, 60}; !slices.Equal(got, want) {
		t.Errorf("Map = %v, want %v", got, want)
	}
	if m := most.Load(); m > 2 {
		t.Errorf("%d ran at once, want at most 2", m)
	}
}

// After cancel, f still runs for every item (to report it skipped), without
// waiting for a slot held by a running item.
func TestMapCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	got := make(chan []string)
	go func() {
		got <- parallel.Map(ctx, []string{"a", "b", "c"}, 1, func(s string) string {
			if ctx.Err() != nil {
				return s + ":skipped"
			}
			cancel()
			<-release
			return s + ":done"
		})
	}()
	time.Sleep(20 * time.Millisecond)
	close(release)
	res := <-got
	done := 0
	for _, r := range res {
		if r[2:] == "done" {
			done++
		}
	}
	if done != 1 || len(res) != 3 {
		t.Errorf("Map = %v, want one done and two skipped", res)
	}
}
