package disk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"voltar/internal/disk"
	"voltar/internal/testutil"
)

// testTag is unique per test and process, so that checks for leftovers only
// look at this test's loops: other tests and people may use loop devices on
// the same machine at the same time.
func testTag(t testing.TB) string {
	tag := fmt.Sprintf("voltar-test:%d:%s", os.Getpid(), t.Name())
	if len(tag) > disk.MaxTagLen {
		tag = tag[:disk.MaxTagLen]
	}
	return tag
}

// attach attaches a loop device for the test and makes sure it is gone at
// the end, whatever happened.
func attach(t testing.TB, backing string, off, size int64, readOnly bool) *disk.Loop {
	t.Helper()
	testutil.RequireRoot(t)
	tag := testTag(t)
	l, err := disk.AttachLoop(context.Background(), backing, off, size, readOnly, tag)
	if err != nil {
		t.Fatalf("AttachLoop: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Detach(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		assertNoLoops(t, tag, backing)
	})
	return l
}

// assertNoLoops fails t if a loop device with tag or backed by backing is
// still attached, according to both ListLoops and `losetup -a`.
func assertNoLoops(t testing.TB, tag, backing string) {
	t.Helper()
	var left []string
	// Freeing a loop device after its last close is synchronous on current
	// kernels, but give udev and probers a moment.
	for i := 0; i < 50; i++ {
		left = left[:0]
		loops, err := disk.ListLoops()
		if err != nil {
			t.Fatalf("ListLoops: %v", err)
		}
		for _, l := range loops {
			if (tag != "" && l.Tag == tag) || l.Backing == backing {
				left = append(left, fmt.Sprintf("%+v", l))
			}
		}
		if out, err := exec.Command("losetup", "-a").CombinedOutput(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "("+backing+")") {
					left = append(left, "losetup -a: "+line)
				}
			}
		}
		if len(left) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("loop devices left behind:\n%s", strings.Join(left, "\n"))
}

// patterned creates a file whose every 512-byte sector starts with its
// number, so a read at the wrong offset shows.
func patterned(t testing.TB, size int64) string {
	t.Helper()
	buf := make([]byte, size)
	for s := int64(0); s < size/512; s++ {
		copy(buf[s*512:], fmt.Sprintf("sector %08d", s))
	}
	path := filepath.Join(t.TempDir(), "backing.img")
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAttachLoopReadOnly(t *testing.T) {
	backing := patterned(t, 4<<20)
	l := attach(t, backing, 1<<20, 2<<20, true)

	if !strings.HasPrefix(l.Path, "/dev/loop") {
		t.Errorf("Path = %q", l.Path)
	}
	dev, err := os.Open(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	size, err := dev.Seek(0, io.SeekEnd)
	if err != nil || size != 2<<20 {
		t.Errorf("device size = %d, %v; want %d", size, err, 2<<20)
	}
	b := make([]byte, 16)
	if _, err := dev.ReadAt(b, 0); err != nil || !bytes.HasPrefix(b, []byte("sector 00002048")) {
		t.Errorf("first sector = %q, %v; want sector 2048 of the backing", b, err)
	}
	// The device stays until its last opener closes it.
	dev.Close()
	if w, err := os.OpenFile(l.Path, os.O_WRONLY, 0); err == nil {
		_, werr := w.WriteAt([]byte("x"), 0)
		w.Close()
		if werr == nil {
			t.Errorf("writing to a read-only loop device succeeded")
		}
	}

	loops, err := disk.ListLoops()
	if err != nil {
		t.Fatal(err)
	}
	var found *disk.LoopInfo
	for i := range loops {
		if loops[i].Path == l.Path {
			found = &loops[i]
		}
	}
	want := disk.LoopInfo{Path: l.Path, Backing: backing, Tag: testTag(t), Offset: 1 << 20, SizeLimit: 2 << 20}
	if found == nil || *found != want {
		t.Errorf("ListLoops entry = %+v, want %+v", found, want)
	}

	if err := l.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if err := l.Detach(); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
	assertNoLoops(t, testTag(t), backing)
}

func TestAttachLoopWithoutLoopConfigure(t *testing.T) {
	defer disk.WithoutLoopConfigure()()
	t.Run("read-only", TestAttachLoopReadOnly)
	t.Run("writable", TestAttachLoopWritableToEnd)
}

func TestAttachLoopWritableToEnd(t *testing.T) {
	backing := patterned(t, 4<<20)
	l := attach(t, backing, 3<<20, 0, false)
	if l.Size != 1<<20 {
		t.Errorf("Size = %d, want the rest of the backing (%d)", l.Size, 1<<20)
	}
	dev, err := os.OpenFile(l.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.WriteAt([]byte("written through loop"), 512); err != nil {
		t.Fatal(err)
	}
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	dev.Close()
	f, _ := openImage(t, backing)
	b := make([]byte, 20)
	if _, err := f.ReadAt(b, 3<<20+512); err != nil || string(b) != "written through loop" {
		t.Errorf("backing at offset = %q, %v", b, err)
	}
}

func TestAttachLoopOnBlockDevice(t *testing.T) {
	backing := patterned(t, 4<<20)
	outer := attach(t, backing, 0, 0, true)
	inner, err := disk.AttachLoop(context.Background(), outer.Path, 512*10, 512*4, true, testTag(t)+"/in")
	if err != nil {
		t.Fatalf("AttachLoop on a block device: %v", err)
	}
	defer inner.Detach()
	f, _ := openImage(t, inner.Path)
	b := make([]byte, 15)
	if _, err := f.ReadAt(b, 0); err != nil || string(b) != "sector 00000010" {
		t.Errorf("read %q, %v", b, err)
	}
	f.Close()
	if err := inner.Detach(); err != nil {
		t.Fatal(err)
	}
}

func TestAttachLoopErrors(t *testing.T) {
	testutil.RequireRoot(t)
	backing := patterned(t, 1<<20)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		off, size int64
		tag       string
		want      string
	}{
		{"past end", 2 << 20, 0, "t", "past the end of the backing"},
		{"range past end", 512, 1 << 20, "t", "ends at byte 1049088, past the end"},
		{"long tag", 0, 0, strings.Repeat("x", 64), "longer than 63 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := disk.AttachLoop(ctx, backing, tc.off, tc.size, true, tc.tag)
			if err == nil {
				l.Detach()
				t.Fatal("AttachLoop succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), backing) {
				t.Errorf("error %q, want it to name %s and say %q", err, backing, tc.want)
			}
		})
	}
	if _, err := disk.AttachLoop(ctx, filepath.Join(t.TempDir(), "missing"), 0, 0, true, "t"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing backing: %v, want ErrNotExist", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := disk.AttachLoop(cctx, backing, 0, 0, true, "t"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
	assertNoLoops(t, "t", backing)
}

// Many concurrent attaches race for the same free device numbers.
func TestAttachLoopConcurrent(t *testing.T) {
	backing := patterned(t, 1<<20)
	testutil.RequireRoot(t)
	const n = 8
	loops := make(chan *disk.Loop, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			l, err := disk.AttachLoop(context.Background(), backing, int64(i)*512, 512, true, testTag(t))
			if err != nil {
				errs <- err
				return
			}
			loops <- l
		}()
	}
	var got []*disk.Loop
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			t.Error(err)
		case l := <-loops:
			got = append(got, l)
		}
	}
	// All attached at once: each must have its own device.
	seen := map[string]bool{}
	for _, l := range got {
		if seen[l.Path] {
			t.Errorf("%s handed out twice", l.Path)
		}
		seen[l.Path] = true
	}
	for _, l := range got {
		if err := l.Detach(); err != nil {
			t.Error(err)
		}
	}
	assertNoLoops(t, testTag(t), backing)
}

// A loop device attached by someone else (losetup, no AUTOCLEAR) is what
// DetachLoop is for.
func TestDetachLoopByPath(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "losetup")
	backing := patterned(t, 1<<20)
	dev := strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", backing))
	t.Cleanup(func() { testutil.DetachLoopOf(dev, backing); assertNoLoops(t, "", backing) })
	loops, err := disk.ListLoops()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range loops {
		if l.Path == dev {
			found = l.Backing == backing && l.Tag == backing[:min(len(backing), disk.MaxTagLen)]
		}
	}
	if !found {
		t.Errorf("ListLoops does not show %s with backing and tag %s: %+v", dev, backing, loops)
	}
	if err := disk.DetachLoop(dev); err != nil {
		t.Fatal(err)
	}
	assertNoLoops(t, "", backing)
	// (Whether detaching a free device is an error is not tried here: by
	// then the number may be another test's, in another package.)
}
