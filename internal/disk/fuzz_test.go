package disk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"voltar/internal/disk"
	"voltar/internal/testutil"
)

var updateCorpus = flag.Bool("update-corpus", false, "regenerate testdata/fuzz/FuzzReadTable seeds from real sfdisk/mkfs output (needs root)")

// FuzzReadTable feeds ReadTable volumes made of a head, a zero gap and a
// tail, which is how a real table looks: MBR, GPT header and entries, EBRs
// near the start, the backup GPT at the end. The seeds in
// testdata/fuzz/FuzzReadTable are real tables (see TestUpdateFuzzCorpus).
//
// With fixCRC, the GPT checksums are recomputed after mutation, so that the
// fuzzer gets past them to the header and entry checks.
//
// The property: ReadTable never panics or hangs, fails only with ErrNoTable
// or a *TableError (the sparse image never fails a read), and every
// partition it returns is non-empty, inside the volume and overlaps no other.
func FuzzReadTable(f *testing.F) {
	for _, s := range syntheticSeeds() {
		f.Add(s.head, s.tail, s.gap, s.fixCRC)
	}
	f.Fuzz(func(t *testing.T, head, tail []byte, gap uint16, fixCRC bool) {
		if fixCRC {
			head, tail = bytes.Clone(head), bytes.Clone(tail)
		}
		img := newSparseImage(head, tail, gap)
		if fixCRC {
			fixGPTChecksums(img)
		}
		start := time.Now()
		table, err := disk.ReadTable(img, img.size)
		if d := time.Since(start); d > time.Second {
			t.Errorf("ReadTable took %s", d)
		}
		if err != nil {
			var te *disk.TableError
			if !errors.Is(err, disk.ErrNoTable) && !errors.As(err, &te) {
				t.Fatalf("ReadTable failed with neither ErrNoTable nor *TableError: %v", err)
			}
			if table != nil {
				t.Fatalf("ReadTable returned a table and an error")
			}
			return
		}
		checkTableInvariants(t, table, img.size)
	})
}

func checkTableInvariants(t *testing.T, table *disk.Table, size int64) {
	t.Helper()
	if (table.Type != "mbr" && table.Type != "gpt") || (table.SectorSize != 512 && table.SectorSize != 4096) {
		t.Fatalf("table type %q sector size %d", table.Type, table.SectorSize)
	}
	ps := append([]disk.Partition(nil), table.Partitions...)
	numbers := map[int]bool{}
	for _, p := range ps {
		if p.Size <= 0 || p.Start <= 0 || p.Start >= size || p.Size > size-p.Start {
			t.Fatalf("partition %d [%d, +%d) not inside the volume [0, %d)", p.Number, p.Start, p.Size, size)
		}
		if p.Number <= 0 || numbers[p.Number] {
			t.Fatalf("partition number %d invalid or repeated", p.Number)
		}
		numbers[p.Number] = true
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Start < ps[j].Start })
	for i := 1; i < len(ps); i++ {
		if ps[i].Start < ps[i-1].Start+ps[i-1].Size {
			t.Fatalf("partitions %d and %d overlap", ps[i-1].Number, ps[i].Number)
		}
	}
}

type seed struct {
	name       string
	head, tail []byte
	gap        uint16
	fixCRC     bool
}

// fixGPTChecksums recomputes the entry array and header CRCs of every GPT
// header in img (primary and backup, both sector sizes) that lies in its
// head or tail.
func fixGPTChecksums(img *sparseImage) {
	for _, ss := range []int64{512, 4096} {
		for _, lba := range []int64{1, img.size/ss - 1} {
			hdr := img.slice(lba*ss, ss)
			if hdr == nil || string(hdr[:8]) != "EFI PART" {
				continue
			}
			hsize := int64(binary.LittleEndian.Uint32(hdr[12:]))
			if hsize < 92 || hsize > ss {
				continue
			}
			n := int64(binary.LittleEndian.Uint32(hdr[80:]))
			es := int64(binary.LittleEndian.Uint32(hdr[84:]))
			elba := binary.LittleEndian.Uint64(hdr[72:])
			if n*es <= 1<<20 && elba < uint64(img.size/ss) && int64(elba)*ss+n*es <= img.size {
				entries := make([]byte, n*es)
				img.ReadAt(entries, int64(elba)*ss)
				binary.LittleEndian.PutUint32(hdr[88:], crc32.ChecksumIEEE(entries))
			}
			binary.LittleEndian.PutUint32(hdr[16:], 0)
			binary.LittleEndian.PutUint32(hdr[16:], crc32.ChecksumIEEE(hdr[:hsize]))
		}
	}
}

// syntheticSeeds are hand-made damaged tables, the cases real tools never
// write.
func syntheticSeeds() []seed {
	sec := func(n int) []byte { return make([]byte, n*512) }

	loop := sec(16)
	putMBR(loop, 1, mbrEntry{0, 0x05, 4, 40})
	putMBR(loop[4*512:], 0, mbrEntry{0, 0x83, 1, 2}, mbrEntry{0, 0x05, 10, 5})
	putMBR(loop[14*512:], 0, mbrEntry{0x80, 0x83, 1, 2}, mbrEntry{0, 0x05, 10, 5})

	overlap := sec(1)
	putMBR(overlap, 7, mbrEntry{0, 0x83, 64, 100}, mbrEntry{0, 0x83, 128, 100}, mbrEntry{0, 0xee, 1, 0xffffffff})

	huge := sec(1)
	putMBR(huge, 7, mbrEntry{0x80, 0x07, 0xffffffff, 0xffffffff})

	return []seed{
		{"ebr-loop", loop, nil, 40, false},
		{"overlap", overlap, nil, 1000, true},
		{"huge", huge, nil, 0, false},
		{"empty", nil, nil, 0, false},
	}
}

// TestFuzzSeedsAreReal checks the committed corpus still parses as the
// tables it was made from, so the fuzzer starts from valid structures.
func TestFuzzSeedsAreReal(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzReadTable/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no committed seeds: %v", err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			s := readSeed(t, file)
			img := newSparseImage(s.head, s.tail, s.gap)
			if s.fixCRC {
				fixGPTChecksums(img) // a no-op on an intact table
			}
			table, err := disk.ReadTable(img, img.size)
			switch {
			case strings.HasPrefix(name, "fs-"):
				if !errors.Is(err, disk.ErrNoTable) {
					t.Errorf("boot sector seed: %v, want ErrNoTable", err)
				}
			case err != nil:
				t.Errorf("ReadTable: %v", err)
			case len(table.Partitions) < 2:
				t.Errorf("only %d partitions", len(table.Partitions))
			default:
				checkTableInvariants(t, table, img.size)
			}
		})
	}
}

// readSeed parses a file in the "go test fuzz v1" format for this target.
func readSeed(t *testing.T, path string) seed {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", 5)
	if len(lines) != 5 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a 4-value fuzz corpus file", path)
	}
	var s seed
	var hs, ts string
	if _, err := fmt.Sscanf(lines[1], "[]byte(%q)", &hs); err != nil {
		t.Fatalf("%s head: %v", path, err)
	}
	if _, err := fmt.Sscanf(lines[2], "[]byte(%q)", &ts); err != nil {
		t.Fatalf("%s tail: %v", path, err)
	}
	if _, err := fmt.Sscanf(lines[3], "uint16(%d)", &s.gap); err != nil {
		t.Fatalf("%s gap: %v", path, err)
	}
	if _, err := fmt.Sscanf(lines[4], "bool(%t)", &s.fixCRC); err != nil {
		t.Fatalf("%s fixCRC: %v", path, err)
	}
	s.head, s.tail = []byte(hs), []byte(ts)
	return s
}

func writeSeed(t *testing.T, s seed) {
	t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "go test fuzz v1\n[]byte(%q)\n[]byte(%q)\nuint16(%d)\nbool(%t)\n", s.head, s.tail, s.gap, s.fixCRC)
	dir := filepath.Join("testdata", "fuzz", "FuzzReadTable")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, s.name), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateFuzzCorpus regenerates the committed seeds with the real tools:
//
//	go test ./internal/disk -run TestUpdateFuzzCorpus -update-corpus
func TestUpdateFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to regenerate the seeds")
	}
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "sfdisk", "losetup", "mkfs.vfat", "mkntfs")
	// Small layouts keep the seeds small: every sector up to the last EBR
	// is in the head.
	for _, tc := range []struct {
		name       string
		sectorSize int
		sectors    int
		script     string
	}{
		{"mbr-logicals", 512, 64, "label: dos\nlabel-id: 0x0badcafe\nstart=4, size=4, type=83, bootable\nstart=8, size=40, type=5\nstart=9, size=4, type=83\nstart=15, size=4, type=82\nstart=21, size=4, type=7\nstart=50, size=10, type=c\n"},
		{"gpt-small", 512, 64, "label: gpt\ntable-length: 4\nfirst-lba: 3\nstart=4, size=8, name=\"a\"\nstart=16, size=8, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, attrs=\"LegacyBIOSBootable\"\nstart=32, size=16, name=\"data\"\n"},
		{"gpt-4k", 4096, 64, "label: gpt\ntable-length: 4\nfirst-lba: 3\nstart=4, size=8, name=\"a\"\nstart=16, size=30, name=\"b\"\n"},
		{"mbr-primaries", 512, 8192, sfdiskScripts[0].script},
		{"gpt-128-entries", 512, 16384, sfdiskScripts[2].script},
	} {
		img := newImage(t, int64(tc.sectorSize*tc.sectors))
		target := img
		if tc.sectorSize != 512 {
			// This sfdisk has no --sector-size: give it a loop
			// device with 4096-byte logical sectors.
			target = strings.TrimSpace(testutil.Run(t, "losetup", "--find", "--show", "--sector-size", fmt.Sprint(tc.sectorSize), img))
		}
		sfdisk(t, target, tc.script)
		if target != img {
			testutil.Run(t, "losetup", "-d", target)
		}
		tailSectors := 0
		if strings.HasPrefix(tc.name, "gpt") {
			tailSectors = 33
			if strings.Contains(tc.script, "table-length: 4") {
				tailSectors = 2
			}
		}
		head, tail, gap := sparseFromFile(t, img, tailSectors*tc.sectorSize)
		writeSeed(t, seed{tc.name, head, tail, gap, tailSectors > 0})
	}
	// Whole-volume filesystems whose boot sector ends in 0x55AA.
	for _, tc := range []struct {
		name string
		mkfs []string
	}{
		{"fs-fat16", []string{"mkfs.vfat", "-F", "16"}},
		{"fs-fat32", []string{"mkfs.vfat", "-F", "32"}},
		{"fs-ntfs", []string{"mkntfs", "-F", "-f", "-q"}},
	} {
		img := newImage(t, 64<<20)
		cmd := exec.Command(tc.mkfs[0], append(tc.mkfs[1:], img)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tc.mkfs, err, out)
		}
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		// Only sector 0 matters to ReadTable; a 1 MiB volume keeps
		// the gap inside uint16.
		writeSeed(t, seed{tc.name, b[:512], nil, 2047, false})
	}
}
