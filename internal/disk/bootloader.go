package disk

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Bootloaders that record where their next stage lies as block numbers
// inside a filesystem (syslinux/extlinux patch the sectors of ldlinux.sys
// into their boot sector, LILO keeps a map of its kernel's blocks) point
// at nothing after a file-level restore, which places every file anew.
// voltar says so, or keeps such a filesystem raw (boot_partitions: raw).

// ReinstallAdvice ends every warning about such a bootloader.
const ReinstallAdvice = "reinstall the bootloader after restoring"

// syslinuxDirs are where syslinux and extlinux install ldlinux.sys,
// relative to the filesystem's root.
var syslinuxDirs = []string{".", "boot/syslinux", "boot/extlinux", "extlinux", "syslinux"}

// FindSyslinux returns the directory (relative to root, "." for root
// itself) of a syslinux/extlinux installation in the filesystem mounted at
// root: ldlinux.sys and ldlinux.c32 side by side. "" when there is none.
// No symlink is followed: the tree is a guest's.
func FindSyslinux(root string) (string, error) {
	for _, d := range syslinuxDirs {
		ok := true
		for _, f := range []string{"ldlinux.sys", "ldlinux.c32"} {
			found, err := plainFile(root, filepath.Join(d, f))
			if err != nil {
				return "", err
			}
			ok = ok && found
		}
		if ok {
			return d, nil
		}
	}
	return "", nil
}

// plainFile reports whether rel below root is a regular file reached
// through real directories only (on vfat the kernel matches names without
// regard to case already).
func plainFile(root, rel string) (bool, error) {
	p := root
	parts := splitPath(rel)
	for i, c := range parts {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if i < len(parts)-1 && !fi.IsDir() {
			return false, nil
		}
		if i == len(parts)-1 {
			return fi.Mode().IsRegular(), nil
		}
	}
	return false, nil
}

func splitPath(rel string) []string {
	var out []string
	for _, c := range strings.Split(filepath.ToSlash(rel), "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// HasLILO reports whether a boot sector (an MBR or a partition's first
// sector) holds LILO's first stage: its "LILO" signature lies in the first
// bytes, after the jump.
func HasLILO(sector []byte) bool {
	return bytes.Contains(sector[:min(len(sector), 32)], []byte("LILO"))
}
