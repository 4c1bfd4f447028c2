package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"testing"

	"golang.org/x/sys/unix"

	"voltar/internal/archive"
	"voltar/internal/index"
	"voltar/internal/testutil"
)

// TestIndexMatchesSource archives the torture tree with a file index and
// compares every index entry with lstat/readlink/getxattr of the source,
// and every recorded offset with where the tar stream has the entry.
func TestIndexMatchesSource(t *testing.T) {
	testutil.RequireRoot(t)
	src := mountExt4(t, 4*gib)
	buildTorture(t, src)
	remountRO(t, src)
	// Sockets are not archived.
	want := scan(t, src, func(rel string) bool { return rel == "lost+found" || rel == "dev/sock" })

	var entries []index.Entry
	var tarStream bytes.Buffer
	res, err := archive.Write(context.Background(), src, &tarStream, archive.Options{
		Index: func(e *index.Entry) error { entries = append(entries, *e); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.TarBytes != int64(tarStream.Len()) {
		t.Errorf("TarBytes %d, stream %d", res.TarBytes, tarStream.Len())
	}
	if int64(len(entries)) != res.Entries {
		t.Fatalf("%d index entries, %d tar entries", len(entries), res.Entries)
	}
	data := tarStream.Bytes()
	seen := map[string]bool{}
	for _, e := range entries {
		rel := e.Path
		if rel == "." {
			rel = ""
		}
		fi, ok := want[rel]
		if !ok {
			t.Errorf("index has %q, the source does not", e.Path)
			continue
		}
		seen[rel] = true
		var st unix.Stat_t
		if err := unix.Lstat(src+"/"+rel, &st); err != nil {
			t.Fatal(err)
		}
		if e.Mode != fi.mode&0o7777 || uint32(e.UID) != fi.uid || uint32(e.GID) != fi.gid ||
			e.Mtime != fi.mtime.Nano() || e.Ctime != st.Ctim.Nano() || e.Ino != fi.ino {
			t.Errorf("%q: index %+v, source mode %#o uid %d gid %d mtime %d ctime %d ino %d",
				e.Path, e, fi.mode, fi.uid, fi.gid, fi.mtime.Nano(), st.Ctim.Nano(), fi.ino)
		}
		switch fi.mode & unix.S_IFMT {
		case unix.S_IFREG:
			if e.Type != index.File && e.Type != index.Hardlink || e.Type == index.File && e.Size != fi.size {
				t.Errorf("%q: type %s size %d, want a file of %d", e.Path, e.Type, e.Size, fi.size)
			}
			if e.Type == index.File && e.Sparse != (fi.blocks*512 < fi.size && fi.size > 0) && fi.size > 1<<20 {
				t.Errorf("%q: sparse %v with %d blocks for %d bytes", e.Path, e.Sparse, fi.blocks, fi.size)
			}
		case unix.S_IFLNK:
			if e.Type != index.Symlink || e.Link != fi.target {
				t.Errorf("%q: %s -> %q, want symlink -> %q", e.Path, e.Type, e.Link, fi.target)
			}
		case unix.S_IFDIR:
			if e.Type != index.Dir {
				t.Errorf("%q: %s, want dir", e.Path, e.Type)
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			if e.Major != int64(unix.Major(fi.rdev)) || e.Minor != int64(unix.Minor(fi.rdev)) {
				t.Errorf("%q: device %d,%d want %d,%d", e.Path, e.Major, e.Minor, unix.Major(fi.rdev), unix.Minor(fi.rdev))
			}
		}
		if (e.Xattrs != "") != (len(fi.xattrs) > 0) && fi.mode&unix.S_IFMT != unix.S_IFDIR {
			t.Errorf("%q: xattr digest %q, source has %d xattrs", e.Path, e.Xattrs, len(fi.xattrs))
		}
		// The entry's header is at its offset.
		tr := tar.NewReader(bytes.NewReader(data[e.Offset:]))
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%q: no tar entry at offset %d: %v", e.Path, e.Offset, err)
		}
		if index.FromTar(h.Name) != e.Path {
			t.Errorf("%q: the entry at offset %d is %q", e.Path, e.Offset, h.Name)
		}
		if e.Type == index.File && fi.sum != "" {
			got := sha(t, tr)
			if got != fi.sum {
				t.Errorf("%q: data read from its offset differs from the source", e.Path)
			}
		}
	}
	for rel := range want {
		if !seen[rel] {
			t.Errorf("source has %q, the index does not", rel)
		}
	}
	// Hard links name an earlier entry of the same inode.
	byPath := map[string]index.Entry{}
	for _, e := range entries {
		if e.Type == index.Hardlink {
			tgt, ok := byPath[e.Hardlink]
			if !ok || tgt.Ino != e.Ino {
				t.Errorf("%q: hard link to %q, not an earlier entry of inode %d", e.Path, e.Hardlink, e.Ino)
			}
		}
		byPath[e.Path] = e
	}
}

func sha(t *testing.T, r io.Reader) string {
	t.Helper()
	h := newHash()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hexSum(h)
}

func newHash() hash.Hash        { return sha256.New() }
func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }
