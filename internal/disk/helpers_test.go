package disk_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"voltar/internal/testutil"
)

// sparseImage is a volume of size bytes whose first bytes are head, whose
// last bytes are tail, and which is zero in between: enough to hold a real
// partition table without storing megabytes in the fuzz corpus.
type sparseImage struct {
	head, tail []byte
	size       int64
}

func newSparseImage(head, tail []byte, gapSectors uint16) *sparseImage {
	return &sparseImage{head: head, tail: tail, size: int64(len(head)) + int64(gapSectors)*512 + int64(len(tail))}
}

func (s *sparseImage) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off > s.size {
		return 0, fmt.Errorf("read at %d outside the image (%d bytes)", off, s.size)
	}
	n := 0
	for n < len(b) && off+int64(n) < s.size {
		o := off + int64(n)
		switch tailStart := s.size - int64(len(s.tail)); {
		case o < int64(len(s.head)):
			n += copy(b[n:], s.head[o:])
		case o >= tailStart:
			n += copy(b[n:], s.tail[o-tailStart:])
		default:
			end := min(tailStart, off+int64(len(b)))
			clear(b[n : end-off])
			n = int(end - off)
		}
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// slice returns the n bytes at off for writing, when they lie wholly in the
// head or the tail.
func (s *sparseImage) slice(off, n int64) []byte {
	tailStart := s.size - int64(len(s.tail))
	switch {
	case off >= 0 && off+n <= int64(len(s.head)):
		return s.head[off : off+n]
	case off >= tailStart && off+n <= s.size:
		return s.tail[off-tailStart : off-tailStart+n]
	}
	return nil
}

// sparseFromFile cuts an image file into head and tail for newSparseImage:
// tail is the last tailBytes bytes, head ends after the last non-zero
// 512-byte sector before it.
func sparseFromFile(t testing.TB, path string, tailBytes int) (head, tail []byte, gap uint16) {
	t.Helper()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tail = img[len(img)-tailBytes:]
	rest := img[:len(img)-len(tail)]
	end := 0
	for s := 0; s*512 < len(rest); s++ {
		for _, c := range rest[s*512 : (s+1)*512] {
			if c != 0 {
				end = (s + 1) * 512
				break
			}
		}
	}
	head = rest[:end]
	g := (len(rest) - end) / 512
	if g > 0xffff {
		t.Fatalf("%s: gap of %d sectors too large for a seed", path, g)
	}
	return head, tail, uint16(g)
}

// newImage creates a sparse image file of size bytes in a test directory.
func newImage(t testing.TB, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func openImage(t testing.TB, path string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	// Seek rather than Stat: path may be a block device.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	return f, size
}

// sfdisk writes a table described by an sfdisk script to img.
func sfdisk(t testing.TB, img, script string) {
	t.Helper()
	testutil.RequireTools(t, "sfdisk")
	cmd := exec.Command("sfdisk", "-q", "--no-reread", "--no-tell-kernel", img)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk %s: %v\n%s\nscript:\n%s", img, err, out, script)
	}
}

// sfdiskTable is the part of `sfdisk --json` the tests compare with.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Bootable bool   `json:"bootable"`
			Attrs    string `json:"attrs"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdiskJSON(t testing.TB, img string) sfdiskTable {
	t.Helper()
	out := testutil.Run(t, "sfdisk", "--json", img)
	var st sfdiskTable
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("parse sfdisk --json: %v\n%s", err, out)
	}
	return st
}

// partNumber is the number sfdisk appends to the device name in "node"
// (disk.img5, /dev/loop3p5).
func partNumber(t testing.TB, img, node string) int {
	t.Helper()
	i := len(node)
	for i > 0 && node[i-1] >= '0' && node[i-1] <= '9' {
		i--
	}
	n, err := strconv.Atoi(node[i:])
	if err != nil {
		t.Fatalf("node %q of %s: %v", node, img, err)
	}
	return n
}

// blkidExport runs `blkid -p -o export` on path and returns its variables.
func blkidExport(t testing.TB, path string) map[string]string {
	t.Helper()
	testutil.RequireTools(t, "blkid")
	out := testutil.Run(t, "blkid", "-p", "-o", "export", path)
	vars := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			// Export format escapes spaces and specials with "\".
			var b strings.Builder
			for i := 0; i < len(v); i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				b.WriteByte(v[i])
			}
			vars[k] = b.String()
		}
	}
	return vars
}

// mbrEntry is one of the four 16-byte entries for building tables by hand.
type mbrEntry struct {
	status, typ  byte
	start, count uint32
}

func putMBR(sec []byte, sig uint32, entries ...mbrEntry) {
	binary.LittleEndian.PutUint32(sec[440:], sig)
	for i, e := range entries {
		b := sec[446+16*i:]
		b[0] = e.status
		b[4] = e.typ
		binary.LittleEndian.PutUint32(b[8:], e.start)
		binary.LittleEndian.PutUint32(b[12:], e.count)
	}
	sec[510], sec[511] = 0x55, 0xAA
}
