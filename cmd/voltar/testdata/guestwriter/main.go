// Command guestwriter runs in the libvirt test's guest (libvirt_test.go):
// it writes numbered files into every directory given, one directory
// after the other, forever, each file fsynced and renamed into place and
// "last" naming the newest, so a backup taken at any instant holds a
// consistent tree. A pause longer than 300 ms (a freeze) is printed on
// the console as "GAP <ms> ms before <n>".
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// keep is how many numbered files stay in each directory.
const keep = 20

// content is file n's content: its number, line after line, 8000 bytes.
func content(n int) []byte {
	line := []byte(strconv.Itoa(n) + "\n")
	return bytes.Repeat(line, 8000/len(line))
}

func write(dir string, n int) error {
	tmp := filepath.Join(dir, "tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(content(n)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "data", strconv.Itoa(n))); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "last.tmp"), []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "last.tmp"), filepath.Join(dir, "last")); err != nil {
		return err
	}
	os.Remove(filepath.Join(dir, "data", strconv.Itoa(n-keep)))
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func main() {
	dirs := os.Args[1:]
	for _, d := range dirs {
		os.MkdirAll(filepath.Join(d, "data"), 0o755)
	}
	prev := time.Now()
	for n := 1; ; n++ {
		for _, d := range dirs {
			if err := write(d, n); err != nil {
				fmt.Println("WRITER-ERROR", err)
				time.Sleep(time.Second)
			}
		}
		now := time.Now()
		if gap := now.Sub(prev); gap > 300*time.Millisecond {
			fmt.Printf("GAP %d ms before %d\n", gap.Milliseconds(), n)
		}
		prev = now
		if n == 1 {
			fmt.Println("WRITER-STARTED")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
