// Package archive writes a mounted filesystem as one PAX tar stream. It
// writes plain tar; compression, encryption and hashing are the object
// pipeline's (internal/objio), which every stored object goes through.
//
// The stream is meant to outlive voltar: every archive extracts with
//
//	zstd -d < p1.tar.zst | tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -p -C DIR
//
// (GNU tar 1.34), and reads back with Go's archive/tar. Sparse files are
// written as PAX 1.0 sparse entries, which archive/tar can read but not
// write, so those entries are encoded here (see sparse.go).
package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/btrfs"
	"voltar/internal/index"
)

// Options tune Write. The zero value archives everything but lost+found.
type Options struct {
	Excludes []string       // doublestar globs; see Write
	Progress func(Progress) // optional; called at most ~10x/s and once at the end
	Logger   *slog.Logger   // optional; warnings for skipped sockets etc.
	// BtrfsSnapshots archives the contents of read-only btrfs snapshots
	// too; by default only their directory entry is kept (see Write).
	BtrfsSnapshots bool

	// Index, when set, is called with every entry before its header is
	// written, with the header's offset in the tar stream (see
	// internal/index). An error stops the archive. The entry is valid
	// only during the call: Write reuses it.
	Index func(*index.Entry) error

	// Parent, when set, makes the archive an increment on the parent
	// backup's index of the same filesystem (see Write).
	Parent *Parent

	// Drop is for tests only (no config key or flag sets it): entries it
	// returns true for are left out without being counted or recorded,
	// as a walk that silently misses entries would; the backup's
	// completeness check must catch that.
	Drop func(rel string) bool

	// NoPrefetch turns the prefetcher (prefetch.go) and the lister
	// (lookahead.go) off. They hide disk waits with more system calls
	// and threads; where a system call costs more than the wait it hides
	// (the sandbox's UML guest, where each is a round trip through the
	// host) they cost more than they save.
	NoPrefetch bool

	// NoProjectIDs says the filesystem holds no project ids and no
	// extent size hints (ext2/3/4 made without the project feature): the
	// walk does not ask for them, one system call less per entry.
	NoProjectIDs bool

	// Batch submits the walk's lstat, open, first read and close of each
	// entry in batches through io_uring where the kernel has it (see
	// batch.go): for the sandbox's guest, where a system call is a round
	// trip through the host. It implies NoPrefetch. The archive is the
	// same.
	Batch bool
}

// Parent is the backup an incremental archive builds on.
type Parent struct {
	// Index returns the parent's index of the filesystem: its whole tree,
	// as merged for an increment. Write calls it once, when it has started
	// listing the tree ahead (lookahead.go), so the index may still be
	// being read when Write starts. An error makes the archive whole
	// (Result.Incremental false).
	Index func() (*index.Index, error)
	// Time is the parent's timestamp, the From of the entries its own
	// archive holds.
	Time string
}

// Subvolume is a btrfs subvolume met by the walk: entered, or skipped
// (Skipped says why).
type Subvolume struct {
	Path    string // relative to root, no "./"
	Info    btrfs.Subvol
	Skipped string
}

// NotEntered is a path whose contents the walk left out, and why.
type NotEntered struct {
	Path   string `json:"path"` // relative to root, no "./"
	Reason string `json:"reason"`
}

// Progress is a running count of what Write has archived.
type Progress struct {
	Bytes int64 // logical regular-file bytes done (holes of sparse files included)
	Files int64 // regular files done
}

// Result describes a finished archive.
type Result struct {
	SourceBytes int64 // logical (apparent) size of the regular files archived
	Files       int64 // regular files archived with their data (not hardlinks to them)
	Entries     int64 // tar entries written, of every type
	Excluded    int64 // entries left out by lost+found or an exclude pattern
	Skipped     int64 // entries that cannot be archived: sockets, other filesystems
	// DataBytes is the regular files' data: SourceBytes without the holes
	// of sparse files, what the walk read from the source.
	DataBytes int64
	// Shared is the file data in extents the filesystem shares between
	// files (btrfs, xfs: reflinks, snapshots), counted in every file;
	// SharedOnce counts each extent once.
	Shared, SharedOnce int64
	// Inodes counts the distinct inodes of root's filesystem the walk met,
	// each once however many names it has: archived, excluded (with what
	// excluded directories hold) or skipped (sockets). Compared with what
	// the filesystem says it holds, it shows entries the walk missed.
	Inodes int64
	// TarBytes is the length of the tar stream.
	TarBytes int64
	// Inherited counts the entries of an increment left to the parent
	// chain: unchanged since the parent, indexed but not in the archive.
	Inherited int64
	// Incremental is true when the archive is an increment on
	// Options.Parent: false without a parent, or when its index could not
	// be read.
	Incremental bool
	// Subvolumes lists the btrfs subvolumes below root, in walk order.
	Subvolumes []Subvolume
	// NotEntered lists every directory whose contents were left out
	// (another filesystem mounted there, a skipped snapshot) and every
	// other entry on another filesystem.
	NotEntered []NotEntered
}

// progressEvery throttles Options.Progress. The clock is read at most once
// per progressCalls calls of report or progressBytes of data: report is
// called for every file, and in the sandbox's guest reading the clock is
// two round trips through the host (22 us, as much as two files' lstat).
const (
	progressEvery = 100 * time.Millisecond
	progressCalls = 256
	progressBytes = 64 << 20
)

// bufSize is the read size for file data.
const bufSize = 1 << 20

// Write archives the tree at root into w as a tar stream. It never closes
// w. On error the stream is incomplete and must be discarded by the
// caller; Write then returns without flushing what it buffered, so a
// cancel is not delayed by writing out.
//
// Entry names are relative to root with a "./" prefix, in lexical order,
// as `tar -C root -c .` names them; root itself is "./". Write stays on
// root's filesystem, with one exception: on btrfs, a subvolume of the same
// filesystem (a directory with inode 256 on another st_dev that is not a
// mount point) is entered, except a read-only snapshot without
// Options.BtrfsSnapshots, of which only the directory entry is archived.
// Everything not entered is listed in Result.NotEntered. uname/gname come only from root's own etc/passwd and
// etc/group (the tree belongs to a guest, not to this host).
//
// Increment (Options.Parent): an entry whose inode is unchanged since the
// parent's index (same type, inode number, size, mtime, ctime, mode,
// owner, link count, device numbers) is not archived; Options.Index gets
// the parent's entry with From naming the backup that holds it. A change
// of xattrs, ACLs or inode flags changes ctime, so it is caught by ctime
// without reading them. The device number is not compared: a snapshot
// mounted from another loop device has another. Every directory is
// archived, with a GNU.dumpdir record listing its entries as GNU tar's
// --listed-incremental does ("D" a directory, "Y" in this archive, "N"
// not), so that
//
//	tar -x --listed-incremental=/dev/null
//
// of the full and then each increment, in order, removes what was
// deleted since and rebuilds the tree at the increment's time.
//
// Excludes: lost+found directly under root is always left out. A pattern
// without "/" matches an entry's base name at any depth ("*.tmp",
// ".cache"); a pattern with "/" matches the path relative to root
// ("home/*/tmp"; a leading "/" is ignored). "var/cache/**" leaves out
// what is inside var/cache but keeps the directory. A trailing "/"
// restricts a pattern to directories. Excluded directories are not entered.
func Write(ctx context.Context, root string, w io.Writer, opts Options) (Result, error) {
	excl, err := newExcluder(opts.Excludes)
	if err != nil {
		return Result{}, err
	}
	var rootSt unix.Stat_t
	if err := unix.Lstat(root, &rootSt); err != nil {
		return Result{}, fmt.Errorf("archive: %w", &os.PathError{Op: "lstat", Path: root, Err: err})
	}
	if rootSt.Mode&unix.S_IFMT != unix.S_IFDIR {
		return Result{}, fmt.Errorf("archive %s: not a directory", root)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	owners, oerr := loadOwners(root)
	if oerr != nil {
		// Names are a convenience; restores use the numeric ids.
		log.Warn("archive: owner names unavailable, archiving numeric ids only", "err", oerr)
		owners = &ownerNames{}
	}

	// Batches tar's small writes (headers, padding) for the compressor.
	bw := bufio.NewWriterSize(w, 256<<10)
	cw := &counter{w: bw}
	a := &archiver{
		ctx:    ctx,
		root:   root,
		dev:    rootSt.Dev,
		tw:     tar.NewWriter(cw),
		raw:    cw,
		cw:     cw,
		buf:    make([]byte, bufSize),
		links:  make(map[fileID]*link),
		owners: owners,
		excl:   excl,
		btrfs:  btrfs.Is(root),
		fileFD: -1,
		seen:   make(map[fileID]uint64),
		opts:   opts,
		log:    log,
	}
	if opts.Batch {
		a.bat = newBatcher(log)
	}
	ahead := !opts.NoPrefetch && !opts.Batch
	a.pf = newPrefetcher(ahead)
	// Only an increment lists ahead: a whole archive's walk waits for file
	// data, not for listings (measured: no faster, and 40 MiB more memory).
	a.look = newLister(ctx, excl, ahead && opts.Parent != nil, a.bat)
	if p := opts.Parent; p != nil {
		// The tree is listed ahead while the index is read.
		a.look.start(root, rootSt.Dev)
		if ix, ierr := p.Index(); ierr == nil && ix != nil {
			a.parent, a.parentTime, a.res.Incremental = ix, p.Time, true
		}
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("archive: %w", cerr)
		}
	}
	if err == nil {
		err = a.entry(root, "", &rootSt, rootSt.Dev)
	}
	a.pf.close()
	a.look.close()
	a.bat.close()
	if err == nil {
		err = a.tw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	a.res.TarBytes = cw.n
	if err != nil {
		return a.res, err
	}
	a.report(true)
	return a.res, nil
}

// fileID identifies an inode on the archived filesystem.
type fileID struct{ dev, ino uint64 }

// link remembers the first archived name of a multiply linked inode. left
// counts names not seen yet, so the entry is dropped once all were seen.
type link struct {
	name string
	left uint64
}

type archiver struct {
	ctx    context.Context
	root   string
	dev    uint64
	tw     *tar.Writer
	raw    io.Writer // the writer under tw, for hand-encoded sparse entries
	cw     *counter  // counts the tar stream's bytes (raw)
	fileFD int       // the regular file being archived, -1 between files
	buf    []byte
	links  map[fileID]*link
	owners *ownerNames
	excl   *excluder
	btrfs  bool              // root is on btrfs: subvolumes are entered
	seen   map[fileID]uint64 // multiply linked inodes counted, and names not met yet
	opts   Options
	log    *slog.Logger
	res    Result
	pf     *prefetcher
	look   *lister
	bat    *batcher // Options.Batch; nil: plain system calls
	// pre is the regular file the batcher opened ahead for the entry
	// being archived (hasPre): file takes it, else dir closes it.
	pre    ahead
	hasPre bool
	// parent is the index an increment builds on (Options.Parent), nil
	// for a whole archive; parentTime its backup's timestamp.
	parent     *index.Index
	parentTime string
	ent        index.Entry // what Options.Index is called with, reused

	doneBytes  int64
	lastReport time.Time
	// reportCalls and reportBytes are report's calls and doneBytes since
	// it last read the clock.
	reportCalls int
	reportBytes int64

	// sharedSeen holds the physical starts of the shared extents met (nil:
	// not counted); sharesKnown is set once the first file decided it.
	sharedSeen  map[uint64]bool
	sharesKnown bool
}

// entry archives one filesystem object (and, for a directory, its tree).
// rel is the path relative to root without "./"; "" is root itself. dev is
// the device of the directory holding it. (An entry an increment leaves
// to the parent chain never gets here: dir indexes it, see inherit.)
func (a *archiver) entry(abs, rel string, st *unix.Stat_t, dev uint64) error {
	if err := a.ctx.Err(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	name := "./" + rel
	if st.Dev != dev {
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if isDir && a.subvolume(abs, st) {
			return a.enterSubvolume(abs, rel, st)
		}
		a.res.Skipped++
		if isDir {
			// Like tar --one-file-system: keep the mount point, not its content.
			a.notEntered(rel, "another filesystem is mounted here")
			return a.writeHeader(abs, st, a.emptyDir(name+"/"))
		}
		a.notEntered(rel, "on another filesystem")
		return nil
	}
	a.count(st)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if rel == "" {
			name = "./"
		} else {
			name += "/"
		}
		return a.dir(abs, rel, st, &tar.Header{Typeflag: tar.TypeDir, Name: name})
	case unix.S_IFSOCK:
		a.res.Skipped++
		a.log.Warn("archive: skipping socket, sockets cannot be archived", "path", name)
		return nil
	}

	// Every non-directory may have more names.
	if st.Nlink > 1 {
		id := fileID{st.Dev, st.Ino}
		if l, ok := a.links[id]; ok {
			if l.left--; l.left == 0 {
				delete(a.links, id)
			}
			return a.writeHeader(abs, st, &tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: l.name})
		}
		a.links[id] = &link{name: name, left: st.Nlink - 1}
	}

	hdr := &tar.Header{Name: name}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return a.file(abs, st, hdr)
	case unix.S_IFLNK:
		target, err := os.Readlink(abs)
		if err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return fmt.Errorf("archive %s: unknown file type %#o", abs, st.Mode&unix.S_IFMT)
	}
	return a.writeHeader(abs, st, hdr)
}

// child is an entry of a directory, listed before the directory's header
// is written (an increment's header lists them).
type child struct {
	name     string
	rel      string       // relative to the root
	st       *unix.Stat_t // in the directory's listing
	excluded bool
	// code is the entry's GNU dumpdir code: 'D', 'Y', 'N', or 0 for an
	// entry the archive leaves out.
	code byte
	inh  *index.Entry // 'N': the parent's entry
}

// dir archives a directory: its header hdr, then its entries in lexical
// (byte) order. Its entries are on st.Dev, or not entered.
func (a *archiver) dir(abs, rel string, st *unix.Stat_t, hdr *tar.Header) error {
	// Its attributes first: an fscrypt-encrypted directory stops the
	// archive there (EncryptedError), before a kernel without fscrypt
	// refuses to list it.
	if err := a.fillHeader(abs, st, hdr); err != nil {
		return err
	}
	kids, sts, err := a.list(abs, rel, st.Dev)
	if err != nil {
		return err
	}
	// The kids' stat (and st, for a directory below) point into sts.
	defer putStats(sts)
	if a.parent != nil {
		setDumpdir(hdr, kids)
	}
	if err := a.emit(abs, st, hdr); err != nil {
		return err
	}
	// The prefetcher warms the files whose data will be read.
	// (None in a directory an increment leaves as it was: then it is not
	// told of the directory at all.)
	var names []string
	var sizes []int64
	for i, k := range kids {
		if k.code == 'Y' && k.st.Mode&unix.S_IFMT == unix.S_IFREG {
			if names == nil {
				names, sizes = make([]string, len(kids)), make([]int64, len(kids))
			}
			names[i], sizes[i] = k.name, k.st.Size
		}
	}
	var pd *pfDir
	if names != nil {
		pd = a.pf.push(abs, names, sizes)
		defer a.pf.pop(pd)
	}
	for i := range kids {
		k := &kids[i]
		if pd != nil {
			a.pf.advance(pd, i)
		}
		if a.bat != nil && names != nil {
			a.pre, a.hasPre = a.bat.file(abs, kids, names, i)
		}
		if k.inh != nil {
			// Unchanged since the parent: indexed, not archived.
			a.count(k.st)
			if err := a.inherit(k.inh); err != nil {
				return err
			}
			continue
		}
		crel, cabs := k.rel, abs+"/"+k.name
		if k.excluded {
			a.res.Excluded++
			if err := a.countExcluded(cabs, k.st, st.Dev); err != nil {
				return err
			}
			continue
		}
		err := a.entry(cabs, crel, k.st, st.Dev)
		if a.hasPre { // not taken: a second name of a file
			a.hasPre = false
			a.closeFile(a.pre.fd)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// list reads the entries of directory abs (relative path rel, on device
// dev), sorted, with their stat and dumpdir codes; their stat is in sts.
func (a *archiver) list(abs, rel string, dev uint64) (kids []child, sts []unix.Stat_t, err error) {
	ls := a.look.list(abs, rel, dev)
	if ls.err != nil {
		return nil, nil, ls.err
	}
	kids = make([]child, 0, len(ls.names))
	for i, n := range ls.names {
		crel := n
		if rel != "" {
			crel = rel + "/" + n
		}
		k := child{name: n, rel: crel, st: &ls.sts[i]}
		if a.opts.Drop != nil && a.opts.Drop(crel) {
			continue
		}
		ft := k.st.Mode & unix.S_IFMT
		k.excluded = a.excl.match(crel, ft == unix.S_IFDIR)
		switch {
		case k.excluded, ft == unix.S_IFSOCK:
		case ft == unix.S_IFDIR:
			k.code = 'D' // entered, or kept as the mount point of another filesystem
		case k.st.Dev != dev:
		case a.parent != nil:
			if k.inh = a.unchanged(crel, k.st); k.inh != nil {
				k.code = 'N'
			} else {
				k.code = 'Y'
			}
		default:
			k.code = 'Y'
		}
		kids = append(kids, k)
	}
	return kids, ls.sts, nil
}

// fstatat is lstat of name in the directory open as dirfd.
func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// paxDumpdir is GNU tar's record of a directory's entries in an
// incremental archive.
const paxDumpdir = "GNU.dumpdir"

// setDumpdir records the directory entries the archive knows of in hdr:
// each as its code, its name and a NUL, and a NUL at the end.
func setDumpdir(hdr *tar.Header, kids []child) {
	var b []byte
	for _, k := range kids {
		if k.code != 0 {
			b = append(append(append(b, k.code), k.name...), 0)
		}
	}
	if hdr.PAXRecords == nil {
		hdr.PAXRecords = make(map[string]string)
	}
	hdr.PAXRecords[paxDumpdir] = string(append(b, 0))
}

// emptyDir is the header of a directory whose contents are not entered;
// in an increment its dumpdir is empty, so GNU tar removes what an
// earlier archive of the chain put there.
func (a *archiver) emptyDir(name string) *tar.Header {
	hdr := &tar.Header{Typeflag: tar.TypeDir, Name: name}
	if a.parent != nil {
		setDumpdir(hdr, nil)
	}
	return hdr
}

// unchanged returns the parent's entry of a non-directory whose inode is
// as the parent recorded it, or nil (no parent, new, or changed).
func (a *archiver) unchanged(rel string, st *unix.Stat_t) *index.Entry {
	p := a.parent
	if p == nil || rel == "" {
		return nil
	}
	e, ok := p.Lookup(rel)
	if !ok {
		return nil
	}
	var ft uint32
	size := e.Size
	switch e.Type {
	case index.File:
		ft = unix.S_IFREG
	case index.Hardlink:
		ft = unix.S_IFREG
		t := p.Target(e)
		if t == e {
			return nil // its target is not in the index: archive it again
		}
		size = t.Size
	case index.Symlink:
		ft = unix.S_IFLNK
	case index.Char:
		ft = unix.S_IFCHR
	case index.Block:
		ft = unix.S_IFBLK
	case index.Fifo:
		ft = unix.S_IFIFO
	default:
		return nil
	}
	nlink := max(e.Nlink, 1)
	switch {
	case st.Mode&unix.S_IFMT != ft, e.Ino != st.Ino, e.Ctime == 0, e.Ctime != st.Ctim.Nano(), e.Mtime != st.Mtim.Nano(),
		e.Mode != st.Mode&0o7777, e.UID != int(st.Uid), e.GID != int(st.Gid), nlink != max(uint64(st.Nlink), 1):
		return nil
	case ft == unix.S_IFREG && size != st.Size:
		return nil
	case (ft == unix.S_IFCHR || ft == unix.S_IFBLK) && (e.Major != int64(unix.Major(st.Rdev)) || e.Minor != int64(unix.Minor(st.Rdev))):
		return nil
	}
	return e
}

// inherit indexes an unchanged entry as the parent chain holds it.
func (a *archiver) inherit(e *index.Entry) error {
	a.res.Inherited++
	if a.opts.Index == nil {
		return nil
	}
	c := &a.ent
	*c = *e
	if c.From == "" {
		c.From = a.parentTime
	}
	if err := a.opts.Index(c); err != nil {
		return fmt.Errorf("archive: file index: %w", err)
	}
	return nil
}

// file archives a regular file, as a sparse entry when holes save space.
func (a *archiver) file(abs string, st *unix.Stat_t, hdr *tar.Header) error {
	fd, first := -1, []byte(nil)
	var err error
	if a.hasPre {
		a.hasPre = false
		fd, first = a.pre.fd, a.pre.data
	}
	if fd < 0 {
		if fd, err = openFile(abs); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
	}
	defer a.closeFile(fd)
	f := fdReader(fd)
	a.fileFD = fd
	defer func() { a.fileFD = -1 }()
	if st.Size > bufSize { // one read takes a smaller file whole
		_ = unix.Fadvise(fd, 0, 0, unix.FADV_SEQUENTIAL)
	}

	hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	if err := a.attrs(fd, abs, hdr); err != nil {
		return err
	}
	done := a.doneBytes
	var segs []segment
	sparse := false
	if st.Size > 0 && st.Blocks*512 < st.Size { // cheap test first: holes or inline data
		if segs, sparse, err = dataSegments(fd, st.Size); err != nil {
			return fmt.Errorf("archive %s: find holes: %w", abs, err)
		}
	}
	// Preallocated extents (fallocate) read as zeros and, unwritten, look
	// like holes; past the end they hold no data at all. Only a file with
	// holes or with blocks past its last block can have them worth
	// recording (every small file has blocks past its size: the rest of
	// its last block).
	if sparse || st.Blocks*512 > roundUp(st.Size, max(int64(st.Blksize), 512)) {
		if err := a.prealloc(fd, abs, hdr); err != nil {
			return err
		}
	}
	if sparse {
		err = a.writeSparse(f, abs, st, hdr, segs)
	} else {
		if first == nil && st.Size > 0 {
			first = a.pf.read(fd, a.buf[:min(st.Size, int64(len(a.buf)))])
		}
		if err = a.writeHeader(abs, st, hdr); err == nil {
			err = a.copyFirst(f, abs, first, st.Size)
		}
	}
	if err != nil {
		return err
	}
	if st.Size > bufSize {
		// The snapshot is read once; leave the host's page cache alone.
		_ = unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
	}
	a.doneBytes = done + st.Size // holes count as done
	a.res.Files++
	a.res.SourceBytes += st.Size
	if sparse {
		for _, s := range segs {
			a.res.DataBytes += s.len
		}
	} else {
		a.res.DataBytes += st.Size
	}
	if err := a.sharedExtents(fd, abs); err != nil {
		return err
	}
	a.report(false)
	return nil
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// closeFile closes the regular file open as fd: with the batcher's next
// batch, or now.
func (a *archiver) closeFile(fd int) {
	switch {
	case fd < 0:
	case a.bat != nil:
		a.bat.closeLater(fd)
	default:
		unix.Close(fd)
	}
}

// copyFirst copies the size bytes of regular file f to the archive, the
// first of them from first (read ahead by the batcher; may be nil).
func (a *archiver) copyFirst(f fdReader, abs string, first []byte, size int64) error {
	if len(first) > 0 {
		if _, err := a.tw.Write(first); err != nil {
			return fmt.Errorf("archive %s: %w", abs, err)
		}
		a.doneBytes += int64(len(first))
	}
	return a.copyData(f, abs, int64(len(first)), size-int64(len(first)), a.tw)
}

// copyData copies n bytes at off from f to dst, checking ctx per buffer.
func (a *archiver) copyData(f fdReader, abs string, off, n int64, dst io.Writer) error {
	for n > 0 {
		if err := a.ctx.Err(); err != nil {
			return fmt.Errorf("archive %s: %w", abs, err)
		}
		chunk := a.buf[:min(n, int64(len(a.buf)))]
		m, err := f.ReadAt(chunk, off)
		if m < len(chunk) {
			if err == nil || errors.Is(err, io.EOF) {
				err = errors.New("file shrank") // impossible on a frozen snapshot
			}
			return fmt.Errorf("archive %s: read at %d: %w", abs, off+int64(m), err)
		}
		if _, err := dst.Write(chunk); err != nil {
			return fmt.Errorf("archive %s: %w", abs, err)
		}
		off += int64(m)
		n -= int64(m)
		a.doneBytes += int64(m)
		a.report(false)
	}
	return nil
}

// writeHeader completes hdr with st's metadata and xattrs and writes it.
func (a *archiver) writeHeader(abs string, st *unix.Stat_t, hdr *tar.Header) error {
	if err := a.fillHeader(abs, st, hdr); err != nil {
		return err
	}
	return a.emit(abs, st, hdr)
}

// emit indexes and writes a header fillHeader completed.
func (a *archiver) emit(abs string, st *unix.Stat_t, hdr *tar.Header) error {
	if err := a.index(abs, st, hdr, false); err != nil {
		return err
	}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive %s: %w", abs, err)
	}
	a.res.Entries++
	return nil
}

// index passes the entry about to be written to Options.Index, with the
// offset its header will be written at.
func (a *archiver) index(abs string, st *unix.Stat_t, hdr *tar.Header, sparse bool) error {
	if a.opts.Index == nil {
		return nil
	}
	// tar.Writer pads the previous entry's data on the next WriteHeader:
	// pad now, so the count is where the header goes.
	if err := a.tw.Flush(); err != nil {
		return fmt.Errorf("archive %s: %w", abs, err)
	}
	e := &a.ent
	*e = index.FromHeader(hdr, a.cw.n)
	e.Mtime, e.Ctime, e.Ino, e.Nlink, e.Sparse = st.Mtim.Nano(), st.Ctim.Nano(), st.Ino, uint64(st.Nlink), sparse
	if e.Type == index.File {
		e.Size = st.Size // a sparse entry's header does not say it
	}
	if err := a.opts.Index(e); err != nil {
		return fmt.Errorf("archive: file index: %w", err)
	}
	return nil
}

// counter counts what passes to w.
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// report calls Options.Progress, at most every progressEvery unless final.
func (a *archiver) report(final bool) {
	if a.opts.Progress == nil {
		return
	}
	if !final {
		if a.reportCalls++; a.reportCalls < progressCalls && a.doneBytes-a.reportBytes < progressBytes {
			return
		}
	}
	a.reportCalls, a.reportBytes = 0, a.doneBytes
	now := time.Now()
	if !final && now.Sub(a.lastReport) < progressEvery {
		return
	}
	a.lastReport = now
	a.opts.Progress(Progress{Bytes: a.doneBytes, Files: a.res.Files})
}
