package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"voltar/internal/fail"
	"voltar/internal/layout"
	"voltar/internal/store"
)

// ErrNotFound matches (errors.Is) every *NotFoundError.
var ErrNotFound = errors.New("no such backup")

// NotFoundError says that an ID names no complete backup, and what to try.
type NotFoundError struct {
	ID    string // as given
	Store string
	// Reason is set when a folder exists but is not a backup,
	// e.g. "incomplete: no manifest.json".
	Reason string
}

func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("no backup %s in %s", e.ID, e.Store)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// DamagedError is a backup folder whose manifest.json is there but cannot
// be used (see Incomplete.Damaged). Resolve returns it rather than skip
// the folder: "latest" must not quietly mean an older backup.
type DamagedError struct {
	Host   string
	ID     string // <group>/<volume>/<timestamp>
	Store  string
	Reason string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("backup folder %s/%s in %s is damaged: %s", e.Host, e.ID, e.Store, e.Reason)
}

// IDError is an ID that cannot be parsed: a usage error.
type IDError struct {
	ID  string
	Msg string
}

func (e *IDError) Error() string { return fmt.Sprintf("backup ID %q: %s", e.ID, e.Msg) }

// Resolve finds one complete backup by ID: GROUP/VOLUME/TIMESTAMP (on host),
// HOST/GROUP/VOLUME/TIMESTAMP, or either with "latest" as the timestamp for
// the newest complete backup of the volume. A malformed ID is an *IDError
// marked fail.Usage; a missing backup a *NotFoundError with a fail.Hint
// ("voltar list GROUP/VOLUME"). A damaged folder (manifest.json there but
// unusable) is a *DamagedError, also when "latest" meets it before any
// complete backup: it is never skipped in favour of an older one.
func Resolve(ctx context.Context, st store.Store, host, id string) (*Backup, error) {
	b, err := resolve(ctx, st, host, id)
	var ide *IDError
	if errors.As(err, &ide) {
		return nil, fail.Usage(err)
	}
	return b, err
}

func resolve(ctx context.Context, st store.Store, host, id string) (*Backup, error) {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	switch len(parts) {
	case 3:
		if host == "" {
			return nil, &IDError{id, "no host is configured; give HOST/GROUP/VOLUME/TIMESTAMP"}
		}
	case 4:
		host, parts = parts[0], parts[1:]
	default:
		return nil, &IDError{id, "want GROUP/VOLUME/TIMESTAMP, HOST/GROUP/VOLUME/TIMESTAMP or GROUP/VOLUME/latest"}
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return nil, &IDError{id, "empty or dot path element"}
		}
	}
	group, volume, ts := parts[0], parts[1], parts[2]
	nf := &NotFoundError{ID: id, Store: st.String()}
	notFound := func() error { return fail.Hint(nf, "voltar list %s/%s", group, volume) }
	if ts == Latest {
		// The newest folder with a manifest: read manifests from the
		// newest back, not every one of the volume's history.
		objs, err := st.List(ctx, host+"/"+group+"/"+volume+"/")
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", st, err)
		}
		folders := groupFolders(objs, group, volume)
		for i := len(folders) - 1; i >= 0; i-- {
			b, inc, err := load(ctx, st, folders[i])
			if err != nil {
				return nil, err
			}
			if b != nil {
				return b, nil
			}
			if inc.Damaged {
				return nil, damaged(st, inc, true)
			}
		}
		if n := len(folders); n > 0 {
			nf.Reason = fmt.Sprintf("%d incomplete folder(s), no complete backup", n)
		}
		return nil, notFound()
	}
	t, err := layout.ParseTime(ts)
	if err != nil {
		return nil, &IDError{id, fmt.Sprintf("timestamp %q: want UTC like %s, or %s", ts, layout.TimeFormat, Latest)}
	}
	prefix := layout.Key{Host: host, Group: group, Volume: volume, Time: t}.Prefix()
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", st, err)
	}
	folders := groupFolders(objs, group, volume)
	if len(folders) != 1 {
		return nil, notFound()
	}
	b, inc, err := load(ctx, st, folders[0])
	if err != nil {
		return nil, err
	}
	if b == nil && inc.Damaged {
		return nil, damaged(st, inc, false)
	}
	if b == nil {
		nf.Reason = "incomplete: " + inc.Reason
		return nil, notFound()
	}
	return b, nil
}

// damaged is the error for a damaged folder met by Resolve, with hints.
func damaged(st store.Store, inc *Incomplete, latest bool) error {
	var err error = &DamagedError{Host: inc.Host, ID: inc.ID, Store: st.String(), Reason: inc.Reason}
	if latest {
		err = fmt.Errorf("%s/%s/latest: %w; not falling back to an older backup", inc.Group, inc.Volume, err)
		err = fail.Hint(err, "to restore an older backup, name it: voltar list %s/%s", inc.Group, inc.Volume)
	}
	return fail.Hint(err, "the folder may hold a good backup, or a tampered one: inspect %s%s before using it (voltar verify fails it; voltar prune keeps it)",
		inc.Prefix, layout.Manifest)
}
