// Package mountfs serves a whole store as a read-only FUSE file system:
//
//	MOUNTPOINT/<host>/<vg>/<volume>/<timestamp>/<pN|fs>/...
//
// with the files' sizes, modes, owners, times, symlinks and extended
// attributes as archived. Directories and attributes come from the file
// indexes (internal/index); reading a file fetches only the archive
// frames that hold it, each checked against its SHA-256 first
// (internal/browse). A damaged frame fails that read with EIO and a log
// line, never with wrong bytes.
package mountfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"voltar/internal/browse"
	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/dump"
	"voltar/internal/index"
	"voltar/internal/manifest"
	"voltar/internal/store"
)

// Options configure Mount.
type Options struct {
	// AllowOther lets other users than the one mounting see the tree
	// (the kernel still checks each file's mode: default_permissions).
	AllowOther bool
	// Identities decrypt encrypted backups; without them those show
	// their directories but fail reads with EACCES.
	Identities *crypt.Identities
	Logger     *slog.Logger
	// Check, when set, is run on a backup before anything of it is
	// served (the manifest's signature); a backup it fails reads as EIO.
	Check func(context.Context, *catalog.Backup) error
}

// Mount lists the store and mounts it at dir. The caller waits on the
// server (Wait) and unmounts it (Unmount).
func Mount(ctx context.Context, st store.Store, dir string, opts Options) (*fuse.Server, error) {
	cat, err := catalog.List(ctx, st, "", "")
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root := &dirNode{}
	fsys := &filesys{st: st, ids: opts.Identities, log: log, ctx: context.WithoutCancel(ctx), check: opts.Check}
	root.fill = func(ctx context.Context, n *fs.Inode) {
		for i := range cat.Backups {
			b := &cat.Backups[i]
			if dump.IsDump(b.Manifest) {
				continue
			}
			p := n
			for _, part := range []string{b.Host, b.Group, b.Volume} {
				c := p.GetChild(part)
				if c == nil {
					c = p.NewPersistentInode(ctx, &dirNode{mtime: b.Time}, fs.StableAttr{Mode: syscall.S_IFDIR})
					p.AddChild(part, c, false)
				}
				p = c
			}
			ts := b.Prefix[strings.LastIndexByte(strings.TrimSuffix(b.Prefix, "/"), '/')+1:]
			ts = strings.TrimSuffix(ts, "/")
			p.AddChild(ts, p.NewPersistentInode(ctx, &backupNode{fsys: fsys, b: b}, fs.StableAttr{Mode: syscall.S_IFDIR}), false)
		}
	}
	sec := time.Second
	srv, err := fs.Mount(dir, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:   opts.AllowOther,
			FsName:       "voltar:" + st.String(),
			Name:         "voltar",
			Options:      []string{"ro", "default_permissions"},
			MaxReadAhead: 1 << 20,
			// As root, mount(2) directly; fusermount3 otherwise.
			DirectMount: true,
		},
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return srv, nil
}

// filesys is what every node shares.
type filesys struct {
	ctx   context.Context
	st    store.Store
	ids   *crypt.Identities
	log   *slog.Logger
	check func(context.Context, *catalog.Backup) error
}

// eio logs why a read failed and returns EIO.
func (f *filesys) eio(what string, err error) syscall.Errno {
	f.log.Error("voltar mount: "+what, "err", err)
	if errors.Is(err, crypt.ErrNoIdentity) {
		return syscall.EACCES
	}
	return syscall.EIO
}

// dirNode is a host, volume group or volume directory.
type dirNode struct {
	fs.Inode
	mtime time.Time
	fill  func(context.Context, *fs.Inode)
}

var _ = (fs.NodeOnAdder)((*dirNode)(nil))
var _ = (fs.NodeGetattrer)((*dirNode)(nil))

func (d *dirNode) OnAdd(ctx context.Context) {
	if d.fill != nil {
		d.fill(ctx, &d.Inode)
	}
}

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	out.SetTimes(nil, &d.mtime, &d.mtime)
	return 0
}

// backupNode is a backup: its filesystems (p1, p2, ... or fs) as
// directories, opened when first looked into.
type backupNode struct {
	fs.Inode
	fsys *filesys
	b    *catalog.Backup

	mu sync.Mutex
	bk *browse.Backup
}

var _ = (fs.NodeLookuper)((*backupNode)(nil))
var _ = (fs.NodeReaddirer)((*backupNode)(nil))
var _ = (fs.NodeGetattrer)((*backupNode)(nil))

func (n *backupNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	out.SetTimes(nil, &n.b.Time, &n.b.Time)
	return 0
}

// backup opens the backup on first use, after Options.Check.
func (n *backupNode) backup() (*browse.Backup, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.bk == nil {
		if n.fsys.check != nil {
			if err := n.fsys.check(n.fsys.ctx, n.b); err != nil {
				return nil, err
			}
		}
		n.bk = browse.OpenBackup(n.fsys.st, n.b, n.fsys.ids)
	}
	return n.bk, nil
}

func (n *backupNode) files() ([]manifest.Filesystem, error) {
	bk, err := n.backup()
	if err != nil {
		return nil, err
	}
	var out []manifest.Filesystem
	for _, m := range bk.Filesystems() {
		if m.Mode == manifest.ModeFiles {
			out = append(out, m)
		}
	}
	return out, nil
}

func (n *backupNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	fss, err := n.files()
	if err != nil {
		return nil, n.fsys.eio("open "+n.b.ID, err)
	}
	var ents []fuse.DirEntry
	for _, m := range fss {
		ents = append(ents, fuse.DirEntry{Name: m.Name, Mode: syscall.S_IFDIR})
	}
	return fs.NewListDirStream(ents), 0
}

func (n *backupNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fss, err := n.files()
	if err != nil {
		return nil, n.fsys.eio("open "+n.b.ID, err)
	}
	for _, m := range fss {
		if m.Name != name {
			continue
		}
		n.mu.Lock()
		f, err := n.bk.FS(n.fsys.ctx, name)
		n.mu.Unlock()
		if err != nil {
			return nil, n.fsys.eio("open "+n.b.ID+" "+name, err)
		}
		if f.Streamed {
			n.fsys.log.Warn("voltar mount: reads of this filesystem stream its whole archive: "+f.Why, "backup", n.b.ID, "fs", name)
		}
		e, ok := f.Index.Lookup(".")
		if !ok {
			e = &index.Entry{Path: ".", Type: index.Dir, Mode: 0o755}
		}
		node := &entryNode{fsys: n.fsys, f: f, e: e}
		node.attr(&out.Attr)
		return n.NewInode(ctx, node, fs.StableAttr{Mode: syscall.S_IFDIR}), 0
	}
	return nil, syscall.ENOENT
}

// entryNode is an entry of a filesystem's index.
type entryNode struct {
	fs.Inode
	fsys *filesys
	f    *browse.FS
	e    *index.Entry

	mu     sync.Mutex
	xattrs map[string]string // read from the entry's header on first use
}

var _ = (fs.NodeLookuper)((*entryNode)(nil))
var _ = (fs.NodeReaddirer)((*entryNode)(nil))
var _ = (fs.NodeGetattrer)((*entryNode)(nil))
var _ = (fs.NodeReadlinker)((*entryNode)(nil))
var _ = (fs.NodeOpener)((*entryNode)(nil))
var _ = (fs.NodeGetxattrer)((*entryNode)(nil))
var _ = (fs.NodeListxattrer)((*entryNode)(nil))

// data is the entry holding the node's content (a hard link's target).
func (n *entryNode) data() *index.Entry { return n.f.Index.Target(n.e) }

func typeBits(t index.Type) uint32 {
	switch t {
	case index.Dir:
		return syscall.S_IFDIR
	case index.Symlink:
		return syscall.S_IFLNK
	case index.Char:
		return syscall.S_IFCHR
	case index.Block:
		return syscall.S_IFBLK
	case index.Fifo:
		return syscall.S_IFIFO
	}
	return syscall.S_IFREG
}

func (n *entryNode) attr(a *fuse.Attr) {
	e := n.data()
	a.Mode = typeBits(e.Type) | e.Mode
	a.Size = uint64(e.Size)
	if e.Type == index.Symlink {
		a.Size = uint64(len(e.Link))
	}
	a.Blocks = (a.Size + 511) / 512
	a.Uid, a.Gid = uint32(e.UID), uint32(e.GID)
	a.Nlink = uint32(max(e.Nlink, 1))
	if e.Type == index.Char || e.Type == index.Block {
		a.Rdev = uint32(e.Major<<8 | e.Minor&0xff | (e.Minor&^0xff)<<12)
	}
	mt := time.Unix(0, e.Mtime)
	ct := mt
	if e.Ctime != 0 {
		ct = time.Unix(0, e.Ctime)
	}
	a.SetTimes(&mt, &mt, &ct)
}

func (n *entryNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.attr(&out.Attr)
	return 0
}

func (n *entryNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	kids := n.f.Index.Children(n.e.Path)
	ents := make([]fuse.DirEntry, 0, len(kids))
	for _, c := range kids {
		ents = append(ents, fuse.DirEntry{Name: c.Path[strings.LastIndexByte(c.Path, '/')+1:], Mode: typeBits(n.f.Index.Target(c).Type)})
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	return fs.NewListDirStream(ents), 0
}

func (n *entryNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p := name
	if n.e.Path != "." {
		p = n.e.Path + "/" + name
	}
	e, ok := n.f.Index.Lookup(p)
	if !ok {
		return nil, syscall.ENOENT
	}
	child := &entryNode{fsys: n.fsys, f: n.f, e: e}
	child.attr(&out.Attr)
	return n.NewInode(ctx, child, fs.StableAttr{Mode: typeBits(child.data().Type)}), 0
}

func (n *entryNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.e.Type != index.Symlink {
		return nil, syscall.EINVAL
	}
	return []byte(n.e.Link), 0
}

// loadXattrs reads the entry's extended attributes from its header.
func (n *entryNode) loadXattrs(ctx context.Context) (map[string]string, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.xattrs != nil {
		return n.xattrs, 0
	}
	m := map[string]string{}
	if e := n.data(); e.Xattrs != "" {
		h, err := n.f.Header(n.fsys.ctx, e)
		if err != nil {
			return nil, n.fsys.eio("read attributes of "+e.Path, err)
		}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				m[decodeXattrName(name)] = v
			}
		}
	}
	n.xattrs = m
	return m, 0
}

// decodeXattrName undoes the archive's escaping of "%" and "=".
func decodeXattrName(n string) string {
	if !strings.Contains(n, "%") {
		return n
	}
	return strings.NewReplacer("%25", "%", "%3D", "=").Replace(n)
}

func (n *entryNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	m, errno := n.loadXattrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	v, ok := m[attr]
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *entryNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	m, errno := n.loadXattrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var b []byte
	for _, k := range names {
		b = append(append(b, k...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

func (n *entryNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	e := n.data()
	if e.Type != index.File {
		return nil, 0, syscall.EINVAL
	}
	h := &fileHandle{fsys: n.fsys, f: n.f, e: e}
	if n.f.Streamed {
		// No frames: the file comes out of one verified read of the
		// whole archive into a private temporary file.
		tmp, err := os.CreateTemp("", "voltar-mount-*")
		if err != nil {
			return nil, 0, n.fsys.eio("open "+e.Path, err)
		}
		os.Remove(tmp.Name())
		if _, err := n.f.Copy(n.fsys.ctx, e, tmp); err != nil {
			tmp.Close()
			return nil, 0, n.fsys.eio("read "+e.Path, err)
		}
		h.tmp = tmp
	}
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// fileHandle reads one open file.
type fileHandle struct {
	fsys *filesys
	f    *browse.FS
	e    *index.Entry
	tmp  *os.File // a streamed archive's file

	mu  sync.Mutex
	en  *browse.Entry // opened entry: data offset, or a sequential reader
	pos int64         // of en.Data, for sparse files
}

var _ = (fs.FileReader)((*fileHandle)(nil))
var _ = (fs.FileReleaser)((*fileHandle)(nil))

func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	if h.tmp != nil {
		h.tmp.Close()
	}
	return 0
}

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.tmp != nil {
		n, err := h.tmp.ReadAt(dest, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, h.fsys.eio("read "+h.e.Path, err)
		}
		return fuse.ReadResultData(dest[:n]), 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.en == nil || h.en.DataOffset < 0 && off < h.pos {
		en, err := h.f.OpenEntry(h.fsys.ctx, h.e)
		if err != nil {
			return nil, h.fsys.eio("read "+h.e.Path, err)
		}
		h.en, h.pos = en, 0
	}
	var n int
	var err error
	if h.en.DataOffset >= 0 {
		n, err = h.f.ReadAt(h.fsys.ctx, h.en, dest, off)
	} else {
		// A sparse file's data is read in order.
		if _, err = io.CopyN(io.Discard, h.en.Data, off-h.pos); err == nil {
			h.pos = off
			n, err = io.ReadFull(h.en.Data, dest)
			h.pos += int64(n)
		}
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		h.en = nil
		return nil, h.fsys.eio("read "+h.e.Path, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}
