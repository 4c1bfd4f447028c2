package browse

import (
	"context"
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/index"
	"voltar/internal/manifest"
	"voltar/internal/store"
)

// Backup is a backup as one tree: a backup of one filesystem is that
// filesystem's tree; one of several has a directory per filesystem (p1,
// p2, ...), as `voltar restore --to DIR` lays them out.
type Backup struct {
	B   *catalog.Backup
	st  store.Store
	ids *crypt.Identities
	fss []manifest.Filesystem // every filesystem, files or not
	fs  map[string]*FS        // opened
}

// OpenBackup prepares b for browsing; filesystems are opened on first use.
func OpenBackup(st store.Store, b *catalog.Backup, ids *crypt.Identities) *Backup {
	var fss []manifest.Filesystem
	for _, f := range b.Manifest.Filesystems {
		if f.Archive != "" && f.Mode != manifest.ModeSkipped {
			fss = append(fss, f)
		}
	}
	return &Backup{B: b, st: st, ids: ids, fss: fss, fs: map[string]*FS{}}
}

// Close releases every opened filesystem.
func (bk *Backup) Close() {
	for _, f := range bk.fs {
		f.Close()
	}
}

// Single reports whether the backup's tree is one filesystem's.
func (bk *Backup) Single() bool { return len(bk.fss) == 1 }

// Filesystems lists the backup's stored filesystems.
func (bk *Backup) Filesystems() []manifest.Filesystem { return bk.fss }

// FS opens the filesystem named name.
func (bk *Backup) FS(ctx context.Context, name string) (*FS, error) {
	if f, ok := bk.fs[name]; ok {
		return f, nil
	}
	for _, m := range bk.fss {
		if m.Name == name {
			f, err := Open(ctx, bk.st, bk.B, m, bk.ids)
			if err != nil {
				return nil, err
			}
			bk.fs[name] = f
			return f, nil
		}
	}
	return nil, fmt.Errorf("backup %s has no filesystem %s (it has %s)", bk.B.ID, name, bk.names())
}

func (bk *Backup) names() string {
	var n []string
	for _, f := range bk.fss {
		n = append(n, f.Name)
	}
	return strings.Join(n, ", ")
}

// Split turns a path of the backup's tree into a filesystem name and an
// index path in it ("." for its root). For a backup of several
// filesystems the first component names the filesystem; fs is "" for the
// tree's root.
func (bk *Backup) Split(p string) (fs, rel string) {
	p = index.Clean(p)
	if bk.Single() {
		return bk.fss[0].Name, p
	}
	if p == "." {
		return "", "."
	}
	fs, rel, _ = strings.Cut(p, "/")
	if rel == "" {
		rel = "."
	}
	return fs, rel
}

// Join is the inverse of Split: the path of rel of filesystem fs in the
// backup's tree.
func (bk *Backup) Join(fs, rel string) string {
	if bk.Single() {
		return rel
	}
	if rel == "." {
		return fs
	}
	return fs + "/" + rel
}

// Lookup finds path p of the backup's tree. For the root of a backup of
// several filesystems it returns fs nil.
func (bk *Backup) Lookup(ctx context.Context, p string) (*FS, *index.Entry, error) {
	fsName, rel := bk.Split(p)
	if fsName == "" {
		return nil, nil, nil
	}
	f, err := bk.FS(ctx, fsName)
	if err != nil {
		return nil, nil, err
	}
	e, ok := f.Index.Lookup(rel)
	if !ok {
		return f, nil, fail.Hint(fmt.Errorf("%s: no such file or directory in %s", p, bk.B.ID),
			"voltar ls %s lists what the backup holds; voltar find %s 'NAME' searches it", bk.B.ID, bk.B.ID)
	}
	return f, e, nil
}

// LookupFile finds path p of the tree to read it, decoding only its own
// line of the index (and its target's, for a hard link; see OpenFor).
// The FS it returns serves only that; the caller closes it.
func (bk *Backup) LookupFile(ctx context.Context, p string) (*FS, *index.Entry, error) {
	fsName, rel := bk.Split(p)
	if fsName == "" || rel == "." {
		return nil, nil, fail.Usage(fmt.Errorf("%s is a directory: voltar ls %s %s lists it", p, bk.B.ID, p))
	}
	var m *manifest.Filesystem
	for i := range bk.fss {
		if bk.fss[i].Name == fsName {
			m = &bk.fss[i]
		}
	}
	if m == nil {
		return nil, nil, fmt.Errorf("backup %s has no filesystem %s (it has %s)", bk.B.ID, fsName, bk.names())
	}
	paths := []string{rel}
	for {
		f, err := OpenFor(ctx, bk.st, bk.B, *m, bk.ids, paths...)
		if err != nil {
			return nil, nil, err
		}
		e, ok := f.Index.Lookup(rel)
		if !ok {
			f.Close()
			return nil, nil, fail.Hint(fmt.Errorf("%s: no such file or directory in %s", p, bk.B.ID),
				"voltar ls %s lists what the backup holds; voltar find %s 'NAME' searches it", bk.B.ID, bk.B.ID)
		}
		if e.Type != index.Hardlink || len(paths) > 1 || f.Streamed {
			return f, e, nil
		}
		f.Close()
		paths = append(paths, e.Hardlink) // and its target
	}
}

// Pattern is a path pattern of the backup's tree: a doublestar glob.
// Without a "/" it matches an entry's name at any depth ("*.conf");
// with one, the path from the tree's root ("etc/ssh/*", "/home/**").
type Pattern struct {
	glob  string
	base  bool
	plain string // the pattern as a plain path, for a directory's subtree
}

// ParsePattern checks a pattern.
func ParsePattern(p string) (Pattern, error) {
	q := strings.TrimPrefix(p, "/")
	q = strings.TrimSuffix(q, "/")
	if q == "" {
		q = "**"
	}
	if !doublestar.ValidatePattern(q) {
		return Pattern{}, fail.Usage(fmt.Errorf("bad pattern %q", p))
	}
	return Pattern{glob: q, base: !strings.Contains(q, "/"), plain: index.Clean(q)}, nil
}

// Match reports whether path p of the tree (index.Clean'ed) matches.
func (pt Pattern) Match(p string) bool {
	if pt.base {
		base := p[strings.LastIndexByte(p, '/')+1:]
		if ok, _ := doublestar.Match(pt.glob, base); ok {
			return true
		}
	}
	ok, _ := doublestar.Match(pt.glob, p)
	return ok
}

// Select returns the entries of f (filesystem fs of bk) that the
// patterns select, in archive order: every entry that matches, everything
// below a directory that matches, and the directories above them (so
// they come back with their own metadata).
func (bk *Backup) Select(f *FS, pats []Pattern) []*index.Entry {
	ix := f.Index
	chosen := make([]bool, len(ix.Entries))
	under := map[string]bool{} // matched directories
	for i := range ix.Entries {
		e := &ix.Entries[i]
		p := bk.Join(f.FS.Name, e.Path)
		hit := false
		for _, pt := range pats {
			if pt.Match(p) {
				hit = true
				break
			}
		}
		if !hit {
			// Archive order puts a directory before its contents.
			for d := parentOf(e.Path); d != ""; d = parentOf(d) {
				if under[d] {
					hit = true
					break
				}
			}
		}
		if !hit {
			continue
		}
		chosen[i] = true
		if e.Type == index.Dir {
			under[e.Path] = true
		}
	}
	// The directories above each chosen entry.
	need := map[string]bool{}
	for i, c := range chosen {
		if c {
			for d := parentOf(ix.Entries[i].Path); d != ""; d = parentOf(d) {
				need[d] = true
			}
		}
	}
	var out []*index.Entry
	for i := range ix.Entries {
		e := &ix.Entries[i]
		if chosen[i] || (e.Type == index.Dir && need[e.Path]) {
			out = append(out, e)
		}
	}
	return out
}

// parentOf is the directory holding p ("." for a top-level entry), "" for
// the root.
func parentOf(p string) string {
	if p == "." {
		return ""
	}
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}
