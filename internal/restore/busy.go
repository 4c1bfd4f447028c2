package restore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"voltar/internal/disk"
	"voltar/internal/fail"
)

// device is a block device claimed for a restore.
type device struct {
	f          *os.File // opened O_EXCL: nobody mounts or claims it meanwhile
	size       int64
	sectorSize int64
}

// claimDevice checks that dev is a block device nobody uses and opens it
// exclusively. Mounted (the device or a partition of it), used as swap,
// held by device-mapper or md (sysfs holders), backing a loop device, or
// opened exclusively by anyone: each is refused before anything is written.
func claimDevice(dev string) (*device, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return nil, fmt.Errorf("restore target %s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, fail.Hint(fail.Usage(fmt.Errorf("restore target %s is not a block device", dev)),
			"use --to-image FILE to restore into a file")
	}
	devs := map[uint64]string{st.Rdev: dev}
	for _, p := range partitionsOf(st.Rdev) {
		devs[p.rdev] = p.name
	}
	if err := checkMounts(devs); err != nil {
		return nil, err
	}
	if err := checkSwaps(devs); err != nil {
		return nil, err
	}
	for rdev, name := range devs {
		if hs := holders(rdev); len(hs) > 0 {
			return nil, fail.Hint(fmt.Errorf("restore target %s is in use: %s is held by %s", dev, name, strings.Join(hs, ", ")),
				"deactivate what uses it (LVM, md, dm-crypt) first")
		}
	}
	if loops, err := disk.ListLoops(); err == nil {
		for _, l := range loops {
			if b := strings.TrimSuffix(l.Backing, " (deleted)"); b != "" {
				var bst unix.Stat_t
				if unix.Stat(b, &bst) == nil && bst.Mode&unix.S_IFMT == unix.S_IFBLK && devs[bst.Rdev] != "" {
					return nil, fmt.Errorf("restore target %s is in use: it backs loop device %s", dev, l.Path)
				}
			}
		}
	}
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, fail.Hint(fmt.Errorf("restore target %s is in use (another program holds it open exclusively)", dev),
			"check with: lsblk %s; fuser -v %s", dev, dev)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dev, err)
	}
	d := &device{f: f}
	if d.size, err = f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("size of %s: %w", dev, err)
	}
	ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sector size of %s: %w", dev, err)
	}
	d.sectorSize = int64(ss)
	return d, nil
}

type partition struct {
	rdev uint64
	name string
}

// partitionsOf lists the kernel's partition devices of a whole disk.
func partitionsOf(rdev uint64) []partition {
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(rdev), unix.Minor(rdev))
	entries, err := os.ReadDir(sys)
	if err != nil {
		return nil
	}
	var out []partition
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sys, e.Name(), "dev"))
		if err != nil {
			continue // not a partition directory
		}
		if _, err := os.Stat(filepath.Join(sys, e.Name(), "partition")); err != nil {
			continue
		}
		var maj, min uint32
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err == nil {
			out = append(out, partition{unix.Mkdev(maj, min), "/dev/" + e.Name()})
		}
	}
	return out
}

// holders lists what stacks on a block device (dm, md, bcache).
func holders(rdev uint64) []string {
	entries, _ := os.ReadDir(fmt.Sprintf("/sys/dev/block/%d:%d/holders", unix.Major(rdev), unix.Minor(rdev)))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func checkMounts(devs map[uint64]string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	defer f.Close()
	return mountedIn(f, devs)
}

// mountedIn reads mountinfo and fails if any of devs is mounted.
func mountedIn(r io.Reader, devs map[uint64]string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		var maj, min uint32
		if _, err := fmt.Sscanf(fields[2], "%d:%d", &maj, &min); err != nil {
			continue
		}
		if name, ok := devs[unix.Mkdev(maj, min)]; ok {
			return fail.Hint(fmt.Errorf("restore target is in use: %s is mounted on %s", name, disk.UnescapeMountPath(fields[4])),
				"unmount it first; a restore overwrites the whole device")
		}
	}
	return sc.Err()
}

func checkSwaps(devs map[uint64]string) error {
	b, err := os.ReadFile("/proc/swaps")
	if err != nil {
		return nil // no swap support
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(disk.UnescapeMountPath(fields[0]), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			if name, ok := devs[st.Rdev]; ok {
				return fail.Hint(fmt.Errorf("restore target is in use: %s is active swap", name), "swapoff %s", name)
			}
		}
	}
	return nil
}
