package mountfs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A running `voltar mount` records itself in <runtime_dir>/mounts/<pid>,
// so that after a kill -9 (which leaves the kernel's mount with no server:
// "transport endpoint is not connected") the next voltar command unmounts
// it (Sweeper).

// record is one running mount.
type record struct {
	PID        int    `json:"pid"`
	Start      uint64 `json:"start"` // the process's start time, against pid reuse
	Mountpoint string `json:"mountpoint"`
}

func recordDir(runtimeDir string) string { return filepath.Join(runtimeDir, "mounts") }

// Register records this process's mount at mountpoint; the returned
// function removes the record.
func Register(runtimeDir, mountpoint string) (func(), error) {
	dir := recordDir(runtimeDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	start, err := startTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(record{PID: os.Getpid(), Start: start, Mountpoint: mountpoint})
	p := filepath.Join(dir, strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, err
	}
	return func() { os.Remove(p) }, nil
}

// startTime is field 22 of /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, errors.New("bad /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Sweeper unmounts the mounts of dead `voltar mount` processes.
type Sweeper struct{ RuntimeDir string }

// Sweep implements volume.Sweeper.
func (s Sweeper) Sweep(ctx context.Context) (int, error) {
	dir := recordDir(s.RuntimeDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var r record
		if json.Unmarshal(b, &r) != nil || r.PID <= 0 {
			os.Remove(p)
			continue
		}
		if st, err := startTime(r.PID); err == nil && st == r.Start {
			continue // still serving
		}
		if mounted(r.Mountpoint) {
			if err := unix.Unmount(r.Mountpoint, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount dead voltar mount %s: %w", r.Mountpoint, err))
				continue
			}
			n++
		}
		os.Remove(p)
	}
	return n, errors.Join(errs...)
}

// mounted reports whether a voltar FUSE file system is mounted at p.
func mounted(p string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		sep := 6
		for sep < len(fields) && fields[sep] != "-" {
			sep++
		}
		if sep+1 < len(fields) && unescape(fields[4]) == p && fields[sep+1] == "fuse.voltar" {
			return true
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
