package objio_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"net"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"voltar/internal/codec"
	"voltar/internal/fail"
	"voltar/internal/objio"
	"voltar/internal/store"
	"voltar/internal/store/local"
)

// brokenStore fails every Put after reading a little, as a full disk does.
type brokenStore struct{ *local.Store }

func (b brokenStore) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (int64, error) {
	io.CopyN(io.Discard, r, 10)
	return 0, unix.ENOSPC
}

func TestCommitAndReadBack(t *testing.T) {
	for _, c := range []string{codec.Zstd, codec.Gzip, codec.None} {
		st := local.New(t.TempDir())
		ctx := context.Background()
		key := "h/vg/v/2026-11-25T013000Z/" + objio.Encoding{Compression: c}.Object("p1", "raw")
		w, err := objio.Create(ctx, st, key, objio.Encoding{Compression: c}, store.PutOptions{SizeHint: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("voltar "), 10000)
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		sum, err := w.Commit()
		if err != nil {
			t.Fatalf("%s: Commit: %v", c, err)
		}
		rc, err := st.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := io.ReadAll(rc)
		rc.Close()
		h := sha256.Sum256(stored)
		if sum.Bytes != int64(len(stored)) || sum.SHA256 != hex.EncodeToString(h[:]) {
			t.Errorf("%s: sum %+v, stored %d bytes with sha256 %x", c, sum, len(stored), h)
		}
		s, err := objio.Open(ctx, st, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(s.Data)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: read back %d bytes, %v", c, len(got), err)
		}
		d, err := s.Finish()
		s.Close()
		if err != nil || !d.Complete || d.SHA256 != sum.SHA256 || d.Bytes != sum.Bytes {
			t.Errorf("%s: digest %+v, %v; want %+v", c, d, err, sum)
		}
	}
}

// An aborted object never appears, and the source's failure stays the
// caller's to report.
func TestAbortLeavesNothing(t *testing.T) {
	st := local.New(t.TempDir())
	ctx := context.Background()
	w, err := objio.Create(ctx, st, "h/g/v/t/p1.tar.zst", objio.Encoding{}, store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte("x"), 5<<20))
	if err := w.Abort(errors.New("read error")); err != nil {
		t.Errorf("Abort blamed the store: %v", err)
	}
	if objs, _ := st.List(ctx, ""); len(objs) != 0 {
		t.Errorf("objects after Abort: %v", objs)
	}
}

// A store that fails on its own is named as the cause, with a hint for a
// full destination, whether the writer notices at Commit or gives up.
func TestStoreFailureIsTheStores(t *testing.T) {
	ctx := context.Background()
	for _, commit := range []bool{true, false} {
		st := brokenStore{local.New(t.TempDir())}
		w, err := objio.Create(ctx, st, "h/g/v/t/p1.tar", objio.Encoding{Compression: codec.None}, store.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, werr := w.Write(bytes.Repeat([]byte("x"), 1<<20))
		if commit {
			_, err = w.Commit()
		} else {
			err = w.Abort(werr)
		}
		if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "store p1.tar") {
			t.Errorf("commit %v: %v, want the store's ENOSPC for p1.tar", commit, err)
		}
	}
}

// A store error says what to do by its kind; one that brings its own hint
// keeps just that one, and an interrupt is no store failure to explain.
func TestStoreErrorHints(t *testing.T) {
	st := local.New(t.TempDir())
	for _, c := range []struct {
		name string
		err  error
		want string // the hint's start; "" for none
	}{
		{"full", unix.ENOSPC, "the destination"},
		{"quota", unix.EDQUOT, "the destination"},
		{"mkdir not permitted", &fs.PathError{Op: "mkdir", Path: "/srv/b/h", Err: unix.EPERM}, "voltar may not write into"},
		{"permission denied", &fs.PathError{Op: "open", Path: "/srv/b/h", Err: unix.EACCES}, "voltar may not write into"},
		{"read-only", unix.EROFS, "the filesystem holding"},
		{"unreachable", &net.OpError{Op: "dial", Net: "tcp", Err: unix.ECONNREFUSED}, st.String() + " did not answer"},
		{"own hint", fail.Hint(errors.New("bucket b does not exist"), "create the bucket"), "create the bucket"},
		{"other", errors.New("unexpected EOF"), "check that"},
		{"interrupted", context.Canceled, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := objio.StoreError(st, "p1.tar.zst", c.err)
			if !errors.Is(err, c.err) || !strings.HasPrefix(err.Error(), "store p1.tar.zst: ") {
				t.Errorf("error %q does not wrap %v or name the object", err, c.err)
			}
			hints := fail.Hints(err)
			switch {
			case c.want == "" && len(hints) != 0:
				t.Errorf("hints %q, want none", hints)
			case c.want != "" && (len(hints) != 1 || !strings.HasPrefix(hints[0], c.want)):
				t.Errorf("hints %q, want one starting %q", hints, c.want)
			}
		})
	}
}
