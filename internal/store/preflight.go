package store

import "context"

// Preflighter is implemented by stores that can tell, before a run makes
// any snapshot, whether a backup can be written at all: a local directory
// that exists, is mounted and is writable. A store without it (S3) was
// checked when it was opened.
type Preflighter interface {
	// Preflight checks the store is usable now, and returns an error that
	// says what to fix when it is not.
	Preflight(ctx context.Context, o PreflightOptions) error
}

// PreflightOptions are the checks a run asks for beyond the store's own.
type PreflightOptions struct {
	// RequireMount, when set, must be a mount point: an unmounted backup
	// disk must not let backups fill the filesystem underneath.
	RequireMount string
}

// Unwrapper is implemented by stores that wrap another (fault injection in
// tests, logging, retries), so the optional interfaces of the store inside
// stay reachable through As.
type Unwrapper interface {
	// Unwrap returns the wrapped store.
	Unwrap() Store
}

// As returns the first store in the chain st, st.Unwrap(), ... that
// implements T: the optional interfaces (Space, TempRemover, Preflighter)
// are looked up with it, so that a wrapper does not hide them.
func As[T any](st Store) (T, bool) {
	for st != nil {
		if t, ok := st.(T); ok {
			return t, true
		}
		u, ok := st.(Unwrapper)
		if !ok {
			break
		}
		st = u.Unwrap()
	}
	var zero T
	return zero, false
}
