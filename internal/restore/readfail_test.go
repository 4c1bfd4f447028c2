package restore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store/local"
	"voltar/internal/store/storetest"
)

var errReset = errors.New("connection reset by peer")

// A read that stops early (the store failed) is the store's error, not a
// damaged archive: only a stored object read to its end is compared with
// its recorded hash.
func TestStoreFailureIsNotChecksum(t *testing.T) {
	src := t.TempDir()
	for i := range 20 {
		body := strings.Repeat(string(rune('a'+i)), 50_000+i*997)
		if err := os.WriteFile(filepath.Join(src, "f"+string(rune('a'+i))), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := local.New(t.TempDir())
	f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC), Compression: codec.Zstd},
		map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: "ext4"}})
	b := catalogtest.Resolve(t, st, f)
	stored := b.Manifest.Filesystems[0].StoredBytes
	// The store's connection drops halfway through the archive.
	cs := storetest.NewFaulty(st, &storetest.Fault{Op: storetest.OpGet, KeySuffix: ".zst", Err: errReset, AfterBytes: stored / 2})
	_, err := restore.ToDir(context.Background(), cs, b, filepath.Join(t.TempDir(), "out"), restore.Options{})
	if err == nil || errors.Is(err, restore.ErrChecksum) || !errors.Is(err, errReset) {
		t.Fatalf("restore through a store failing after %d of %d bytes: %v; want the store's error, not a checksum mismatch", stored/2, stored, err)
	}
}
