package archive

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPrefetchPauses follows the prefetcher's pauses on a real file: the
// workers pause after every files, stay paused while first reads find the
// page cache, and resume, for twice as many files, at the first read that
// does not; without workers nothing pauses.
func TestPrefetchPauses(t *testing.T) {
	// On disk, not tmpfs: the page cache of a disk file can be dropped.
	dir, err := os.MkdirTemp("/var/tmp", "voltar-prefetch-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := bytes.Repeat([]byte("voltar prefetch "), 8192) // 128 KiB
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil { // clean pages can be dropped
		t.Fatal(err)
	}

	p := newPrefetcher(true)
	defer p.close()
	p.every = 3
	buf := make([]byte, len(data))
	for i := range 3 {
		if got := p.read(fd, buf); got != nil {
			t.Fatalf("read %d with the workers running gave %d bytes, want none (the caller reads)", i, len(got))
		}
	}
	if !p.paused {
		t.Fatal("not paused after p.every files")
	}
	cached := cachedReads.Load()
	for i := range 2 {
		got := p.read(fd, buf)
		if !bytes.Equal(got, data) {
			t.Fatalf("paused read %d of a cached file: %d bytes, not the file's %d", i, len(got), len(data))
		}
		if !p.paused {
			t.Fatalf("paused read %d of a cached file resumed the workers", i)
		}
	}
	if n := cachedReads.Load() - cached; n != 2 {
		t.Errorf("cachedReads counted %d cached reads, want 2", n)
	}

	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	got := p.read(fd, buf)
	if p.paused {
		t.Fatalf("a read of a file not in the page cache (%d of %d bytes came back) left the workers paused", len(got), len(data))
	}
	if !bytes.Equal(got, data[:len(got)]) {
		t.Fatal("the bytes read before the miss are not the file's")
	}
	if p.every != 6 || p.files != 0 || p.never {
		t.Errorf("after a miss: every %d files %d never %v, want 6, 0, false", p.every, p.files, p.never)
	}

	off := newPrefetcher(false)
	defer off.close()
	for range prefetchEvery + 1 {
		if got := off.read(fd, buf); got != nil || off.paused {
			t.Fatal("a prefetcher without workers paused or read")
		}
	}
}
