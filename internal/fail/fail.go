// Package fail carries what the user needs with an error: a hint saying what
// to do, and the kind of failure that main turns into an exit code.
package fail

import (
	"errors"
	"fmt"
)

// Exit codes (a stable contract, see the README).
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitLocked      = 3
	ExitInterrupted = 130
)

// hinted adds a hint to an error.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() }
func (h *hinted) Unwrap() error { return h.err }

// Hint attaches a line telling the user what to do about err.
func Hint(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &hinted{err: err, hint: fmt.Sprintf(format, args...)}
}

// Hints returns every hint in err's chain, outermost first.
func Hints(err error) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(error)
	walk = func(e error) {
		for e != nil {
			if h, ok := e.(*hinted); ok && !seen[h.hint] {
				seen[h.hint] = true
				out = append(out, h.hint)
			}
			if j, ok := e.(interface{ Unwrap() []error }); ok {
				for _, x := range j.Unwrap() {
					walk(x)
				}
				return
			}
			e = errors.Unwrap(e)
		}
	}
	walk(err)
	return out
}

// usage marks errors in how voltar was called or configured.
type usage struct{ error }

func (u usage) Unwrap() error { return u.error }

// Usage marks err as a usage or configuration error (exit 2).
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return usage{err}
}

// IsUsage reports whether err is a usage error.
func IsUsage(err error) bool {
	var u usage
	return errors.As(err, &u)
}

// ErrLocked means another voltar run holds the lock (exit 3).
var ErrLocked = errors.New("another voltar run holds the lock")

// Leftover is implemented by errors of a command that stopped after it
// wrote something the operator must know about (a restore's partly written
// files). main prints it also when the command was interrupted, where the
// error itself (a cancellation) is not worth printing.
type Leftover interface {
	Leftover() string
}
