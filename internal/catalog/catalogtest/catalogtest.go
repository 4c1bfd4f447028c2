// Package catalogtest writes backup folders for tests: archives, SHA256SUMS
// and manifest.json exactly as the backup pipeline lays them out.
package catalogtest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/codec"
	"voltar/internal/index"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/store"
)

// Archive is one stored archive of a backup.
type Archive struct {
	// FS describes it in the manifest. Name defaults to "p<N>" (or "fs"),
	// Mode to files, Archive to Name+".tar"+Ext(compression). Zero
	// StoredBytes, SHA256, Entries, Files and SourceBytes are filled in from
	// Data; set them to test a mismatch.
	FS   manifest.Filesystem
	Data []byte // the stored (compressed) bytes
	// Index stores a file index beside a files-mode archive, built from
	// Data as a backup would have written it (IndexOf).
	Index bool
}

// Folder is one backup folder.
type Folder struct {
	Host, Group, Volume string
	Time                time.Time
	Compression         string // default zstd
	Volume0             manifest.Volume
	Table               manifest.Table // default {Type: "none"}
	Archives            []Archive
	// Extra objects to store in the folder (name -> content), not listed in
	// SHA256SUMS.
	Extra map[string][]byte
	// NoManifest leaves the folder incomplete.
	NoManifest bool
}

// Prefix is the folder's store key prefix.
func (f *Folder) Prefix() string {
	return layout.Folder(f.Host, f.Group, f.Volume, f.Time)
}

// Write stores the folder's objects, SHA256SUMS and (last) manifest.json and
// returns the manifest written.
func Write(t testing.TB, st store.Store, f Folder) *manifest.Manifest {
	t.Helper()
	if f.Compression == "" {
		f.Compression = codec.Zstd
	}
	if f.Table.Type == "" {
		f.Table.Type = "none"
	}
	id := layout.ID(f.Group, f.Volume, f.Time)
	vol := f.Volume0
	if vol.Name == "" {
		vol = manifest.Volume{Kind: "image", Name: f.Volume, Group: f.Group, Size: 1 << 30}
	}
	m := &manifest.Manifest{
		Schema: manifest.Schema, Tool: "voltar", Version: "test", Host: f.Host, ID: id,
		Volume: vol, Snapshot: manifest.Snapshot{Kind: "none"}, Table: f.Table,
		Compression: f.Compression, Status: manifest.StatusComplete,
		Started: f.Time.UTC(), Finished: f.Time.UTC().Add(time.Minute),
	}
	var sums strings.Builder
	for i, a := range f.Archives {
		fs := a.FS
		if fs.Name == "" {
			fs.Name = layout.Partition(i + 1)
			if f.Table.Type == "none" {
				fs.Name = layout.WholeDisk
			}
		}
		if fs.Mode == "" {
			fs.Mode = manifest.ModeFiles
		}
		if fs.Archive == "" {
			fs.Archive = layout.Object{FS: fs.Name, Kind: layout.Tar, Compression: f.Compression}.Name()
		}
		sum := sha256.Sum256(a.Data)
		if fs.SHA256 == "" {
			fs.SHA256 = hex.EncodeToString(sum[:])
		}
		if fs.StoredBytes == 0 {
			fs.StoredBytes = int64(len(a.Data))
		}
		if fs.Entries == 0 && fs.Mode == manifest.ModeFiles {
			c, err := Count(a.Data, layout.Compression(fs.Archive))
			if err != nil {
				t.Fatalf("catalogtest: %s: %v", fs.Archive, err)
			}
			fs.Entries, fs.Files, fs.SourceBytes = c.Entries, c.Files, c.SourceBytes
		}
		put(t, st, f.Prefix()+fs.Archive, a.Data)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), fs.Archive)
		if a.Index && fs.Index == nil {
			c := layout.Compression(fs.Archive)
			ix := Compress(t, IndexOf(t, fs.Name, fs.Archive, a.Data, c), c)
			isum := sha256.Sum256(ix)
			fs.Index = &manifest.Object{Name: layout.Object{FS: fs.Name, Kind: layout.Index, Compression: c}.Name(),
				SHA256: hex.EncodeToString(isum[:]), StoredBytes: int64(len(ix))}
			put(t, st, f.Prefix()+fs.Index.Name, ix)
			fmt.Fprintf(&sums, "%s  %s\n", fs.Index.SHA256, fs.Index.Name)
		}
		m.Filesystems = append(m.Filesystems, fs)
	}
	names := make([]string, 0, len(f.Extra))
	for n := range f.Extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		put(t, st, f.Prefix()+n, f.Extra[n])
	}
	put(t, st, f.Prefix()+layout.Sums, []byte(sums.String()))
	if !f.NoManifest {
		PutManifest(t, st, f.Prefix(), m)
	}
	return m
}

// Resolve returns the catalog entry of a folder written by Write.
func Resolve(t testing.TB, st store.Store, f Folder) *catalog.Backup {
	t.Helper()
	b, err := catalog.Resolve(context.Background(), st, f.Host,
		fmt.Sprintf("%s/%s/%s", f.Group, f.Volume, f.Time.UTC().Format(layout.TimeFormat)))
	if err != nil {
		t.Fatalf("catalogtest: %v", err)
	}
	return b
}

// PutManifest (re)writes a folder's manifest.json and, before it, its
// manifest.json.sha256, as folder.Publish does.
func PutManifest(t testing.TB, st store.Store, prefix string, m *manifest.Manifest) {
	t.Helper()
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	put(t, st, prefix+layout.ManifestSum, manifest.ChecksumFile(buf.Bytes()))
	put(t, st, prefix+layout.Manifest, buf.Bytes())
}

func put(t testing.TB, st store.Store, key string, data []byte) {
	t.Helper()
	if _, err := st.Put(context.Background(), key, bytes.NewReader(data), store.PutOptions{}); err != nil {
		t.Fatalf("catalogtest: put %s: %v", key, err)
	}
}

// Counts is what the manifest records of a tar archive.
type Counts struct{ Entries, Files, SourceBytes int64 }

// Count reads a stored tar archive to its end.
func Count(data []byte, compression string) (Counts, error) {
	var c Counts
	zr, err := codec.NewReader(bytes.NewReader(data), compression)
	if err != nil {
		return c, err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return c, err
		}
		c.Entries++
		if h.Typeflag == tar.TypeReg {
			c.Files++
			c.SourceBytes += h.Size
		}
	}
}

// IndexOf builds the (uncompressed) file index of the stored archive
// data: its entries from the tar headers, its frames from the zstd seek
// table or, uncompressed, 8 MiB chunks (gzip has none).
func IndexOf(t testing.TB, fs, archive string, data []byte, compression string) []byte {
	t.Helper()
	zr, err := codec.NewReader(bytes.NewReader(data), compression)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	cr := &countReader{r: zr}
	tr := tar.NewReader(cr)
	var buf bytes.Buffer
	w := index.NewWriter(&buf, index.Header{FS: fs, Archive: archive})
	for {
		// (A header starts at the block after the previous entry's data.)
		io.Copy(io.Discard, tr)
		off := (cr.n + 511) &^ 511
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("catalogtest: index of %s: %v", archive, err)
		}
		e := index.FromHeader(h, off)
		if err := w.Add(&e); err != nil {
			t.Fatal(err)
		}
	}
	io.Copy(io.Discard, cr)
	var frames []codec.Frame
	switch compression {
	case codec.Zstd:
		if frames, err = codec.ParseSeekTable(data); err != nil {
			t.Fatalf("catalogtest: %s: %v", archive, err)
		}
	case codec.None:
		for off := int64(0); off < int64(len(data)); off += codec.FrameSize {
			n := min(codec.FrameSize, int64(len(data))-off)
			frames = append(frames, codec.Frame{COff: off, CSize: n, UOff: off, USize: n})
		}
	}
	for i := range frames {
		frames[i].SHA256 = sha256.Sum256(data[frames[i].COff : frames[i].COff+frames[i].CSize])
	}
	if err := w.Finish(frames, cr.n); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Compress compresses data with the named compression.
func Compress(t testing.TB, data []byte, compression string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := codec.NewWriter(&buf, compression, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Tar builds an uncompressed tar stream; an entry's Size is taken from its
// body when it is a regular file.
func Tar(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Header
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if h.Format == tar.FormatUnknown && h.Typeflag != tar.TypeXGlobalHeader {
			h.Format = tar.FormatPAX
		}
		if h.ModTime.IsZero() && h.Typeflag != tar.TypeXGlobalHeader {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("catalogtest: tar header %s: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Entry is one tar entry for Tar.
type Entry struct {
	Header tar.Header
	Body   string
}

// Dir, File, Symlink and Link are shorthands for Tar entries.
func Dir(name string, mode int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

// File is a regular file entry.
func File(name string, mode int64, body string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, Body: body}
}

// Symlink is a symbolic link entry.
func Symlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// Link is a hard link entry.
func Link(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}
