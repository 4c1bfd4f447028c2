package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"voltar/internal/archive"
	"voltar/internal/index"
	"voltar/internal/testutil"
)

// TestReadPathsChangeNothing archives the torture tree and a directory
// made to cross every limit of the batcher (more entries than its ring,
// more files than its window, more first bytes than its buffer,
// directories and second hard links among the files, files larger than
// one read) with plain system calls, with Options.Batch, and with the
// prefetcher pausing (its first bytes read with RWF_NOWAIT): a whole
// archive and an increment, the tar bytes, the index and the counts must
// be the same, and no descriptor is left open.
func TestReadPathsChangeNothing(t *testing.T) {
	testutil.RequireRoot(t)
	src := mountExt4(t, 4*gib)
	buildTorture(t, src)
	rng := rand.New(rand.NewPCG(1, 2))
	many := filepath.Join(src, "many")
	mustDo(t, "mkdir", os.MkdirAll(many, 0o755))
	for i := range 200 {
		name := filepath.Join(many, fmt.Sprintf("f%03d", i))
		switch {
		case i%40 == 7:
			mustDo(t, "mkdir", os.MkdirAll(filepath.Join(name, "sub"), 0o755))
			mustDo(t, "write", os.WriteFile(filepath.Join(name, "sub", "x"), []byte(name), 0o644))
			continue
		case i%25 == 3:
			mustDo(t, "symlink", os.Symlink(fmt.Sprintf("f%03d", i-1), name))
			continue
		}
		size := rng.IntN(300 << 10)
		switch i {
		case 100:
			size = 3<<20 + 12345 // three reads and a bit
		case 101:
			size = 128 << 10 // exactly one read ahead
		case 102:
			size = 0
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		mustDo(t, "write", os.WriteFile(name, data, 0o644))
		if i%30 == 11 { // a second name, next in the window
			mustDo(t, "link", os.Link(name, name+"h"))
		}
	}
	remountRO(t, src)

	// The three ways to read: plain system calls, Batch, and the
	// prefetcher paused after every file (the page cache holds the tree:
	// the first bytes of each file come from its RWF_NOWAIT read).
	const plain, batch, paused = "plain", "Batch", "the prefetcher paused"
	write := func(parent *archive.Parent, how string) ([]byte, []index.Entry, archive.Result) {
		t.Helper()
		var tarball bytes.Buffer
		var entries []index.Entry
		fds := openFDs(t)
		calls, cached := archive.BatchedCalls(), archive.CachedReads()
		if how == paused {
			defer archive.SetPrefetchEvery(archive.SetPrefetchEvery(1))
		}
		res, err := archive.Write(context.Background(), src, &tarball, archive.Options{
			Excludes: tortureExcludes, Parent: parent, NoPrefetch: how == plain, Batch: how == batch,
			Index: func(e *index.Entry) error { entries = append(entries, *e); return nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := openFDs(t); n != fds {
			t.Errorf("%s: %d descriptors open after the archive, %d before", how, n, fds)
		}
		if n := archive.BatchedCalls() - calls; how == batch && n < res.Entries {
			t.Fatalf("Batch: %d system calls batched for %d entries: the ring was not used", n, res.Entries)
		}
		if n := archive.CachedReads() - cached; how == paused && n < int64(res.Files)/2 {
			t.Fatalf("%s: %d of %d files read from the page cache with RWF_NOWAIT: the workers did not pause", how, n, res.Files)
		}
		return tarball.Bytes(), entries, res
	}
	same := func(what string, parent *archive.Parent) []index.Entry {
		t.Helper()
		tarA, ixA, resA := write(parent, plain)
		for _, how := range []string{batch, paused} {
			tarB, ixB, resB := write(parent, how)
			if !bytes.Equal(tarA, tarB) {
				t.Errorf("%s: the archive made with %s (%d bytes) differs from the one without (%d bytes)", what, how, len(tarB), len(tarA))
			}
			if !reflect.DeepEqual(ixA, ixB) {
				t.Errorf("%s: the index made with %s differs from the one without", what, how)
			}
			if !reflect.DeepEqual(resA, resB) {
				t.Errorf("%s: results differ: without %s %+v, with %+v", what, how, resA, resB)
			}
		}
		return ixA
	}
	full := same("whole archive", nil)

	// An increment: every fifth file of many/ changed since the parent,
	// the others left to it, so files to read and files left alternate.
	parentEntries := append([]index.Entry(nil), full...)
	changed := 0
	for i := range parentEntries {
		if e := &parentEntries[i]; filepath.Dir(strings.TrimPrefix(e.Path, "./")) == "many" && e.Type == index.File && i%5 == 0 {
			e.Mtime++
			changed++
		}
	}
	if changed < 10 {
		t.Fatalf("only %d files of many/ changed in the parent's index", changed)
	}
	parent := &archive.Parent{Index: func() (*index.Index, error) { return &index.Index{Entries: parentEntries}, nil }, Time: "2026-12-05T010000Z"}
	// Stopped in the middle of a window: its files are closed too.
	for _, after := range []int64{1 << 20, 2 << 20, 3 << 20} {
		ctx, cancel := context.WithCancel(context.Background())
		fds := openFDs(t)
		_, err := archive.Write(ctx, src, &cancelWriter{after: after, cancel: cancel}, archive.Options{Excludes: tortureExcludes, NoPrefetch: true, Batch: true})
		cancel()
		if err == nil {
			t.Fatalf("canceled after %d bytes: no error", after)
		}
		if n := openFDs(t); n != fds {
			t.Errorf("canceled after %d bytes: %d descriptors open, %d before", after, n, fds)
		}
	}

	inc := same("increment", parent)
	if len(inc) != len(full) || reflect.DeepEqual(inc, full) {
		t.Errorf("the increment's index (%d entries) is not the whole tree with entries from the parent (%d)", len(inc), len(full))
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
