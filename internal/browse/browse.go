// Package browse reads single files out of a backup without restoring it:
// the filesystem's file index (internal/index) lists the tree, and the
// archive's frames are fetched by ranged reads, each checked against the
// SHA-256 the index records before a byte of it is served.
//
// A backup made before indexes existed, or compressed with gzip (which
// has no frames), is read by streaming its archive from the start
// instead: FS.Streamed says so, and everything served from such an
// archive comes from a read of the whole archive whose SHA-256 matched.
package browse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

	"voltar/internal/catalog"
	"voltar/internal/codec"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/index"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store"
)

// ErrDamaged is matched by errors about bytes that do not hash as
// recorded: a frame, the index, a streamed archive.
var ErrDamaged = errors.New("damaged")

// FS is one filesystem archive of a backup, opened for browsing.
type FS struct {
	Backup *catalog.Backup
	FS     manifest.Filesystem
	Index  *index.Index
	// Streamed: the archive has no usable frames (no index, or gzip), so
	// every read streams it from the start.
	Streamed bool
	// Why says why the archive is streamed.
	Why string

	st          store.Store
	ids         *crypt.Identities
	compression string

	mu     sync.Mutex
	src    io.ReaderAt         // the compressed stream (decrypted)
	crypt  *crypt.RandomReader // of an encrypted archive
	win    *window             // what src reads from the store
	dec    *zstd.Decoder
	frames *frameCache
	saved  map[string]*os.File // see streamIndex

	// chain: the archives of the earlier backups an increment's entries
	// are in, by timestamp, opened on first use (see holder).
	chain map[string]*FS
}

// Open opens filesystem fs of backup b: its file index, or, for a backup
// without one, an index built by streaming the archive once (and checking
// its SHA-256).
func Open(ctx context.Context, st store.Store, b *catalog.Backup, fs manifest.Filesystem, ids *crypt.Identities) (*FS, error) {
	return open(ctx, st, b, fs, ids, nil)
}

// OpenFor is Open for reading the entries named by paths (index paths)
// only: of the index, only their lines are decoded (index.ReadSome), so
// one file of a big filesystem comes back without decoding its whole
// index. Lookup, Target and the reads work; nothing lists the tree.
func OpenFor(ctx context.Context, st store.Store, b *catalog.Backup, fs manifest.Filesystem, ids *crypt.Identities, paths ...string) (*FS, error) {
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	return open(ctx, st, b, fs, ids, func(p []byte) bool { return want[string(p)] })
}

func open(ctx context.Context, st store.Store, b *catalog.Backup, fs manifest.Filesystem, ids *crypt.Identities, keep func([]byte) bool) (*FS, error) {
	if fs.Mode != manifest.ModeFiles || fs.Archive == "" {
		return nil, fmt.Errorf("%s of %s is stored %s, not as files: restore it with voltar restore --to-image", fs.Name, b.ID, fs.Mode)
	}
	if layout.Encrypted(fs.Archive) && ids == nil {
		return nil, fail.Hint(crypt.ErrNoIdentity, "set encryption.identity_file in the config to the private key of this backup's recipient")
	}
	f := &FS{Backup: b, FS: fs, st: st, ids: ids, compression: layout.Compression(fs.Archive), frames: newFrameCache(8)}
	if fs.Index == nil {
		f.Streamed, f.Why = true, "this backup has no file index (made by an older voltar)"
		ix, err := f.streamIndex(ctx, keep)
		if err != nil {
			return nil, err
		}
		f.Index = ix
		return f, nil
	}
	ix, err := f.readIndex(ctx, keep)
	if err != nil {
		return nil, err
	}
	f.Index = ix
	if len(ix.Frames) == 0 || !codec.Seekable(f.compression) {
		f.Streamed, f.Why = true, "its archive is "+f.compression+"-compressed, which cannot be read from the middle"
	}
	return f, nil
}

// Close releases the decoder and the saved files.
func (f *FS) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dec != nil {
		f.dec.Close()
		f.dec = nil
	}
	for _, t := range f.saved {
		t.Close()
	}
	f.saved = nil
	for _, g := range f.chain {
		g.Close()
	}
	f.chain = nil
}

// holder returns the archive of the earlier backup that holds entry e of
// an increment's index (e.From), and e as that archive's own entry. The
// backup must be a link of this backup's chain (catalog.Chain checks each
// parent against the manifest SHA-256 its child recorded). Only its
// frames are read from its index: the entries come from this index.
func (f *FS) holder(ctx context.Context, e *index.Entry) (*FS, *index.Entry, error) {
	c := *e
	c.From = ""
	f.mu.Lock()
	g, ok := f.chain[e.From]
	f.mu.Unlock()
	if ok {
		return g, &c, nil
	}
	parents, err := catalog.Chain(ctx, f.st, f.Backup)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range parents {
		if path.Base(p.ID) != e.From {
			continue
		}
		i := slices.IndexFunc(p.Manifest.Filesystems, func(m manifest.Filesystem) bool { return m.Name == f.FS.Name })
		if i < 0 {
			break
		}
		g, err := open(ctx, f.st, p, p.Manifest.Filesystems[i], f.ids, func([]byte) bool { return false })
		if err != nil {
			return nil, nil, fmt.Errorf("%s, which %s builds on: %w", p.ID, f.Backup.ID, err)
		}
		f.mu.Lock()
		if f.chain == nil {
			f.chain = map[string]*FS{}
		}
		f.chain[e.From] = g
		f.mu.Unlock()
		return g, &c, nil
	}
	return nil, nil, f.damaged("%s: %q is in backup %s, which is not in the chain of %s", f.FS.Index.Name, e.Path, e.From, f.Backup.ID)
}

// damaged wraps an integrity failure with what to do about it.
func (f *FS) damaged(what string, args ...any) error {
	return fail.Hint(fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprintf(what, args...)),
		"run voltar verify %s to see what else is damaged; restore from another backup", f.Backup.FullID())
}

// readIndex reads and checks the filesystem's index object (only the
// entries keep accepts, see index.ReadSome).
func (f *FS) readIndex(ctx context.Context, keep func([]byte) bool) (*index.Index, error) {
	name := f.FS.Index.Name
	s, err := objio.Open(ctx, f.st, f.Backup.Key(name), f.ids)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer s.Close()
	ix, rerr := index.ReadSome(s.Data, keep, int(f.FS.Entries+f.FS.Unchanged))
	d, err := s.Finish()
	if d.Complete && d.SHA256 != f.FS.Index.SHA256 {
		return nil, f.damaged("%s: sha256 is %s, %s says %s", name, d.SHA256, layout.Manifest, f.FS.Index.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if rerr != nil {
		return nil, f.damaged("%s: %v", name, rerr)
	}
	if ix.Header.FS != f.FS.Name || ix.Header.Archive != f.FS.Archive {
		return nil, f.damaged("%s is the index of %s, not of %s", name, ix.Header.Archive, f.FS.Archive)
	}
	return ix, nil
}

// streamIndex builds an index without frames from the archive itself. The
// content of the regular files keep accepts is kept on the way (in
// private temporary files, FS.saved), so a file asked for by OpenFor is
// read in this one pass, not in a second one; it is served only once the
// whole archive's SHA-256 matched (Stream fails otherwise).
func (f *FS) streamIndex(ctx context.Context, keep func([]byte) bool) (*index.Index, error) {
	ix := &index.Index{Header: index.Header{Version: index.Version, FS: f.FS.Name, Archive: f.FS.Archive}}
	err := f.Stream(ctx, func(s *objio.Stream) error {
		for {
			h, off, err := s.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			e := index.FromHeader(h, off)
			ix.Entries = append(ix.Entries, e)
			if keep != nil && e.Type == index.File && keep([]byte(e.Path)) {
				if err := f.save(e.Path, s.Tar); err != nil {
					return err
				}
			}
		}
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	ix.End = index.End{Entries: int64(len(ix.Entries))}
	return ix, nil
}

// save copies a file's content into a private temporary file.
func (f *FS) save(path string, r io.Reader) error {
	tmp, err := os.CreateTemp("", "voltar-cat-*")
	if err != nil {
		return err
	}
	os.Remove(tmp.Name())
	if f.saved == nil {
		f.saved = map[string]*os.File{}
	}
	if old := f.saved[path]; old != nil {
		old.Close()
	}
	f.saved[path] = tmp
	_, err = io.Copy(tmp, r)
	return err
}

// Stream reads the whole archive through fn (which may stop early; the
// rest is read by stream) and fails if its SHA-256 is not the recorded one.
func (f *FS) Stream(ctx context.Context, fn func(*objio.Stream) error) error {
	s, err := objio.Open(ctx, f.st, f.Backup.Key(f.FS.Archive), f.ids)
	if err != nil {
		return fmt.Errorf("%s: %w", f.FS.Archive, err)
	}
	defer s.Close()
	ferr := fn(s)
	d, err := s.Finish()
	if d.Complete && d.SHA256 != f.FS.SHA256 {
		return f.damaged("%s: sha256 is %s, %s says %s", f.FS.Archive, d.SHA256, layout.Manifest, f.FS.SHA256)
	}
	if ferr != nil {
		return fmt.Errorf("%s: %w", f.FS.Archive, ferr)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", f.FS.Archive, err)
	}
	return nil
}
