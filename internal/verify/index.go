package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"

	"voltar/internal/catalog"
	"voltar/internal/codec"
	"voltar/internal/crypt"
	"voltar/internal/index"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store"
)

// IndexEntry presents a filesystem's file index as the entry verify and
// restore check digests against.
func IndexEntry(fs manifest.Filesystem) manifest.Filesystem {
	return manifest.Filesystem{Name: fs.Name, Mode: manifest.ModeFiles, Archive: fs.Index.Name,
		SHA256: fs.Index.SHA256, StoredBytes: fs.Index.StoredBytes}
}

// readIndex reads and checks the file index of fs: its records, its
// stored size and SHA-256, and its content (index.Read). It returns the
// index, or nil when it could not be read (a problem says why) or not
// decrypted (note says so), and what was read of the object.
func readIndex(ctx context.Context, st store.Store, b *catalog.Backup, fs manifest.Filesystem, sums catalog.Sums,
	ids *crypt.Identities, r *Result) (_ *index.Index, o Object, note string) {
	ie := IndexEntry(fs)
	name := ie.Archive
	if msg := Disagree(ie, sums); msg != "" {
		r.problem(name, "%s", msg)
	}
	o = Object{Name: name, Encrypted: layout.Encrypted(name)}
	obj, ok := b.Object(name)
	if !ok {
		r.problem(name, "missing: named by %s but not stored", layout.Manifest)
		return nil, o, ""
	}
	if obj.Size != ie.StoredBytes {
		r.problem(name, "stored size is %d bytes, %s says %d", obj.Size, layout.Manifest, ie.StoredBytes)
	}
	check := func(d objio.Digest) {
		if d.Complete {
			o.SHA256, o.StoredBytes = d.SHA256, d.Bytes
			if msg := Mismatch(d.SHA256, ie, sums); msg != "" {
				r.problem(name, "%s", msg)
			}
		}
	}
	if o.Encrypted && ids == nil {
		h := hashObject(ctx, st, b, name, r)
		o.SHA256, o.StoredBytes, o.Complete = h.SHA256, h.StoredBytes, h.SHA256 != ""
		if h.SHA256 != "" {
			check(objio.Digest{SHA256: h.SHA256, Bytes: h.StoredBytes, Complete: true})
		}
		return nil, o, name + ": " + NotChecked
	}
	s, err := objio.Open(ctx, st, b.Key(name), ids)
	if errors.Is(err, crypt.ErrWrongIdentity) {
		r.Problems = append(r.Problems, Problem{Object: name, Message: err.Error(), Hint: KeyHint(b)})
		h := hashObject(ctx, st, b, name, r)
		o.SHA256, o.StoredBytes = h.SHA256, h.StoredBytes
		if h.SHA256 != "" {
			check(objio.Digest{SHA256: h.SHA256, Bytes: h.StoredBytes, Complete: true})
		}
		return nil, o, ""
	}
	if err != nil {
		r.problem(name, "%v", err)
		return nil, o, ""
	}
	defer s.Close()
	ix, rerr := index.Read(s.Data)
	d, err := s.Finish()
	check(d)
	switch {
	case err != nil:
		r.problem(name, "%v", err)
		return nil, o, ""
	case rerr != nil:
		r.problem(name, "%v", rerr)
		return nil, o, ""
	case ix.Header.FS != fs.Name || ix.Header.Archive != fs.Archive:
		r.problem(name, "is the index of %s (%s), not of %s (%s)", ix.Header.FS, ix.Header.Archive, fs.Name, fs.Archive)
		return nil, o, ""
	}
	o.Complete, o.ContentChecked = true, true
	o.Entries = int64(len(ix.Entries))
	return ix, o, ""
}

// maxIndexProblems bounds the entry mismatches reported per index.
const maxIndexProblems = 5

// indexCheck compares an archive, as it is read, with its file index:
// every entry at its recorded offset with its recorded metadata, and
// every frame of the compressed stream with its recorded hash.
type indexCheck struct {
	ix   *index.Index
	name string // the index's object name, for problems
	r    *Result
	next int // the index entry the next tar entry must match
	// inherited counts the entries passed that are not in this archive.
	inherited int
	problems  int
	frames    *frameCheck
}

func newIndexCheck(ix *index.Index, name, archive string, r *Result) *indexCheck {
	c := &indexCheck{ix: ix, name: name, r: r}
	if len(ix.Frames) > 0 {
		c.frames = &frameCheck{frames: ix.Frames, zstd: layout.Compression(archive) == codec.Zstd, h: sha256.New()}
	}
	return c
}

func (c *indexCheck) problem(format string, args ...any) {
	c.problems++
	if c.problems <= maxIndexProblems {
		c.r.problem(c.name, format, args...)
	}
}

// entry checks the tar entry h, whose header started at offset off.
func (c *indexCheck) entry(h *tar.Header, off int64) {
	c.skipInherited()
	i := c.next
	c.next++
	if i >= len(c.ix.Entries) {
		if i == len(c.ix.Entries) {
			c.problem("lists %d entries, the archive has more (%q at %d)", len(c.ix.Entries), h.Name, off)
		}
		return
	}
	e := &c.ix.Entries[i]
	w := index.FromHeader(h, off)
	// What a tar header holds; inode, ctime and link count it does not.
	want := index.Entry{Path: w.Path, Type: w.Type, Size: w.Size, Mode: w.Mode, UID: w.UID, GID: w.GID, Mtime: w.Mtime,
		Xattrs: w.Xattrs, Offset: w.Offset, Link: w.Link, Hardlink: w.Hardlink, Major: w.Major, Minor: w.Minor}
	got := index.Entry{Path: e.Path, Type: e.Type, Size: e.Size, Mode: e.Mode, UID: e.UID, GID: e.GID, Mtime: e.Mtime,
		Xattrs: e.Xattrs, Offset: e.Offset, Link: e.Link, Hardlink: e.Hardlink, Major: e.Major, Minor: e.Minor}
	if got != want {
		c.problem("entry %d: index says %s %q at %d (mode %#o, %d bytes), the archive has %s %q at %d (mode %#o, %d bytes)%s",
			i+1, got.Type, got.Path, got.Offset, got.Mode, got.Size, want.Type, want.Path, want.Offset, want.Mode, want.Size, differs(got, want))
	}
}

// skipInherited passes the index entries an earlier backup of the chain
// holds (an increment's): they are not in this archive.
func (c *indexCheck) skipInherited() {
	for c.next < len(c.ix.Entries) && c.ix.Entries[c.next].From != "" {
		c.next++
		c.inherited++
	}
}

// differs names the fields in which two entries differ.
func differs(a, b index.Entry) string {
	var d []string
	if a.UID != b.UID || a.GID != b.GID {
		d = append(d, "owner")
	}
	if a.Mtime != b.Mtime {
		d = append(d, "mtime")
	}
	if a.Xattrs != b.Xattrs {
		d = append(d, "xattrs")
	}
	if a.Link != b.Link || a.Hardlink != b.Hardlink {
		d = append(d, "link target")
	}
	if len(d) == 0 {
		return ""
	}
	return "; differs in " + fmt.Sprint(d)
}

// end checks the index against the archive once the tar stream ended at
// tarBytes; complete is false when the archive could not be read to its end.
func (c *indexCheck) end(tarBytes int64, complete bool) {
	if !complete {
		return
	}
	c.skipInherited()
	if c.next < len(c.ix.Entries) {
		own := len(c.ix.Entries) - c.ix.Inherited
		c.problem("lists %d entries of this archive, the archive has %d", own, c.next-c.inherited)
	}
	if c.ix.End.TarBytes != tarBytes {
		c.problem("says the tar stream is %d bytes, it is %d", c.ix.End.TarBytes, tarBytes)
	}
	if c.frames != nil {
		if msg := c.frames.finish(); msg != "" {
			c.problem("%s", msg)
		}
	}
	if c.problems > maxIndexProblems {
		c.r.problem(c.name, "%d more mismatches with the archive", c.problems-maxIndexProblems)
	}
}

// broken reports the frames found damaged before the archive could not be
// read on: where the damage is.
func (c *indexCheck) broken() {
	if c.frames != nil && len(c.frames.bad) > 0 {
		c.r.problem(c.name, "frame %d (tar bytes %d-%d) does not hash as recorded: the damage is there",
			c.frames.bad[0], c.ix.Frames[c.frames.bad[0]].UOff, c.ix.Frames[c.frames.bad[0]].UOff+c.ix.Frames[c.frames.bad[0]].USize)
	}
}

// frameCheck receives an archive's compressed stream and checks each
// frame's SHA-256; after the frames a zstd stream holds the seek table.
type frameCheck struct {
	frames []codec.Frame
	zstd   bool
	i      int   // the frame being read
	in     int64 // bytes of it seen
	h      hash.Hash
	bad    []int
	tail   bytes.Buffer // what follows the frames
}

func (f *frameCheck) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if f.i >= len(f.frames) {
			if f.tail.Len() < 1<<24 {
				f.tail.Write(p)
			}
			return n, nil
		}
		fr := f.frames[f.i]
		k := min(int64(len(p)), fr.CSize-f.in)
		f.h.Write(p[:k])
		f.in += k
		p = p[k:]
		if f.in == fr.CSize {
			var sum [sha256.Size]byte
			if f.h.Sum(sum[:0]); sum != fr.SHA256 {
				f.bad = append(f.bad, f.i)
			}
			f.h.Reset()
			f.i++
			f.in = 0
		}
	}
	return n, nil
}

func (f *frameCheck) finish() string {
	switch {
	case len(f.bad) > 0:
		return fmt.Sprintf("%d of %d frames do not hash as recorded (first: frame %d)", len(f.bad), len(f.frames), f.bad[0])
	case f.i < len(f.frames):
		return fmt.Sprintf("records %d frames, the archive ends in frame %d", len(f.frames), f.i)
	case !f.zstd:
		if f.tail.Len() > 0 {
			return fmt.Sprintf("the archive has %d bytes after its recorded frames", f.tail.Len())
		}
		return ""
	}
	table, err := codec.ParseSeekTable(f.tail.Bytes())
	if err != nil || int64(f.tail.Len()) != codec.SeekTableSize(len(table)) {
		return fmt.Sprintf("the archive's seek table is missing or damaged (%v)", err)
	}
	if len(table) != len(f.frames) {
		return fmt.Sprintf("the archive's seek table lists %d frames, the index %d", len(table), len(f.frames))
	}
	for i, t := range table {
		if w := f.frames[i]; t.CSize != w.CSize || t.USize != w.USize {
			return fmt.Sprintf("the archive's seek table and the index differ at frame %d", i)
		}
	}
	return ""
}
