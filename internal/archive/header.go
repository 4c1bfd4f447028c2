package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"voltar/internal/fsattr"
)

// PAX record keys this package writes besides archive/tar's own.
const (
	paxXattr      = "SCHILY.xattr."
	paxACLAccess  = "SCHILY.acl.access"
	paxACLDefault = "SCHILY.acl.default"
	paxHdrCharset = "hdrcharset"

	xattrACLAccess  = "system.posix_acl_access"
	xattrACLDefault = "system.posix_acl_default"
)

// fillHeader sets hdr's metadata from st and the xattrs of abs. hdr's
// Typeflag, Name and (for links) Linkname are already set.
func (a *archiver) fillHeader(abs string, st *unix.Stat_t, hdr *tar.Header) error {
	hdr.Format = tar.FormatPAX // keeps nanosecond mtimes
	hdr.Mode = int64(st.Mode & 0o7777)
	hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
	hdr.Uname, hdr.Gname = a.owners.users[st.Uid], a.owners.groups[st.Gid]
	hdr.ModTime = time.Unix(st.Mtim.Sec, st.Mtim.Nsec)

	if hdr.Typeflag == tar.TypeDir {
		if err := a.dirAttrs(abs, hdr); err != nil {
			return err
		}
	}
	x := xattrSource{path: abs, fd: a.fileFD}
	names, err := x.list()
	if err != nil {
		return fmt.Errorf("archive %s: list xattrs: %w", abs, err)
	}
	for _, n := range names {
		v, err := x.get(n)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return fmt.Errorf("archive %s: xattr %s: %w", abs, n, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = make(map[string]string)
		}
		hdr.PAXRecords[paxXattr+encodeXattrName(n)] = string(v)
		// GNU tar --acls restores ACLs from their text form only.
		key := ""
		switch n {
		case xattrACLAccess:
			key = paxACLAccess
		case xattrACLDefault:
			key = paxACLDefault
		}
		if key != "" {
			text, err := aclText(v)
			if err != nil {
				a.log.Warn("archive: cannot convert ACL for GNU tar; kept as xattr only",
					"path", hdr.Name, "xattr", n, "err", err)
				continue
			}
			hdr.PAXRecords[key] = text
		}
	}
	if !utf8.ValidString(hdr.Name) || !utf8.ValidString(hdr.Linkname) {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = make(map[string]string)
		}
		// POSIX: path records are UTF-8 unless hdrcharset says otherwise;
		// this keeps readers from transcoding the raw bytes.
		hdr.PAXRecords[paxHdrCharset] = "BINARY"
	}
	return nil
}

// attrs records the inode flags, project id and extent size hint of the
// file or directory open as fd (see internal/fsattr) in hdr.
func (a *archiver) attrs(fd int, abs string, hdr *tar.Header) error {
	get := fsattr.Get
	if a.opts.NoProjectIDs {
		get = fsattr.GetFlags
	}
	at, err := get(fd)
	if err != nil {
		return fmt.Errorf("archive %s: %w", abs, err)
	}
	if at.Encrypted {
		return &EncryptedError{Path: hdr.Name}
	}
	if at.IsZero() {
		return nil
	}
	if hdr.PAXRecords == nil {
		hdr.PAXRecords = make(map[string]string)
	}
	at.PAX(hdr.PAXRecords)
	return nil
}

// ErrEncrypted is matched by an EncryptedError.
var ErrEncrypted = errors.New("fscrypt-encrypted files")

// EncryptedError stops an archive at a directory or file that fscrypt
// encrypts: without the guest's key its names are no-key names and its
// data cannot be read, and archived as files it would restore as
// plaintext directories of ciphertext names with the policy gone. Store
// such a filesystem raw instead: its bytes restore exactly, and the key
// still opens them.
type EncryptedError struct{ Path string }

func (e *EncryptedError) Error() string {
	return fmt.Sprintf("%s is encrypted with fscrypt (no key on this host)", e.Path)
}

func (e *EncryptedError) Unwrap() error { return ErrEncrypted }

// prealloc records the preallocated ranges of the regular file open as fd.
func (a *archiver) prealloc(fd int, abs string, hdr *tar.Header) error {
	rs, err := fsattr.Prealloc(fd)
	if err != nil {
		return fmt.Errorf("archive %s: %w", abs, err)
	}
	if len(rs) == 0 {
		return nil
	}
	if hdr.PAXRecords == nil {
		hdr.PAXRecords = make(map[string]string)
	}
	hdr.PAXRecords[fsattr.PAXPrealloc] = fsattr.PreallocPAX(rs)
	return nil
}

// dirAttrs is attrs for a directory, which the walk has not opened yet.
func (a *archiver) dirAttrs(abs string, hdr *tar.Header) error {
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("archive: %w", &os.PathError{Op: "open", Path: abs, Err: err})
	}
	defer unix.Close(fd)
	return a.attrs(fd, abs, hdr)
}

// encodeXattrName escapes what a PAX keyword cannot hold the way GNU tar
// does ("%" -> "%25", "=" -> "%3D"); GNU tar decodes it on extraction.
func encodeXattrName(n string) string {
	if !strings.ContainsAny(n, "%=") {
		return n
	}
	return strings.NewReplacer("%", "%25", "=", "%3D").Replace(n)
}

// xattrSource reads the extended attributes of an entry: through its open
// descriptor when there is one (a regular file being archived: no path
// lookup), else by path without following a symlink.
type xattrSource struct {
	path string
	fd   int // -1: none
}

func (x xattrSource) listRaw(buf []byte) (int, error) {
	if x.fd >= 0 {
		return unix.Flistxattr(x.fd, buf)
	}
	return unix.Llistxattr(x.path, buf)
}

func (x xattrSource) getRaw(name string, buf []byte) (int, error) {
	if x.fd >= 0 {
		return unix.Fgetxattr(x.fd, name, buf)
	}
	return unix.Lgetxattr(x.path, name, buf)
}

func (x xattrSource) list() ([]string, error) {
	for {
		sz, err := x.listRaw(nil)
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil || sz == 0 {
			return nil, err
		}
		buf := make([]byte, sz)
		sz, err = x.listRaw(buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, n := range bytes.Split(buf[:sz], []byte{0}) {
			if len(n) > 0 {
				names = append(names, string(n))
			}
		}
		return names, nil
	}
}

func (x xattrSource) get(name string) ([]byte, error) {
	for {
		sz, err := x.getRaw(name, nil)
		if err != nil || sz == 0 {
			return nil, err
		}
		buf := make([]byte, sz)
		sz, err = x.getRaw(name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:sz], nil
	}
}

// POSIX ACL xattr format (linux/posix_acl_xattr.h): a little-endian
// version 2 header, then 8-byte entries {tag u16, perm u16, id u32}.
const (
	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// aclText converts a system.posix_acl_* value to the long text form GNU tar
// stores in SCHILY.acl.* and passes to acl_from_text(3) on extraction, with
// numeric ids: the ids belong to the guest, so host names mean nothing.
func aclText(b []byte) (string, error) {
	if len(b) < 4 || (len(b)-4)%8 != 0 {
		return "", fmt.Errorf("acl of %d bytes", len(b))
	}
	if v := binary.LittleEndian.Uint32(b); v != aclVersion {
		return "", fmt.Errorf("acl version %d", v)
	}
	var s strings.Builder
	for e := b[4:]; len(e) > 0; e = e[8:] {
		tag, perm, id := binary.LittleEndian.Uint16(e), binary.LittleEndian.Uint16(e[2:]), binary.LittleEndian.Uint32(e[4:])
		switch tag {
		case aclUserObj:
			s.WriteString("user::")
		case aclUser:
			s.WriteString("user:" + strconv.FormatUint(uint64(id), 10) + ":")
		case aclGroupObj:
			s.WriteString("group::")
		case aclGroup:
			s.WriteString("group:" + strconv.FormatUint(uint64(id), 10) + ":")
		case aclMask:
			s.WriteString("mask::")
		case aclOther:
			s.WriteString("other::")
		default:
			return "", fmt.Errorf("acl tag %#x", tag)
		}
		if perm&^7 != 0 {
			return "", fmt.Errorf("acl perm %#o", perm)
		}
		p := []byte("---")
		for i, c := range "rwx" {
			if perm&(4>>i) != 0 {
				p[i] = byte(c)
			}
		}
		s.Write(p)
		s.WriteByte('\n')
	}
	return s.String(), nil
}

// ownerNames maps the archived filesystem's own uids and gids to names.
type ownerNames struct {
	users, groups map[uint32]string
}

// maxOwnerFile bounds how much of etc/passwd or etc/group is read.
const maxOwnerFile = 64 << 20

// loadOwners reads root's etc/passwd and etc/group, resolving symlinks
// inside root (never the host's /etc). Missing files mean numeric ids only.
func loadOwners(root string) (*ownerNames, error) {
	dfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dfd)
	o := &ownerNames{}
	if o.users, err = readIDNames(dfd, root, "etc/passwd"); err != nil {
		return nil, err
	}
	if o.groups, err = readIDNames(dfd, root, "etc/group"); err != nil {
		return nil, err
	}
	return o, nil
}

// readIDNames parses "name:x:id:..." lines; the first name of an id wins,
// as with getpwuid(3).
func readIDNames(dfd int, root, rel string) (map[uint32]string, error) {
	fd, err := unix.Openat2(dfd, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EXDEV):
		return nil, nil
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: root + "/" + rel, Err: err}
	}
	f := os.NewFile(uintptr(fd), root+"/"+rel)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, err
	}
	m := make(map[uint32]string)
	sc := bufio.NewScanner(io.LimitReader(f, maxOwnerFile))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), ":", 4)
		if len(fields) < 3 || fields[0] == "" || strings.HasPrefix(fields[0], "#") {
			continue
		}
		id, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil {
			continue
		}
		if _, ok := m[uint32(id)]; !ok {
			m[uint32(id)] = fields[0]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return m, nil
}

// sharedExtents adds the data of the regular file open as fd that lies in
// extents shared with other files to Result.Shared, on the filesystems
// that share extents (btrfs, xfs: reflinks, snapshots): a restore writes
// that data once per file. One FIEMAP per file.
func (a *archiver) sharedExtents(fd int, abs string) error {
	if !a.sharesKnown {
		a.sharesKnown = true
		var sf unix.Statfs_t
		if unix.Fstatfs(fd, &sf) == nil && (sf.Type == unix.BTRFS_SUPER_MAGIC || sf.Type == unix.XFS_SUPER_MAGIC) {
			a.sharedSeen = map[uint64]bool{}
		}
	}
	if a.sharedSeen == nil {
		return nil
	}
	shared, first, err := fsattr.Shared(fd, a.sharedSeen)
	if err != nil {
		return fmt.Errorf("archive %s: %w", abs, err)
	}
	a.res.Shared += shared
	a.res.SharedOnce += first
	return nil
}
