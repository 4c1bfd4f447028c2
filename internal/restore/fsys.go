package restore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The target tree is written only through file descriptors: every parent
// directory is opened from the target's own descriptor with openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS (or, without openat2, one O_NOFOLLOW
// component at a time), and the entry is created with *at calls on that
// descriptor. os.Root is not enough here: it follows symlinks that stay
// inside the root, and a restore must not write through any symlink the
// archive itself created ("link -> etc", then "link/passwd").

// errSymlink marks a path that would pass through a symlink.
var errSymlink = errors.New("path passes through a symlink")

// errNotDir marks a path whose parent is not a directory.
var errNotDir = errors.New("a parent is not a directory")

const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDir opens the directory rel (slash-separated, clean, no "..", ""
// meaning root) beneath root as an O_PATH descriptor, never following a
// symlink. With create, missing directories are made (mode 0700) and
// reported through made.
func openDir(root int, rel string, create bool, made func(string)) (int, error) {
	if rel == "" {
		return unix.Dup(root)
	}
	fd, err := unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   dirFlags,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case err == nil:
		return fd, nil
	case errors.Is(err, unix.ELOOP):
		return -1, errSymlink
	case errors.Is(err, unix.EXDEV):
		return -1, fmt.Errorf("%w: leaves the target", errSymlink)
	case errors.Is(err, unix.ENOENT) && create, errors.Is(err, unix.ENOSYS), errors.Is(err, unix.ENOTDIR),
		errors.Is(err, unix.ENAMETOOLONG):
		return walkDir(root, rel, create, made)
	}
	return -1, err
}

// walkDir opens rel one component at a time.
func walkDir(root int, rel string, create bool, made func(string)) (int, error) {
	cur, err := unix.Dup(root)
	if err != nil {
		return -1, err
	}
	parts := strings.Split(rel, "/")
	for i, name := range parts {
		fd, err := unix.Openat(cur, name, dirFlags, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(cur, name, 0o700); err == nil || errors.Is(err, unix.EEXIST) {
				if err == nil && made != nil {
					made(strings.Join(parts[:i+1], "/"))
				}
				fd, err = unix.Openat(cur, name, dirFlags, 0)
			}
		}
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			var st unix.Stat_t
			if unix.Fstatat(cur, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = errSymlink
			} else {
				err = errNotDir
			}
		}
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// fdPath names the inode behind fd for calls that take a path: the kernel
// resolves the magic link to exactly that inode, not to whatever now has
// its name. It works for O_PATH descriptors, which f*xattr and fchmod
// refuse.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// makeRoom makes room for a new entry named name in dir: nothing there, or a
// non-directory that is unlinked (an archive may hold a name twice; the
// later entry wins, as with tar). It reports whether a directory is there,
// which a directory entry reuses and any other entry fails on.
func makeRoom(dir int, name string) (isDir bool, err error) {
	var st unix.Stat_t
	err = unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case err != nil:
		return false, err
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return true, nil
	}
	return false, unix.Unlinkat(dir, name, 0)
}

// split returns the parent and base name of a clean relative path.
func split(rel string) (parent, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

// cleanName turns an archive path into a clean relative path ("" for the
// root), refusing absolute paths and "..".
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name contains NUL")
	}
	if strings.HasPrefix(name, "/") {
		return "", errors.New("absolute path")
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", errors.New("path contains \"..\"")
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "/"), nil
}
