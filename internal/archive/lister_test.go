package archive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"voltar/internal/archive"
	"voltar/internal/index"
	"voltar/internal/testutil"
)

// TestListerChangesNothing archives increments of a tree of many nested
// directories with the lister (the walk's listings made ahead on several
// threads) and without it (NoPrefetch): the archives and their indexes
// must be the same bytes. A parent whose index cannot be read makes the
// archive whole.
func TestListerChangesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	src := mountExt4(t, 256<<20)
	for i := range 30 {
		for j := range 8 {
			d := filepath.Join(src, fmt.Sprintf("d%02d", i), fmt.Sprintf("s%d", j), "deep")
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for k := range 6 {
				if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", k)), []byte(fmt.Sprint(i, j, k)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := os.Link(filepath.Join(src, "d00/s0/deep/f0"), filepath.Join(src, "d29/s7/link")); err != nil {
		t.Fatal(err)
	}
	excludes := []string{"s3/", "d07/**"}
	write := func(parent *archive.Parent, noPrefetch bool) ([]byte, []index.Entry, archive.Result) {
		t.Helper()
		var tarball bytes.Buffer
		var entries []index.Entry
		res, err := archive.Write(context.Background(), src, &tarball, archive.Options{
			Excludes: excludes, Parent: parent, NoPrefetch: noPrefetch,
			Index: func(e *index.Entry) error { entries = append(entries, *e); return nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		return tarball.Bytes(), entries, res
	}
	whole, full, _ := write(nil, true)
	// Changes in some directories, none in the others.
	for _, f := range []string{"d03/s1/deep/f2", "d15/s6/deep/f0", "d29/s0/deep/f5"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte("changed"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(src, "d10")); err != nil {
		t.Fatal(err)
	}
	parent := &archive.Parent{Index: func() (*index.Index, error) { return &index.Index{Entries: full}, nil }, Time: "2026-12-05T010000Z"}
	tarA, ixA, resA := write(parent, false)
	tarB, ixB, resB := write(parent, true)
	if !resA.Incremental || !resB.Incremental || resA.Inherited == 0 {
		t.Fatalf("not an increment: %+v", resA)
	}
	if !bytes.Equal(tarA, tarB) {
		t.Errorf("the archive made with the lister (%d bytes) differs from the one without (%d bytes)", len(tarA), len(tarB))
	}
	if !reflect.DeepEqual(ixA, ixB) {
		t.Errorf("the index made with the lister differs from the one without")
	}
	if resA.Inherited != resB.Inherited || resA.Entries != resB.Entries || resA.Excluded != resB.Excluded || resA.Inodes != resB.Inodes {
		t.Errorf("results differ: with the lister %+v, without %+v", resA, resB)
	}

	// A parent that cannot be read: the archive is whole, as without one.
	broken := &archive.Parent{Index: func() (*index.Index, error) { return nil, errors.New("damaged") }, Time: "2026-12-05T010000Z"}
	tarC, _, resC := write(broken, false)
	tarD, _, _ := write(nil, false)
	if resC.Incremental || resC.Inherited != 0 {
		t.Errorf("parent unreadable: Incremental %v, %d inherited", resC.Incremental, resC.Inherited)
	}
	if !bytes.Equal(tarC, tarD) {
		t.Errorf("parent unreadable: the archive is not the whole one")
	}
	if bytes.Equal(tarD, whole) {
		t.Errorf("the tree did not change")
	}
}
