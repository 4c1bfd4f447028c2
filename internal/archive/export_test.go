package archive

// Internals for the external tests.
var (
	ACLText       = aclText
	FormatPAXTime = formatPAXTime
	PAXRecord     = paxRecord
)

// Excluded reports whether Options.Excludes globs exclude rel.
func Excluded(globs []string, rel string, dir bool) (bool, error) {
	e, err := newExcluder(globs)
	if err != nil {
		return false, err
	}
	return e.match(rel, dir), nil
}

// BatchedCalls counts the system calls Options.Batch submitted through
// io_uring.
func BatchedCalls() int64 { return batchedCalls.Load() }

// SetPrefetchEvery sets how many files the prefetcher's workers run for
// before their first pause, and returns the value before.
func SetPrefetchEvery(n int) int { old := prefetchEvery; prefetchEvery = n; return old }

// CachedReads counts the first reads the archiver made with the
// prefetcher paused and found in the page cache.
func CachedReads() int64 { return cachedReads.Load() }
