// Command corpusgen writes the benchmark corpus of bench/run.sh into a
// directory (normally the root of a freshly made ext4 image).
//
//	corpusgen mixed DIR            ~1.6 GiB: source tree, binaries, compressed data,
//	                               large files, 100k small files
//	corpusgen small DIR COUNT      COUNT small text files (200 B .. 8 KiB) in dirs of 1000
//	corpusgen fill DIR BYTES       BYTES of mixed content in files of 1..64 MiB
//
// Everything generated comes from fixed seeds (math/rand/v2 PCG and
// ChaCha8), so the same arguments give the same bytes. The "mixed" corpus
// also copies two real trees: the Go distribution's src/ (fixed by the Go
// version) and ELF files from /usr/bin and /usr/lib (fixed by the Debian
// packages installed); it prints a checksum of what it copied so runs on
// different machines can be compared.
package main

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: corpusgen mixed DIR | small DIR COUNT | fill DIR BYTES")
		os.Exit(2)
	}
	dir := os.Args[2]
	var err error
	switch os.Args[1] {
	case "mixed":
		err = mixed(dir)
	case "small":
		var n int
		if n, err = strconv.Atoi(arg(3)); err == nil {
			err = smallFiles(filepath.Join(dir, "small"), n, 7)
		}
	case "fill":
		var n int64
		if n, err = strconv.ParseInt(arg(3), 10, 64); err == nil {
			err = fill(filepath.Join(dir, "fill"), n)
		}
	default:
		err = fmt.Errorf("unknown corpus %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "corpusgen:", err)
		os.Exit(1)
	}
}

func arg(i int) string {
	if len(os.Args) <= i {
		fmt.Fprintln(os.Stderr, "corpusgen: missing argument")
		os.Exit(2)
	}
	return os.Args[i]
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

func mixed(dir string) error {
	steps := []struct {
		name string
		f    func() error
	}{
		{"source tree (GOROOT/src)", func() error { return copyTree(filepath.Join(runtime.GOROOT(), "src"), filepath.Join(dir, "src", "go")) }},
		{"generated source-like text", func() error { return textTree(filepath.Join(dir, "src", "gen"), 96*mib, 1) }},
		{"binaries", func() error { return binaries(filepath.Join(dir, "bin"), 320*mib) }},
		{"compressed data", func() error { return compressed(filepath.Join(dir, "compressed")) }},
		{"large files", func() error { return large(filepath.Join(dir, "large")) }},
		{"small files", func() error { return smallFiles(filepath.Join(dir, "small"), 100_000, 5) }},
		{"links", func() error { return links(dir) }},
	}
	for _, s := range steps {
		fmt.Fprintf(os.Stderr, "corpusgen: %s\n", s.name)
		if err := s.f(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// copyTree copies the regular files, directories and symlinks under src.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, out)
		case d.Type().IsRegular():
			return copyFile(p, out)
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}

// binaries copies ELF files of /usr/bin and /usr/lib, in path order, up to
// limit bytes, and prints the SHA-256 of the list of (path, size).
func binaries(dst string, limit int64) error {
	var paths []string
	for _, root := range []string{"/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib"} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				paths = append(paths, p)
			}
			return nil
		})
	}
	sort.Strings(paths)
	seen := map[string]bool{}
	h := sha256.New()
	var total int64
	n := 0
	for _, p := range paths {
		if seen[p] || total >= limit {
			continue
		}
		seen[p] = true
		fi, err := os.Stat(p)
		if err != nil || fi.Size() < 4*kib || fi.Size() > 64*mib || !isELF(p) {
			continue
		}
		out := filepath.Join(dst, strings.TrimPrefix(p, "/usr/"))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		if err := copyFile(p, out); err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, fi.Size())
		total += fi.Size()
		n++
	}
	fmt.Fprintf(os.Stderr, "corpusgen: %d binaries, %d MiB, list sha256 %x\n", n, total/mib, h.Sum(nil)[:8])
	return nil
}

func isELF(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// words is the vocabulary of generated text: identifiers and English.
var words = strings.Fields(`func return if else for range var const type struct interface map chan
go defer select case switch default break continue package import nil true false err error string
int int64 uint8 byte len cap make append copy new ctx context buffer reader writer file path name
size offset count index value key result config options server client request response handler
the of and to in is that it for on with as by this be are from at or an was not which have will
backup volume snapshot partition mount archive compress stream store object manifest checksum
restore verify retention prune device loop filesystem journal extent block sector inode directory`)

// textGen writes source- and log-like text: Zipf-distributed words,
// indentation, punctuation and numbers, about 3-4x compressible.
type textGen struct {
	r    *rand.Rand
	zipf *rand.Zipf
}

func newTextGen(seed uint64) *textGen {
	r := rand.New(rand.NewPCG(seed, 0x766f6c746172))
	return &textGen{r: r, zipf: rand.NewZipf(r, 1.2, 4, uint64(len(words)-1))}
}

func (g *textGen) line(b []byte) []byte {
	b = append(b, "\t\t\t\t"[:g.r.IntN(4)]...)
	n := 3 + g.r.IntN(10)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, " .,(=:"[g.r.IntN(6)])
			if b[len(b)-1] != ' ' {
				b = append(b, ' ')
			}
		}
		b = append(b, words[g.zipf.Uint64()]...)
		if g.r.IntN(8) == 0 {
			b = strconv.AppendInt(b, int64(g.r.IntN(100000)), 10)
		}
	}
	return append(b, '\n')
}

// text returns about n bytes of text.
func (g *textGen) text(b []byte, n int) []byte {
	b = b[:0]
	for len(b) < n {
		b = g.line(b)
	}
	return b
}

// textTree writes total bytes of text files of 1..64 KiB, 200 per directory.
func textTree(dir string, total int64, seed uint64) error {
	g := newTextGen(seed)
	var buf []byte
	for i, done := 0, int64(0); done < total; i++ {
		n := 1*kib + g.r.IntN(63*kib)
		buf = g.text(buf, n)
		p := filepath.Join(dir, fmt.Sprintf("pkg%03d", i/200), fmt.Sprintf("file%05d.go", i))
		if err := writeFile(p, buf); err != nil {
			return err
		}
		done += int64(len(buf))
	}
	return nil
}

func writeFile(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

// randomFile writes n incompressible bytes from a ChaCha8 stream.
func randomFile(p string, n int64, seed byte) error {
	var s [32]byte
	s[0] = seed
	c := rand.NewChaCha8(s)
	f, err := create(p)
	if err != nil {
		return err
	}
	buf := make([]byte, mib)
	for n > 0 {
		m := min(n, int64(len(buf)))
		c.Read(buf[:m])
		if _, err := f.Write(buf[:m]); err != nil {
			f.Close()
			return err
		}
		n -= m
	}
	return f.Close()
}

func create(p string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	return os.Create(p)
}

// compressed writes media-like random files and gzip files of text.
func compressed(dir string) error {
	for i := 0; i < 8; i++ {
		if err := randomFile(filepath.Join(dir, "media", fmt.Sprintf("video%d.mp4", i)), 16*mib, byte(10+i)); err != nil {
			return err
		}
	}
	for i := 0; i < 64; i++ {
		if err := randomFile(filepath.Join(dir, "media", fmt.Sprintf("photo%02d.jpg", i)), int64(256*kib+i*16*kib), byte(100+i)); err != nil {
			return err
		}
	}
	g := newTextGen(2)
	var buf []byte
	for i := 0; i < 400; i++ {
		buf = g.text(buf, 64*kib+g.r.IntN(448*kib))
		f, err := create(filepath.Join(dir, "logs", fmt.Sprintf("app.log.%d.gz", i)))
		if err != nil {
			return err
		}
		zw, _ := gzip.NewWriterLevel(f, 6)
		zw.Write(buf)
		zw.Close()
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// large writes a few big files: a log, a database-like file of records and
// a disk-image-like file mixing zeros, text and random data.
func large(dir string) error {
	g := newTextGen(3)
	if err := streamFile(filepath.Join(dir, "server.log"), 256*mib, func(b []byte) []byte {
		return g.text(b, mib)
	}); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(4, 4))
	if err := streamFile(filepath.Join(dir, "table.db"), 256*mib, func(b []byte) []byte {
		// 128-byte rows: id, timestamps, small ints, a name, padding.
		b = b[:0]
		for len(b) < mib {
			row := make([]byte, 128)
			id := r.Uint64() % 10_000_000
			for k := 0; k < 8; k++ {
				row[k] = byte(id >> (8 * k))
			}
			ts := uint64(1_700_000_000 + r.IntN(30_000_000))
			for k := 0; k < 8; k++ {
				row[8+k] = byte(ts >> (8 * k))
			}
			row[16], row[17] = byte(r.IntN(16)), byte(r.IntN(4))
			copy(row[24:], words[r.IntN(len(words))]+"-"+words[r.IntN(len(words))])
			b = append(b, row...)
		}
		return b
	}); err != nil {
		return err
	}
	var s [32]byte
	s[0] = 5
	c := rand.NewChaCha8(s)
	gi := newTextGen(6)
	return streamFile(filepath.Join(dir, "disk.img"), 192*mib, func(b []byte) []byte {
		b = b[:mib]
		switch r.IntN(4) {
		case 0:
			clear(b)
		case 1:
			c.Read(b)
		default:
			b = gi.text(b, mib)[:mib]
		}
		return b
	})
}

func streamFile(p string, size int64, next func([]byte) []byte) error {
	f, err := create(p)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, mib)
	buf := make([]byte, 0, 2*mib)
	for size > 0 {
		buf = next(buf[:0])
		m := min(size, int64(len(buf)))
		if _, err := w.Write(buf[:m]); err != nil {
			f.Close()
			return err
		}
		size -= m
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// smallFiles writes n config-like files of 200 B..8 KiB, 1000 per directory.
func smallFiles(dir string, n int, seed uint64) error {
	g := newTextGen(seed)
	var buf []byte
	for i := 0; i < n; i++ {
		buf = g.text(buf, 200+g.r.IntN(8*kib-200))
		p := filepath.Join(dir, fmt.Sprintf("d%04d", i/1000), fmt.Sprintf("f%06d.conf", i))
		if i%1000 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// fill writes total bytes of mixed content (text, records, random, zeros)
// in files of 1..64 MiB, 100 per directory.
func fill(dir string, total int64) error {
	g := newTextGen(8)
	r := rand.New(rand.NewPCG(9, 9))
	var s [32]byte
	s[0] = 9
	c := rand.NewChaCha8(s)
	for i, done := 0, int64(0); done < total; i++ {
		size := min(int64(1+r.IntN(64))*mib, total-done)
		kind := r.IntN(10)
		p := filepath.Join(dir, fmt.Sprintf("d%03d", i/100), fmt.Sprintf("f%05d", i))
		err := streamFile(p, size, func(b []byte) []byte {
			switch {
			case kind < 6:
				return g.text(b, mib)
			case kind < 8:
				b = b[:mib]
				c.Read(b)
				return b
			default:
				b = b[:mib]
				for k := range b {
					b[k] = byte(k / 512) // block-patterned, very compressible
				}
				return b
			}
		})
		if err != nil {
			return err
		}
		done += size
	}
	return nil
}

// links adds symlinks and hard links, as a real root filesystem has.
func links(dir string) error {
	for i := 0; i < 1000; i++ {
		t := fmt.Sprintf("../small/d0000/f%06d.conf", i)
		p := filepath.Join(dir, "links", fmt.Sprintf("s%04d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(t, p); err != nil {
			return err
		}
		if i%10 == 0 {
			if err := os.Link(filepath.Join(dir, "small", fmt.Sprintf("d0000/f%06d.conf", i)), p+".hard"); err != nil {
				return err
			}
		}
	}
	return nil
}
