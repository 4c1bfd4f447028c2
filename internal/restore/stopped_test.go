package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/fail"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store/local"
	"voltar/internal/store/storetest"
)

// A restore into a directory that is cancelled (SIGTERM) half way says what
// it left: the error names the partly written files even though it is a
// cancellation, and the text does not claim the backup was restored.
func TestToDirCancelledSaysWhatItLeft(t *testing.T) {
	src := t.TempDir()
	for i := range 30 {
		data := make([]byte, 256<<10)
		for j := range data {
			data[j] = byte(i ^ j ^ j>>9)
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprint(i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := local.New(t.TempDir())
	f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: t0, Compression: codec.Zstd},
		map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: "ext4"}})
	b := catalogtest.Resolve(t, st, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := storetest.NewFaulty(st, &storetest.Fault{Op: storetest.OpGet, Cancel: cancel, AfterBytes: b.Manifest.Filesystems[0].StoredBytes / 2})
	dst := filepath.Join(t.TempDir(), "out")
	res, err := restore.ToDir(ctx, cs, b, dst, restore.Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want a cancellation", err)
	}
	var left fail.Leftover
	if !errors.As(err, &left) || !strings.Contains(left.Leftover(), "must not be trusted") || !strings.Contains(left.Leftover(), dst) {
		t.Errorf("a cancelled restore does not say what it left: %v", err)
	}
	var text bytes.Buffer
	restore.WriteText(&text, res)
	if strings.HasPrefix(text.String(), "restored ") || !strings.Contains(text.String(), "stopped part way") {
		t.Errorf("text of a cancelled restore:\n%s", text.String())
	}
}

// A restore that writes nothing (SHA256SUMS damaged) does not print
// "restored".
func TestToDirNothingRestored(t *testing.T) {
	st := local.New(t.TempDir())
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: t0, Compression: codec.Zstd},
		map[string]string{"fs": src}, []manifest.Filesystem{{Name: "fs", Type: "ext4"}})
	b := catalogtest.Resolve(t, st, f)
	if err := os.WriteFile(filepath.Join(st.Root(), b.Key(layout.Sums)), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := restore.ToDir(context.Background(), st, b, filepath.Join(t.TempDir(), "out"), restore.Options{})
	if err == nil {
		t.Fatal("restore with a damaged SHA256SUMS succeeded")
	}
	var text bytes.Buffer
	restore.WriteText(&text, res)
	if !strings.HasPrefix(text.String(), "nothing restored from ") {
		t.Errorf("text:\n%s", text.String())
	}
}

// An archive missing from the store after another filesystem was restored:
// the error says which ones came back complete.
func TestToDirMissingSecondArchive(t *testing.T) {
	st := local.New(t.TempDir())
	a, c := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(a, "f"), []byte("one"), 0o644)
	os.WriteFile(filepath.Join(c, "g"), []byte("two"), 0o644)
	f := backupOf(t, st, catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: t0, Compression: codec.Zstd,
		Table: manifest.Table{Type: "mbr", Partitions: []manifest.Partition{{Number: 1, Start: 1 << 20, Size: 1 << 20, Type: "0x83"}, {Number: 2, Start: 2 << 20, Size: 1 << 20, Type: "0x83"}}}},
		map[string]string{"p1": a, "p2": c}, []manifest.Filesystem{{Name: "p1", Partition: 1, Type: "ext4"}, {Name: "p2", Partition: 2, Type: "ext4"}})
	b := catalogtest.Resolve(t, st, f)
	if err := os.Remove(filepath.Join(st.Root(), b.Key(b.Manifest.Filesystems[1].Archive))); err != nil {
		t.Fatal(err)
	}
	_, err := restore.ToDir(context.Background(), st, b, filepath.Join(t.TempDir(), "out"), restore.Options{})
	if err == nil {
		t.Fatal("restore with a missing archive succeeded")
	}
	if h := strings.Join(fail.Hints(err), "\n"); !strings.Contains(h, "restored completely before it: p1") {
		t.Errorf("error %v; hints %q: want them to name p1 as complete", err, h)
	}
}
