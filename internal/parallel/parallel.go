// Package parallel runs one piece of work per item, a bounded number at a
// time: the volumes of a nightly run, the database dumps.
package parallel

import (
	"context"
	"sync"
)

// Map calls f for every item, at most limit (at least 1) at a time, and
// returns the results in the order of items. f is called for every item
// even once ctx is done, without waiting for a free slot then: each
// item's result must say that it was not attempted, so f checks ctx
// itself. One f's failure is its result; it never stops the others.
func Map[T, R any](ctx context.Context, items []T, limit int, f func(T) R) []R {
	out := make([]R, len(items))
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
			}
			out[i] = f(it)
		}()
	}
	wg.Wait()
	return out
}
