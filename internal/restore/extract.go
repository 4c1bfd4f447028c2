package restore

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/fsattr"
)

// blockSize is the unit of hole detection in sparse entries and raw
// partitions: an all-zero aligned block is skipped, leaving a hole, as
// cp --sparse=always does.
const blockSize = 4096

// maxListed bounds the refused and failed entries a result lists by name;
// the counts stay exact.
const maxListed = 1000

// extractor writes one tar stream beneath a directory.
type extractor struct {
	root int // O_PATH descriptor of the target directory
	log  *slog.Logger
	res  *FSResult
	dirs []pendingDir
	buf  []byte
	zero []byte
	// warned aggregates repeated metadata failures into one warning each.
	warned map[string]*warning
	// parent caches the descriptor of the last entry's parent directory
	// (parentRel names it): archives list a directory's entries together,
	// so most entries skip the openat2. It stays valid because a restore
	// never removes or replaces a directory.
	parent    int
	parentRel string
	// tracker is told the progress at most every progressEvery.
	tracker  Tracker
	reported time.Time
}

// progressEvery throttles the tracker's updates.
const progressEvery = 100 * time.Millisecond

// progress tells the tracker how far the restore got, if it is time to.
func (x *extractor) progress() {
	if x.tracker == nil {
		return
	}
	if now := time.Now(); now.Sub(x.reported) >= progressEvery {
		x.reported = now
		x.tracker.Update(x.res.Bytes, x.res.Files)
	}
}

type pendingDir struct {
	rel string
	hdr *tar.Header
}

type warning struct {
	example string
	count   int
}

// newExtractor writes beneath the directory open as dir (an O_PATH
// descriptor; the extractor keeps a duplicate, the caller its own).
func newExtractor(dir int, log *slog.Logger, res *FSResult) (*extractor, error) {
	root, err := unix.Dup(dir)
	if err != nil {
		return nil, fmt.Errorf("open target: %w", err)
	}
	return &extractor{
		root: root, log: log, res: res,
		buf: make([]byte, 1<<20), zero: make([]byte, blockSize), warned: map[string]*warning{},
		parent: -1,
	}, nil
}

func (x *extractor) close() {
	x.dropParent()
	unix.Close(x.root)
}

func (x *extractor) dropParent() {
	if x.parent >= 0 {
		unix.Close(x.parent)
		x.parent = -1
	}
}

// openParent returns the descriptor of the directory rel, from the cache
// or opened (and created, if missing) beneath the target. The extractor
// owns it.
func (x *extractor) openParent(rel string) (int, error) {
	if x.parent >= 0 && x.parentRel == rel {
		return x.parent, nil
	}
	x.dropParent()
	fd, err := openDir(x.root, rel, true, func(p string) {
		x.warn("created directories the archive lacks (mode 0700)", p)
	})
	if err != nil {
		return -1, err
	}
	x.parent, x.parentRel = fd, rel
	return fd, nil
}

// refuse records an entry that would escape the target or write through a
// symlink. It is never written.
func (x *extractor) refuse(name, reason string) {
	x.res.RefusedCount++
	if len(x.res.Refused) < maxListed {
		x.res.Refused = append(x.res.Refused, Skipped{Name: name, Reason: reason})
	}
	x.log.Warn("restore: refused archive entry", "fs", x.res.Name, "name", name, "reason", reason)
}

// fail records an entry that could not be restored.
func (x *extractor) fail(name string, err error) {
	x.res.FailedCount++
	if len(x.res.Failed) < maxListed {
		x.res.Failed = append(x.res.Failed, Skipped{Name: name, Reason: err.Error()})
	}
	x.log.Warn("restore: entry not restored", "fs", x.res.Name, "name", name, "err", err)
}

// warn records a metadata failure, aggregated by what failed and why
// (key, e.g. "set xattr user.x: operation not supported").
func (x *extractor) warn(key, name string) {
	if w := x.warned[key]; w != nil {
		w.count++
		return
	}
	x.warned[key] = &warning{example: name, count: 1}
	x.log.Warn("restore: "+key, "fs", x.res.Name, "name", name)
}

// fatal errors stop the restore: the archive is unreadable, or the target
// cannot take more.
func fatal(err error) bool {
	var se *streamError
	if errors.As(err, &se) {
		return true
	}
	for _, e := range []error{unix.ENOSPC, unix.EDQUOT, unix.EIO, unix.EROFS, unix.EMFILE, unix.ENFILE, unix.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// entry restores one archive entry whose data is read from r. Only errors
// that make going on pointless are returned; a refused or failed entry is
// recorded and skipped.
func (x *extractor) entry(h *tar.Header, r io.Reader) error {
	x.res.Entries++
	x.progress()
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil // global PAX records (git archive puts a comment there); not applied
	}
	rel, err := cleanName(h.Name)
	if err != nil {
		x.refuse(h.Name, err.Error())
		return nil
	}
	if rel == "" {
		if h.Typeflag != tar.TypeDir {
			x.refuse(h.Name, "the archive root is not a directory")
			return nil
		}
		x.dirs = append(x.dirs, pendingDir{"", h})
		return nil
	}
	parentRel, base := split(rel)
	parent, err := x.openParent(parentRel)
	if errors.Is(err, errSymlink) {
		x.refuse(h.Name, err.Error())
		return nil
	}
	if err != nil {
		if fatal(err) {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		x.fail(h.Name, fmt.Errorf("open parent: %w", err))
		return nil
	}
	if err := x.create(h, rel, parent, base, r); err != nil {
		if fatal(err) {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		x.fail(h.Name, err)
	}
	return nil
}

func (x *extractor) create(h *tar.Header, rel string, parent int, base string, r io.Reader) error {
	switch h.Typeflag {
	case tar.TypeLink:
		// The target is checked before anything of this name is removed.
		return x.hardlink(h, parent, base)
	case tar.TypeDir:
		err := unix.Mkdirat(parent, base, 0o700)
		if errors.Is(err, unix.EEXIST) {
			// A directory there is reused (its metadata is set at the
			// end); anything else is replaced.
			var isDir bool
			if isDir, err = makeRoom(parent, base); err == nil && !isDir {
				err = unix.Mkdirat(parent, base, 0o700)
			}
		}
		if err != nil {
			return err
		}
		x.res.Dirs++
		x.dirs = append(x.dirs, pendingDir{rel, h})
		return nil
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		return x.file(h, parent, base, r)
	case tar.TypeSymlink:
		if err := replacing(parent, base, func() error { return unix.Symlinkat(h.Linkname, parent, base) }); err != nil {
			return err
		}
		x.res.Symlinks++
		x.symlinkMeta(h, parent, base)
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		dev := int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))
		if err := replacing(parent, base, func() error { return unix.Mknodat(parent, base, mode|0o600, dev) }); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeFifo {
			x.res.Fifos++
		} else {
			x.res.Devices++
		}
		fd, err := unix.Openat(parent, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		x.meta(h, fd, true)
		return nil
	}
	return fmt.Errorf("unsupported entry type %q", h.Typeflag)
}

// replacing runs mk, which creates a non-directory named base in dir. When
// the name is taken (an archive may hold a name twice; the later entry
// wins, as with tar), a non-directory there is removed and mk runs again;
// a directory there is an error. Creating first spares the common case a
// lookup.
func replacing(dir int, base string, mk func() error) error {
	err := mk()
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	isDir, err := makeRoom(dir, base)
	if err != nil {
		return err
	}
	if isDir {
		return errors.New("a directory is in the way")
	}
	return mk()
}

func (x *extractor) hardlink(h *tar.Header, parent int, base string) error {
	target, err := cleanName(h.Linkname)
	if err != nil || target == "" {
		if err == nil {
			err = errors.New("links to the archive root")
		}
		x.refuse(h.Name, "hard link target "+h.Linkname+": "+err.Error())
		return nil
	}
	tParentRel, tBase := split(target)
	tParent, err := openDir(x.root, tParentRel, false, nil)
	if errors.Is(err, errSymlink) {
		x.refuse(h.Name, "hard link target "+h.Linkname+": "+err.Error())
		return nil
	}
	if err != nil {
		return fmt.Errorf("hard link target %s: %w", h.Linkname, err)
	}
	defer unix.Close(tParent)
	// Flags 0: a symlink target is linked itself, never followed.
	if err := replacing(parent, base, func() error { return unix.Linkat(tParent, tBase, parent, base, 0) }); err != nil {
		return fmt.Errorf("hard link to %s: %w", h.Linkname, err)
	}
	x.res.Hardlinks++
	return nil
}

// file writes a regular file's data as data: runs of zeros in a file that
// was fully allocated in the source are written, as GNU tar does, so a swap
// file or a preallocated database file keeps its blocks. Only a sparse
// entry (a PAX or GNU sparse map: the source file had holes) is written
// sparse, its all-zero blocks left as holes.
//
// archive/tar expands a sparse entry's holes into zeros and keeps its map
// to itself, so inside a sparse entry a run of zeros that was allocated in
// the source becomes a hole too; every other file comes back as allocated
// as it was.
func (x *extractor) file(h *tar.Header, parent int, base string, r io.Reader) error {
	var fd int
	err := replacing(parent, base, func() (err error) {
		fd, err = unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	x.res.Files++
	at := x.attrs(h)
	if err := fsattr.SetEarly(fd, at); err != nil {
		x.warn("cannot set nocow or the extent size hint: "+err.Error(), h.Name)
	}
	write := writeAll
	if isSparse(h) {
		write = x.writeSparse
	}
	var off, end int64 // bytes read; end of the data written
	for {
		n, rerr := io.ReadFull(r, x.buf)
		e, err := write(fd, x.buf[:n], off)
		if err != nil {
			return err
		}
		end = max(end, e)
		off += int64(n)
		x.res.Bytes += int64(n)
		x.progress()
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return &streamError{rerr}
		}
	}
	if off != h.Size {
		return &streamError{fmt.Errorf("read %d bytes of file data, header says %d", off, h.Size)}
	}
	// A file that ends in a hole gets its size here; the new file is
	// empty, so one whose last block was written already has it.
	if end < off {
		if err := unix.Ftruncate(fd, off); err != nil {
			return err
		}
	}
	if s, ok := h.PAXRecords[fsattr.PAXPrealloc]; ok {
		rs, err := fsattr.PreallocFromPAX(s)
		if err == nil {
			err = fsattr.Preallocate(fd, rs)
		}
		if err != nil {
			x.warn("preallocated ranges not restored: "+err.Error(), h.Name)
		}
	}
	x.meta(h, fd, false)
	// Last: immutable or append-only forbid every change after them.
	if err := fsattr.SetLate(fd, at); err != nil {
		x.warn("cannot set inode flags or project id: "+err.Error(), h.Name)
	}
	return nil
}

// attrs are an entry's inode flags, project id and extent size hint; flag
// names of another system are reported.
func (x *extractor) attrs(h *tar.Header) fsattr.Attrs {
	at, unknown := fsattr.FromPAX(h.PAXRecords)
	if len(unknown) > 0 {
		x.warn("inode flags this system does not have, not restored: "+strings.Join(unknown, ","), h.Name)
	}
	return at
}

// dirAttrs sets a directory's attributes, after its metadata. dir is an
// O_PATH descriptor, which ioctls refuse: the directory is opened again
// through it, so no path is resolved anew.
func (x *extractor) dirAttrs(h *tar.Header, dir int) {
	at := x.attrs(h)
	if at.IsZero() {
		return
	}
	fd, err := unix.Open(fdPath(dir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		err = errors.Join(fsattr.SetEarly(fd, at), fsattr.SetLate(fd, at))
		unix.Close(fd)
	}
	if err != nil {
		x.warn("cannot set inode flags or project id: "+err.Error(), h.Name)
	}
}

// isSparse reports whether h is a sparse entry: PAX (GNU.sparse.* records,
// as voltar and GNU tar write them) or old GNU sparse.
func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for _, k := range []string{"GNU.sparse.major", "GNU.sparse.map", "GNU.sparse.size", "GNU.sparse.realsize"} {
		if _, ok := h.PAXRecords[k]; ok {
			return true
		}
	}
	return false
}

// writeAll writes b at off and returns where it ends.
func writeAll(fd int, b []byte, off int64) (int64, error) {
	for w := 0; w < len(b); {
		k, err := unix.Pwrite(fd, b[w:], off+int64(w))
		if err != nil {
			return off + int64(w), err
		}
		w += k
	}
	return off + int64(len(b)), nil
}

func (x *extractor) writeSparse(fd int, b []byte, off int64) (int64, error) {
	return writeSparse(fd, b, off, x.zero)
}

// streamError is a failure reading the archive, not writing the target.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// writeSparse writes b at off, skipping blocks of blockSize that are all
// zero (zero is such a block), so they stay holes; each run of data blocks
// goes in one write. It returns the end of the last run written (0 when all
// of b was zeros).
func writeSparse(fd int, b []byte, off int64, zero []byte) (int64, error) {
	var last int64
	for len(b) > 0 {
		// Skip zero blocks, then write the run of data blocks after them.
		n := min(blockSize, len(b))
		if bytes.Equal(b[:n], zero[:n]) {
			b, off = b[n:], off+int64(n)
			continue
		}
		end := n
		for end < len(b) {
			m := min(blockSize, len(b)-end)
			if bytes.Equal(b[end:end+m], zero[:m]) {
				break
			}
			end += m
		}
		for w := 0; w < end; {
			k, err := unix.Pwrite(fd, b[w:end], off+int64(w))
			if err != nil {
				return last, err
			}
			w += k
		}
		b, off = b[end:], off+int64(end)
		last = off
	}
	return last, nil
}

// finish sets the directories' metadata (with dirs), deepest first, now
// that nothing more is created in them (which would change their mtimes, and
// a default ACL set early would be inherited by entries the archive gives
// none), and moves the aggregated warnings into the result.
func (x *extractor) finish(dirs bool) {
	if !dirs {
		x.dirs = nil
	}
	sort.SliceStable(x.dirs, func(i, j int) bool { return depth(x.dirs[i].rel) > depth(x.dirs[j].rel) })
	for _, d := range x.dirs {
		fd, err := openDir(x.root, d.rel, false, nil)
		if err != nil {
			x.warn("cannot set directory metadata: "+err.Error(), d.rel)
			continue
		}
		x.meta(d.hdr, fd, true)
		x.dirAttrs(d.hdr, fd)
		unix.Close(fd)
	}
	x.dirs = nil
	keys := make([]string, 0, len(x.warned))
	for k := range x.warned {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w := x.warned[k]
		msg := fmt.Sprintf("%s (%s", k, w.example)
		if w.count > 1 {
			msg += fmt.Sprintf(" and %d more", w.count-1)
		}
		x.res.Warnings = append(x.res.Warnings, msg+")")
	}
}

func depth(rel string) int {
	if rel == "" {
		return -1
	}
	return strings.Count(rel, "/")
}
