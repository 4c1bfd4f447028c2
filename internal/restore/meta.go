package restore

import (
	"archive/tar"
	"fmt"
	"sort"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const paxXattr = "SCHILY.xattr."

// xattrNameDecoder undoes GNU tar's escaping of "%" and "=" in xattr names.
var xattrNameDecoder = strings.NewReplacer("%3D", "=", "%25", "%")

// xattrs returns an entry's extended attributes (incl. POSIX ACLs in their
// system.posix_acl_* binary form) in name order, names decoded as GNU tar
// encodes them ("%25" -> "%", "%3D" -> "=").
func xattrs(h *tar.Header) [][2]string {
	var out [][2]string
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxXattr); ok {
			if strings.IndexByte(name, '%') >= 0 {
				name = xattrNameDecoder.Replace(name)
			}
			out = append(out, [2]string{name, v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// meta sets owner, xattrs, mode and times of a non-symlink through fd. An
// O_PATH descriptor (opath: directories, devices, fifos) is reached through
// its /proc/self/fd path, since the f* calls refuse it; a regular file's
// writable descriptor takes the f* calls directly, which spares the kernel
// a path walk per call. The order matters: chown clears setuid/setgid bits
// and security.capability, so it goes first; the mode goes after the ACL
// xattrs (which rewrite the group bits) so the archived mode wins; the times
// go last because every other change touches ctime and some touch mtime.
func (x *extractor) meta(h *tar.Header, fd int, opath bool) {
	var p string
	if opath {
		p = fdPath(fd)
	}
	var err error
	if opath {
		err = unix.Chown(p, h.Uid, h.Gid)
	} else {
		err = unix.Fchown(fd, h.Uid, h.Gid)
	}
	if err != nil {
		x.warn(fmt.Sprintf("chown: %v", err), h.Name)
	}
	for _, kv := range xattrs(h) {
		if opath {
			err = unix.Setxattr(p, kv[0], []byte(kv[1]), 0)
		} else {
			err = unix.Fsetxattr(fd, kv[0], []byte(kv[1]), 0)
		}
		if err != nil {
			x.warn(fmt.Sprintf("set xattr %s: %v", kv[0], err), h.Name)
		}
	}
	if opath {
		err = unix.Chmod(p, uint32(h.Mode)&0o7777)
	} else {
		err = unix.Fchmod(fd, uint32(h.Mode)&0o7777)
	}
	if err != nil {
		x.warn(fmt.Sprintf("chmod: %v", err), h.Name)
	}
	if opath {
		err = unix.UtimesNano(p, times(h))
	} else {
		err = futimens(fd, times(h))
	}
	if err != nil {
		x.warn(fmt.Sprintf("set times: %v", err), h.Name)
	}
}

// futimens sets the times of the file open as fd: utimensat with a NULL
// path, which x/sys/unix does not wrap.
func futimens(fd int, ts []unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// symlinkMeta sets what a symlink has: owner, xattrs (the kernel allows
// only trusted.* and security.* on symlinks) and times. parent is the
// directory descriptor; the link itself is never followed.
func (x *extractor) symlinkMeta(h *tar.Header, parent int, base string) {
	if err := unix.Fchownat(parent, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		x.warn(fmt.Sprintf("chown symlink: %v", err), h.Name)
	}
	if xs := xattrs(h); len(xs) > 0 {
		p := fdPath(parent) + "/" + base
		for _, kv := range xs {
			if err := unix.Lsetxattr(p, kv[0], []byte(kv[1]), 0); err != nil {
				x.warn(fmt.Sprintf("set xattr %s on symlink: %v", kv[0], err), h.Name)
			}
		}
	}
	if err := unix.UtimesNanoAt(parent, base, times(h), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		x.warn(fmt.Sprintf("set symlink times: %v", err), h.Name)
	}
}

// times converts the archived times, which may lie before 1970 or beyond
// what int64 nanoseconds hold. An atime the archive lacks is left alone.
func times(h *tar.Header) []unix.Timespec {
	ts := func(t time.Time) unix.Timespec {
		return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
	}
	atime := unix.Timespec{Nsec: unix.UTIME_OMIT}
	if !h.AccessTime.IsZero() {
		atime = ts(h.AccessTime)
	}
	return []unix.Timespec{atime, ts(h.ModTime)}
}
