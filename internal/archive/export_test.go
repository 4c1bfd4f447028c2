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
