package folder

import (
	"log/slog"
	"time"

	"voltar/internal/cleanup"
	"voltar/internal/objio"
	"voltar/internal/store"
)

// Settings is what every writer of store folders shares (a volume's
// backup, a database dump): where the folders go, under which host, how
// their objects are encoded, and how a failed one is cleaned up. The
// command line and `run` build it once; backup.Options and dump.Options
// embed it.
type Settings struct {
	Store store.Store
	// Host names this machine in the store: <host>/...
	Host string
	objio.Encoding
	Version string // the tool version recorded in manifests
	Logger  *slog.Logger
	// Journal, when set, records every folder being written (PartialRef),
	// so the sweep of a later run removes it after a kill -9.
	Journal *cleanup.Journal
	// CleanupTimeout bounds the removal of a failed folder's objects (and
	// a backup's other releases), which run even after a cancel.
	CleanupTimeout time.Duration
	// Signer, when set, signs every manifest (manifest.json.sig).
	Signer Signer
}
