package restore

import (
	"archive/tar"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const paxXattr = "SCHILY.xattr."

// xattrs returns an entry's extended attributes (incl. POSIX ACLs in their
// system.posix_acl_* binary form) in name order, names decoded as GNU tar
// encodes them ("%25" -> "%", "%3D" -> "=").
func xattrs(h *tar.Header) [][2]string {
	var out [][2]string
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxXattr); ok {
			name = strings.NewReplacer("%3D", "=", "%25", "%").Replace(name)
			out = append(out, [2]string{name, v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// meta sets owner, xattrs, mode and times of a non-symlink through p, a
// path that names the inode itself (fdPath). The order matters: chown
// clears setuid/setgid bits and security.capability, so it goes first;
// the mode goes after the ACL xattrs (which rewrite the group bits) so the
// archived mode wins; the times go last because every other change
// touches ctime and some touch mtime.
func (x *extractor) meta(h *tar.Header, p string) {
	if err := unix.Chown(p, h.Uid, h.Gid); err != nil {
		x.warn(fmt.Sprintf("chown: %v", err), h.Name)
	}
	for _, kv := range xattrs(h) {
		if err := unix.Setxattr(p, kv[0], []byte(kv[1]), 0); err != nil {
			x.warn(fmt.Sprintf("set xattr %s: %v", kv[0], err), h.Name)
		}
	}
	if err := unix.Chmod(p, uint32(h.Mode)&0o7777); err != nil {
		x.warn(fmt.Sprintf("chmod: %v", err), h.Name)
	}
	if err := unix.UtimesNano(p, times(h)); err != nil {
		x.warn(fmt.Sprintf("set times: %v", err), h.Name)
	}
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
