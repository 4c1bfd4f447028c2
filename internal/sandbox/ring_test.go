package sandbox

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ringSetup makes a ring's file under a root as the launcher does, maps
// it as the guest does, and gives the host's stream over it with a pipe
// standing for the serial line.
func ringSetup(t *testing.T) (*guestRing, *hostStream, *os.File) {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, sbDir), 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, sbRing)
	if err := makeRing(path, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	r, err := mapRing(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.unmap)
	if string(r.mem[:len(ringMagic)]) != ringMagic {
		t.Fatal("no magic in a new ring")
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close(); wr.Close() })
	s := newHostStream(rd, root, slog.New(slog.DiscardHandler))
	t.Cleanup(s.close)
	return &guestRing{r: r}, s, wr
}

// The stream through the ring arrives whole and in order, wrapping
// around the ring several times with writes of every size, while the
// writer waits for room.
func TestRingCarriesTheStream(t *testing.T) {
	g, s, line := ringSetup(t)
	want := make([]byte, 3*ringData+12345)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	go func() {
		line.Write([]byte(ringHello))
		for p := want; len(p) > 0; {
			n := min(len(p), 1+rng.IntN(3<<20))
			g.Write(p[:n])
			p = p[n:]
		}
		g.Close()
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if s.mode != modeRing {
		t.Fatalf("read in mode %d, not through the ring", s.mode)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d, or different ones", len(got), len(want))
	}
}

// Without the hello the stream is the serial line's, byte for byte.
func TestRingNotAnnounced(t *testing.T) {
	_, s, line := ringSetup(t)
	go func() {
		line.Write([]byte(magic + "rest of the stream"))
		line.Close()
	}()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != magic+"rest of the stream" || s.mode != modeLine {
		t.Fatalf("read %q (mode %d), %v", got, s.mode, err)
	}
}

// What a hostile guest can do to the ring fails the stream with
// ErrMalformed and never crashes voltar: a head behind the tail or past
// the ring's size, bytes on the line after the hello, the file truncated
// under the mapping (SIGBUS), a file that is not the ring. A guest that
// is gone without closing the ring ends the stream (EOF; the records
// then say it is short).
func TestRingHostile(t *testing.T) {
	announce := func(line *os.File) {
		if _, err := line.Write([]byte(ringHello)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, g *guestRing, line *os.File, s *hostStream)
		eof  bool
	}{
		{"head past the data", func(t *testing.T, g *guestRing, line *os.File, s *hostStream) {
			announce(line)
			atomic.StoreUint64(g.r.head, ringData+1)
		}, false},
		{"head moved back", func(t *testing.T, g *guestRing, line *os.File, s *hostStream) {
			announce(line)
			g.Write([]byte("abc"))
			for atomic.LoadUint64(g.r.tail) != 3 {
				time.Sleep(time.Millisecond)
			}
			atomic.StoreUint64(g.r.head, 1)
		}, false},
		{"stray bytes on the line", func(t *testing.T, g *guestRing, line *os.File, s *hostStream) {
			announce(line)
			line.Write([]byte("more"))
		}, false},
		{"truncated", func(t *testing.T, g *guestRing, line *os.File, s *hostStream) {
			announce(line)
			g.Write(make([]byte, 1<<20))
			if err := os.Truncate(filepath.Join(s.root, sbRing), 0); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"not a regular file", func(t *testing.T, g *guestRing, line *os.File, s *hostStream) {
			path := filepath.Join(s.root, sbRing)
			os.Remove(path)
			if err := os.Symlink("/etc/passwd", path); err != nil {
				t.Fatal(err)
			}
			announce(line)
		}, false},
		{"a partial hello", func(t *testing.T, g *guestRing, line *os.File, s *hostStream) {
			line.Write([]byte(ringHello[:2] + "xxxxxx"))
		}, false},
		{"gone without closing", func(t *testing.T, g *guestRing, line *os.File, s *hostStream) {
			announce(line)
			g.Write([]byte("partial"))
			time.Sleep(10 * time.Millisecond)
			line.Close()
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, s, line := ringSetup(t)
			done := make(chan struct{})
			var got []byte
			var err error
			go func() {
				defer close(done)
				got, err = io.ReadAll(s)
			}()
			tc.do(t, g, line, s)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				line.Close() // the reader must end anyway
				<-done
				t.Fatalf("the reader did not stop (%d bytes, %v)", len(got), err)
			}
			switch {
			case tc.eof && err != nil:
				t.Fatalf("err %v, want the stream to end", err)
			case !tc.eof && !errors.Is(err, ErrMalformed) && !os.IsNotExist(err) && !errors.Is(err, unix.ELOOP):
				t.Fatalf("err %v (%d bytes), want ErrMalformed", err, len(got))
			}
		})
	}
}
