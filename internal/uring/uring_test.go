package uring

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"voltar/internal/testutil"
)

func newRing(t *testing.T, n uint32) *Ring {
	t.Helper()
	r, err := New(n)
	if err != nil {
		testutil.Unavailable(t, "no io_uring on this kernel: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// More requests than the ring holds, of every kind, each result checked
// against the plain system call.
func TestBatches(t *testing.T) {
	dir := t.TempDir()
	const n = 50
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), bytes.Repeat([]byte{byte(i)}, i*100), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	r := newRing(t, 8)
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)

	sts := make([]unix.Statx_t, n+1)
	ops := make([]Op, n+1)
	for i := range n {
		ops[i] = Statx(dfd, cstr(strconv.Itoa(i)), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &sts[i])
	}
	ops[n] = Statx(dfd, cstr("missing"), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &sts[n])
	if err := r.Run(ops); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, strconv.Itoa(i)), &st); err != nil {
			t.Fatal(err)
		}
		if err := ops[i].Err(); err != nil || sts[i].Ino != st.Ino || int64(sts[i].Size) != st.Size || uint32(sts[i].Mode) != st.Mode {
			t.Fatalf("statx %d: %v, ino %d size %d mode %o; lstat: ino %d size %d mode %o", i, err, sts[i].Ino, sts[i].Size, sts[i].Mode, st.Ino, st.Size, st.Mode)
		}
	}
	if err := ops[n].Err(); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("statx of a missing file: %v, want ENOENT", err)
	}

	ops = ops[:n]
	for i := range n {
		ops[i] = Openat(dfd, cstr(strconv.Itoa(i)), unix.O_RDONLY|unix.O_CLOEXEC)
	}
	if err := r.Run(ops); err != nil {
		t.Fatal(err)
	}
	fds := make([]int, n)
	for i := range n {
		if err := ops[i].Err(); err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		fds[i] = int(ops[i].Res)
	}
	bufs := make([][]byte, n)
	for i := range n {
		bufs[i] = make([]byte, 8192)
		ops[i] = Pread(fds[i], bufs[i], 10)
	}
	if err := r.Run(ops); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		want := max(i*100-10, 0)
		if ops[i].Res != int32(want) || !bytes.Equal(bufs[i][:want], bytes.Repeat([]byte{byte(i)}, want)) {
			t.Fatalf("read %d: %d bytes (%v), want %d", i, ops[i].Res, ops[i].Err(), want)
		}
	}
	for i := range n {
		ops[i] = Close(fds[i])
	}
	if err := r.Run(ops); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := ops[i].Err(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
		if _, err := unix.FcntlInt(uintptr(fds[i]), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
			t.Fatalf("fd %d still open after the ring closed it", fds[i])
		}
	}
}

func TestPathNeedsNUL(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a path without its NUL byte was accepted")
		}
	}()
	Openat(unix.AT_FDCWD, []byte("x"), unix.O_RDONLY)
}
