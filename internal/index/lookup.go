package index

import (
	"path"
	"slices"
	"sort"
	"strings"

	"voltar/internal/codec"
)

// Index is a decoded file index.
type Index struct {
	Header  Header
	Entries []Entry // archive order
	Frames  []codec.Frame
	End     End
	// Inherited counts the entries held by an earlier backup of the chain
	// (From set); the others are in this index's archive.
	Inherited int

	byPath   map[string]int
	children map[string][]int
	skipped  int // entries ReadSome left out
}

// build makes the map by path (Lookup); children the lists by directory
// (Children), which an increment's walk does not need.
func (ix *Index) build() {
	if ix.byPath != nil {
		return
	}
	ix.byPath = make(map[string]int, len(ix.Entries))
	for i := range ix.Entries {
		p := ix.Entries[i].Path
		if _, dup := ix.byPath[p]; !dup {
			ix.byPath[p] = i
		}
	}
}

func (ix *Index) buildChildren() {
	if ix.children != nil {
		return
	}
	ix.children = make(map[string][]int)
	for i := range ix.Entries {
		if p := ix.Entries[i].Path; p != "." {
			d := path.Dir(p)
			ix.children[d] = append(ix.children[d], i)
		}
	}
	for _, c := range ix.children {
		sort.SliceStable(c, func(a, b int) bool { return ix.Entries[c[a]].Path < ix.Entries[c[b]].Path })
	}
}

// Clean turns a user's path ("/etc/passwd", "etc/", "") into an index
// path ("etc/passwd", "etc", ".").
func Clean(p string) string {
	p = path.Clean("/" + p)
	if p == "/" {
		return "."
	}
	return strings.TrimPrefix(p, "/")
}

// Lookup finds the entry named p (an index path, see Clean).
func (ix *Index) Lookup(p string) (*Entry, bool) {
	ix.build()
	i, ok := ix.byPath[p]
	if !ok {
		return nil, false
	}
	return &ix.Entries[i], true
}

// Children lists the entries directly inside directory p, by name.
func (ix *Index) Children(p string) []*Entry {
	ix.buildChildren()
	c := ix.children[p]
	out := make([]*Entry, len(c))
	for i, k := range c {
		out[i] = &ix.Entries[k]
	}
	return out
}

// Target resolves a hard link to the entry holding its data, an earlier
// entry of the same archive; any other entry is its own target.
func (ix *Index) Target(e *Entry) *Entry {
	if e.Type != Hardlink {
		return e
	}
	if t, ok := ix.Lookup(e.Hardlink); ok && t.From == e.From && t.Offset < e.Offset && t.Type != Hardlink {
		return t
	}
	return e
}

// FrameAt returns the index of the frame holding tar offset off, or -1.
func (ix *Index) FrameAt(off int64) int {
	i, _ := slices.BinarySearchFunc(ix.Frames, off, func(f codec.Frame, off int64) int {
		switch {
		case f.UOff+f.USize <= off:
			return -1
		case f.UOff > off:
			return 1
		}
		return 0
	})
	if i >= len(ix.Frames) || ix.Frames[i].UOff > off || ix.Frames[i].UOff+ix.Frames[i].USize <= off {
		return -1
	}
	return i
}
