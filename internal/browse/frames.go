package browse

import (
	"archive/tar"
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"

	"voltar/internal/codec"
	"voltar/internal/crypt"
	"voltar/internal/index"
	"voltar/internal/objio"
	"voltar/internal/store"
)

// window is an io.ReaderAt over a stored object that keeps the last
// range it fetched: a frame's stored bytes are fetched with one ranged
// read (want), and the decryptor's small reads are served from them.
type window struct {
	ctx  context.Context
	st   store.Store
	key  string
	size int64
	off  int64
	buf  []byte
}

// minFetch is the least a cache miss fetches: one sealed age chunk.
const minFetch = crypt.SealedChunkSize

func (w *window) fetch(off, n int64) error {
	buf := make([]byte, min(n, w.size-off))
	if _, err := store.NewReaderAt(w.ctx, w.st, w.key, w.size).ReadAt(buf, off); err != nil && err != io.EOF {
		return err
	}
	w.off, w.buf = off, buf
	return nil
}

// want fetches [off, off+n) unless it is already held.
func (w *window) want(off, n int64) error {
	if off >= w.off && off+n <= w.off+int64(len(w.buf)) {
		return nil
	}
	return w.fetch(off, n)
}

func (w *window) ReadAt(p []byte, off int64) (int, error) {
	if off >= w.size {
		return 0, io.EOF
	}
	if off < w.off || off+int64(len(p)) > w.off+int64(len(w.buf)) {
		if err := w.fetch(off, max(int64(len(p)), minFetch)); err != nil {
			return 0, err
		}
	}
	n := copy(p, w.buf[off-w.off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// frameCache keeps the most recently decoded frames.
type frameCache struct {
	max   int
	order *list.List // of int, most recent first
	m     map[int]*list.Element
	data  map[int][]byte
}

func newFrameCache(n int) *frameCache {
	return &frameCache{max: n, order: list.New(), m: map[int]*list.Element{}, data: map[int][]byte{}}
}

func (c *frameCache) get(i int) ([]byte, bool) {
	e, ok := c.m[i]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return c.data[i], true
}

func (c *frameCache) put(i int, b []byte) {
	c.m[i] = c.order.PushFront(i)
	c.data[i] = b
	for c.order.Len() > c.max {
		e := c.order.Back()
		k := e.Value.(int)
		c.order.Remove(e)
		delete(c.m, k)
		delete(c.data, k)
	}
}

// open prepares ranged reads of the archive's stored bytes.
func (f *FS) open(ctx context.Context) error {
	if f.src != nil {
		return nil
	}
	obj, ok := f.Backup.Object(f.FS.Archive)
	if !ok {
		return fmt.Errorf("%s: missing from the store", f.FS.Archive)
	}
	f.win = &window{ctx: ctx, st: f.st, key: f.Backup.Key(f.FS.Archive), size: obj.Size}
	f.src = f.win
	if f.ids != nil && f.crypt == nil && isAge(f.FS.Archive) {
		r, err := f.ids.DecryptAt(f.win, obj.Size)
		if err != nil {
			f.src = nil
			return fmt.Errorf("%s: %w", f.FS.Archive, err)
		}
		f.crypt, f.src = r, r
	}
	if f.compression == codec.Zstd && f.dec == nil {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return err
		}
		f.dec = d
	}
	return nil
}

func isAge(name string) bool { return len(name) > 4 && name[len(name)-4:] == ".age" }

// frame returns frame i decoded, after checking its stored bytes against
// the SHA-256 the index records.
func (f *FS) frame(ctx context.Context, i int) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.frames.get(i); ok {
		return b, nil
	}
	if err := f.open(ctx); err != nil {
		return nil, err
	}
	fr := f.Index.Frames[i]
	f.win.ctx = ctx // this read's: a cancel (Ctrl-C during cat) stops it
	off, n := fr.COff, fr.CSize
	if f.crypt != nil {
		off, n = f.crypt.Stored(fr.COff, fr.CSize)
	}
	if err := f.win.want(off, n); err != nil {
		return nil, fmt.Errorf("%s: read frame %d: %w", f.FS.Archive, i, err)
	}
	stored := make([]byte, fr.CSize)
	if _, err := f.src.ReadAt(stored, fr.COff); err != nil && !(err == io.EOF) {
		return nil, fmt.Errorf("%s: read frame %d: %w", f.FS.Archive, i, err)
	}
	if sha256.Sum256(stored) != fr.SHA256 {
		return nil, f.damaged("%s: frame %d (tar bytes %d-%d) does not hash as its index records", f.FS.Archive, i, fr.UOff, fr.UOff+fr.USize)
	}
	data := stored
	if f.compression == codec.Zstd {
		var err error
		if data, err = f.dec.DecodeAll(stored, make([]byte, 0, fr.USize)); err != nil {
			return nil, f.damaged("%s: frame %d: %v", f.FS.Archive, i, err)
		}
	}
	if int64(len(data)) != fr.USize {
		return nil, f.damaged("%s: frame %d decodes to %d bytes, its index says %d", f.FS.Archive, i, len(data), fr.USize)
	}
	f.frames.put(i, data)
	return data, nil
}

// tarAt reads the tar stream from offset off, frame by frame.
type tarAt struct {
	ctx context.Context
	f   *FS
	off int64
}

func (t *tarAt) Read(p []byte) (int, error) {
	if t.off >= t.f.Index.End.TarBytes {
		return 0, io.EOF
	}
	i := t.f.Index.FrameAt(t.off)
	if i < 0 {
		return 0, t.f.damaged("%s: no frame holds tar offset %d", t.f.FS.Archive, t.off)
	}
	data, err := t.f.frame(t.ctx, i)
	if err != nil {
		return 0, err
	}
	n := copy(p, data[t.off-t.f.Index.Frames[i].UOff:])
	t.off += int64(n)
	return n, nil
}

// Entry is an opened archive entry.
type Entry struct {
	Header *tar.Header
	// Data reads the entry's content (regular files).
	Data io.Reader
	// DataOffset is where a regular, non-sparse file's data starts in the
	// tar stream (-1 otherwise): ReadAt reads from there.
	DataOffset int64

	fs *FS // the archive that holds it (an earlier backup's, for an increment)
}

// OpenEntry reads e's header from its offset in a seekable archive. The
// header must be the one the index names there.
func (f *FS) OpenEntry(ctx context.Context, e *index.Entry) (*Entry, error) {
	if e.From != "" {
		g, c, err := f.holder(ctx, e)
		if err != nil {
			return nil, err
		}
		return g.OpenEntry(ctx, c)
	}
	if f.Streamed {
		return nil, fmt.Errorf("%s: %s", f.FS.Archive, f.Why)
	}
	t := &tarAt{ctx: ctx, f: f, off: e.Offset}
	tr := tar.NewReader(t)
	h, err := tr.Next()
	if err != nil {
		return nil, f.headerError(e, err)
	}
	if index.FromTar(h.Name) != e.Path {
		return nil, f.damaged("%s: the index puts %q at tar offset %d, the archive has %q there", f.FS.Archive, e.Path, e.Offset, h.Name)
	}
	out := &Entry{Header: h, Data: tr, DataOffset: -1, fs: f}
	if h.Typeflag == tar.TypeReg && e.Type == index.File && !e.Sparse {
		out.DataOffset = t.off
	}
	return out, nil
}

func (f *FS) headerError(e *index.Entry, err error) error {
	if !errors.Is(err, tar.ErrHeader) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err // the store's, or a damaged frame's
	}
	return f.damaged("%s: no tar header at offset %d where the index puts %q: %v", f.FS.Archive, e.Offset, e.Path, err)
}

// ReadAt reads a regular, non-sparse file's bytes at off (of the file)
// straight from its frames.
func (f *FS) ReadAt(ctx context.Context, en *Entry, p []byte, off int64) (int, error) {
	if en.fs != nil {
		f = en.fs
	}
	size := en.Header.Size
	if off >= size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), size-off)]
	t := &tarAt{ctx: ctx, f: f, off: en.DataOffset + off}
	n, err := io.ReadFull(t, p)
	if err == nil && int64(n) < size-off && n < len(p) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Copy writes e's content (a regular file, a hard link's target's) to
// w. From a seekable archive it reads only e's frames, each checked
// before a byte of it is written. From a streamed one the content goes
// through a private temporary file and reaches w only once the whole
// archive's SHA-256 matched.
func (f *FS) Copy(ctx context.Context, e *index.Entry, w io.Writer) (int64, error) {
	e = f.Index.Target(e)
	if e.Type != index.File {
		return 0, fmt.Errorf("%s is a %s, not a file", e.Path, e.Type)
	}
	if e.From != "" {
		g, c, err := f.holder(ctx, e)
		if err != nil {
			return 0, err
		}
		return g.Copy(ctx, c, w)
	}
	if !f.Streamed {
		en, err := f.OpenEntry(ctx, e)
		if err != nil {
			return 0, err
		}
		return io.Copy(w, en.Data)
	}
	if t := f.saved[e.Path]; t != nil { // read with the index, see streamIndex
		if _, err := t.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		return io.Copy(w, t)
	}
	tmp, err := os.CreateTemp("", "voltar-cat-*")
	if err != nil {
		return 0, err
	}
	os.Remove(tmp.Name())
	defer tmp.Close()
	found := false
	err = f.Stream(ctx, func(s *objio.Stream) error {
		h, err := entryAt(s, e)
		if err != nil {
			return err
		}
		if h == nil {
			return nil
		}
		found = true
		_, err = io.Copy(tmp, s.Tar)
		return err
	})
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%s: not found in %s", e.Path, f.FS.Archive)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(w, tmp)
}

// Header reads e's tar header (its PAX records hold the extended
// attributes) from a seekable archive, or by streaming a streamed one.
func (f *FS) Header(ctx context.Context, e *index.Entry) (*tar.Header, error) {
	if e.From != "" {
		g, c, err := f.holder(ctx, e)
		if err != nil {
			return nil, err
		}
		return g.Header(ctx, c)
	}
	if !f.Streamed {
		en, err := f.OpenEntry(ctx, e)
		if err != nil {
			return nil, err
		}
		return en.Header, nil
	}
	var h *tar.Header
	err := f.Stream(ctx, func(s *objio.Stream) error {
		var err error
		h, err = entryAt(s, e)
		return err
	})
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("%s: not found in %s", e.Path, f.FS.Archive)
	}
	return h, nil
}

// entryAt reads s up to e's header and returns it, or nil if the archive
// ended first. (Streamed archives are read through; their offsets come
// from the same reading, see objio.Stream.Next.)
func entryAt(s *objio.Stream, e *index.Entry) (*tar.Header, error) {
	for {
		h, off, err := s.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if off < e.Offset {
			continue
		}
		if off > e.Offset || index.FromTar(h.Name) != e.Path {
			return nil, fmt.Errorf("%w: the archive has %q at offset %d, not %q", ErrDamaged, h.Name, off, e.Path)
		}
		return h, nil
	}
}
