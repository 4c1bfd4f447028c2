// Package fsattr reads and sets the attributes of an inode that live
// outside its mode and xattrs: the flags chattr(1) sets (immutable,
// append-only, nodump, noatime, nocow, ...), and the xfs/ext4 project id
// and extent size hint xfs_io sets. In an archive they travel as PAX
// records: the flags as libarchive's and star's SCHILY.fflags (bsdtar
// restores them; GNU tar skips the record with a warning), the project id
// and extent size hint as VOLTAR.projid and VOLTAR.extsize, which no other
// tool defines.
package fsattr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PAX record keys.
const (
	PAXFlags   = "SCHILY.fflags"
	PAXProjID  = "VOLTAR.projid"
	PAXExtSize = "VOLTAR.extsize"
)

// Inode flags (linux/fs.h) that a user can set, with their SCHILY.fflags
// names as libarchive spells them on Linux.
const (
	FlagSecRM       = 0x00000001 // s
	FlagUnRM        = 0x00000002 // u
	FlagCompress    = 0x00000004 // c
	FlagSync        = 0x00000008 // S
	FlagImmutable   = 0x00000010 // i
	FlagAppend      = 0x00000020 // a
	FlagNoDump      = 0x00000040 // d
	FlagNoAtime     = 0x00000080 // A
	FlagJournalData = 0x00004000 // j
	FlagNoTail      = 0x00008000 // t
	FlagDirSync     = 0x00010000 // D
	FlagTopDir      = 0x00020000 // T
	FlagNoCOW       = 0x00800000 // C
	FlagProjInherit = 0x20000000 // P
)

var names = []struct {
	flag uint32
	name string
}{
	{FlagAppend, "sappnd"},
	{FlagImmutable, "schg"},
	{FlagNoDump, "nodump"},
	{FlagUnRM, "undel"},
	{FlagCompress, "compress"},
	{FlagNoAtime, "noatime"},
	{FlagDirSync, "dirsync"},
	{FlagJournalData, "journal-data"},
	{FlagSecRM, "secdel"},
	{FlagSync, "sync"},
	{FlagNoTail, "notail"},
	{FlagTopDir, "topdir"},
	{FlagNoCOW, "nocow"},
	{FlagProjInherit, "projinherit"},
}

// Settable is every flag this package records and restores; the others
// (extents, inline data, encryption, ...) belong to the filesystem.
var Settable = func() uint32 {
	var m uint32
	for _, n := range names {
		m |= n.flag
	}
	return m
}()

// late are the flags set after everything else of a file: they forbid
// changing it (immutable, append-only) or its times (noatime is harmless,
// but kept with them).
const late = FlagImmutable | FlagAppend

// early are the flags that take effect only on an empty file (btrfs nocow).
const early = FlagNoCOW

// Attrs are an inode's recorded attributes; the zero value has none.
type Attrs struct {
	Flags   uint32 // of Settable
	ProjID  uint32
	ExtSize uint32 // bytes; 0 = none
	// Encrypted: fscrypt encrypts the inode (FS_ENCRYPT_FL). Never
	// recorded: without the key, names and data read back as ciphertext
	// (or not at all), so such a filesystem is not archived as files.
	Encrypted bool
}

// flagEncrypt is FS_ENCRYPT_FL.
const flagEncrypt = 0x00000800

func (a Attrs) IsZero() bool { return a == Attrs{} }

// fsxattr is struct fsxattr of linux/fs.h.
type fsxattr struct {
	XFlags     uint32
	ExtSize    uint32
	NExtents   uint32
	ProjID     uint32
	CowExtSize uint32
	_          [8]byte
}

// fsx_xflags that say a file (or, inherited, a directory's new files) has
// an extent size hint.
const (
	xflagExtSize      = 0x00000800
	xflagExtSzInherit = 0x00001000
)

// FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR: _IOR/_IOW('X', 31/32, struct
// fsxattr), which x/sys/unix does not define.
const (
	iocFSGetXattr = 0x801c581f
	iocFSSetXattr = 0x401c5820
)

// unsupported reports errors of a filesystem without these ioctls.
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS)
}

// Get reads the attributes of the file or directory open as fd. A
// filesystem that has none (vfat, tmpfs) gives the zero value.
func Get(fd int) (Attrs, error) { return get(fd, true) }

// GetFlags is Get without the project id and extent size hint, for a
// filesystem that has neither: ext2/3/4 made without the project feature
// (ext4 reports a project id only with it, and extent size hints never).
// One system call instead of two.
func GetFlags(fd int) (Attrs, error) { return get(fd, false) }

func get(fd int, fsx bool) (Attrs, error) {
	var a Attrs
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	switch {
	case err == nil:
		a.Flags = flags & Settable
		a.Encrypted = flags&flagEncrypt != 0
	case !unsupported(err):
		return a, fmt.Errorf("get inode flags: %w", err)
	}
	if !fsx {
		return a, nil
	}
	var fx fsxattr
	if err := ioctlPtr(fd, iocFSGetXattr, unsafe.Pointer(&fx)); err == nil {
		a.ProjID = fx.ProjID
		if fx.XFlags&(xflagExtSize|xflagExtSzInherit) != 0 {
			a.ExtSize = fx.ExtSize
		}
	} else if !unsupported(err) {
		return a, fmt.Errorf("get project id: %w", err)
	}
	return a, nil
}

func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
	if e != 0 {
		return e
	}
	return nil
}

// PAX adds a's records to records (which must not be nil).
func (a Attrs) PAX(records map[string]string) {
	if a.Flags != 0 {
		records[PAXFlags] = FlagsText(a.Flags)
	}
	if a.ProjID != 0 {
		records[PAXProjID] = strconv.FormatUint(uint64(a.ProjID), 10)
	}
	if a.ExtSize != 0 {
		records[PAXExtSize] = strconv.FormatUint(uint64(a.ExtSize), 10)
	}
}

// FlagsText spells flags as SCHILY.fflags does: names joined by commas.
func FlagsText(flags uint32) string {
	var out []string
	for _, n := range names {
		if flags&n.flag != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

// FromPAX reads the attributes of an archive entry's PAX records. Flag
// names it does not know (another system's, such as uchg) are returned
// apart, so the caller can say they were not restored.
func FromPAX(records map[string]string) (a Attrs, unknown []string) {
	if s, ok := records[PAXFlags]; ok {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			found := false
			for _, n := range names {
				if f == n.name {
					a.Flags |= n.flag
					found = true
				}
			}
			if !found {
				unknown = append(unknown, f)
			}
		}
	}
	if v, err := strconv.ParseUint(records[PAXProjID], 10, 32); err == nil {
		a.ProjID = uint32(v)
	}
	if v, err := strconv.ParseUint(records[PAXExtSize], 10, 32); err == nil {
		a.ExtSize = uint32(v)
	}
	return a, unknown
}

// SetEarly sets what must be set while the file is still empty: the nocow
// flag and the extent size hint. Call it right after creating the file.
func SetEarly(fd int, a Attrs) error {
	var errs []error
	if a.Flags&early != 0 {
		errs = append(errs, setFlags(fd, a.Flags&early, early))
	}
	if a.ExtSize != 0 {
		var st unix.Stat_t
		flag := uint32(xflagExtSize)
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			flag = xflagExtSzInherit
		}
		errs = append(errs, setXattr(fd, func(fx *fsxattr) { fx.ExtSize, fx.XFlags = a.ExtSize, fx.XFlags|flag }))
	}
	return errors.Join(errs...)
}

// SetLate sets the project id and every flag, immutable and append-only
// included: call it last, after the data, owner, mode, xattrs and times.
func SetLate(fd int, a Attrs) error {
	var errs []error
	if a.ProjID != 0 {
		errs = append(errs, setXattr(fd, func(fx *fsxattr) { fx.ProjID = a.ProjID }))
	}
	if a.Flags != 0 {
		errs = append(errs, setFlags(fd, a.Flags, Settable))
	}
	return errors.Join(errs...)
}

// setFlags sets the bits of mask to those of flags, keeping the others
// (the filesystem's own, such as extents).
func setFlags(fd int, flags, mask uint32) error {
	cur, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("get inode flags: %w", err)
	}
	want := cur&^mask | flags&mask
	if want == cur {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(want)); err != nil {
		return fmt.Errorf("set inode flags %s: %w", FlagsText(flags&mask), err)
	}
	return nil
}

func setXattr(fd int, change func(*fsxattr)) error {
	var fx fsxattr
	if err := ioctlPtr(fd, iocFSGetXattr, unsafe.Pointer(&fx)); err != nil {
		return fmt.Errorf("get project id and extent size hint: %w", err)
	}
	change(&fx)
	if err := ioctlPtr(fd, iocFSSetXattr, unsafe.Pointer(&fx)); err != nil {
		return fmt.Errorf("set project id or extent size hint: %w", err)
	}
	return nil
}
