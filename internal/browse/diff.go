package browse

import (
	"sort"

	"voltar/internal/index"
)

// Change is one difference between two indexes of a filesystem.
type Change struct {
	Path string `json:"path"`
	// Kind is "added", "removed" or "changed".
	Kind string `json:"kind"`
	// What changed: "type", "content" (size or link target), "mode",
	// "owner", "xattrs", "mtime". A file rewritten with the same size
	// shows as "mtime" (the index holds no content hashes).
	What []string     `json:"what,omitempty"`
	Old  *index.Entry `json:"-"`
	New  *index.Entry `json:"-"`
}

// Diff compares two indexes of a filesystem by path, sorted by path.
func Diff(a, b *index.Index) []Change {
	old := map[string]*index.Entry{}
	for i := range a.Entries {
		old[a.Entries[i].Path] = &a.Entries[i]
	}
	var out []Change
	seen := map[string]bool{}
	for i := range b.Entries {
		n := &b.Entries[i]
		seen[n.Path] = true
		o, ok := old[n.Path]
		if !ok {
			out = append(out, Change{Path: n.Path, Kind: "added", New: n})
			continue
		}
		if what := changed(a.Target(o), b.Target(n), o, n); len(what) > 0 {
			out = append(out, Change{Path: n.Path, Kind: "changed", What: what, Old: o, New: n})
		}
	}
	for i := range a.Entries {
		o := &a.Entries[i]
		if !seen[o.Path] {
			out = append(out, Change{Path: o.Path, Kind: "removed", Old: o})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// changed names what differs between two entries of one path; ot and nt
// are the entries holding their data (hard links resolved).
func changed(ot, nt, o, n *index.Entry) []string {
	var w []string
	if ot.Type != nt.Type {
		return []string{"type"}
	}
	if ot.Size != nt.Size || ot.Link != nt.Link || ot.Major != nt.Major || ot.Minor != nt.Minor {
		w = append(w, "content")
	}
	if ot.Mode != nt.Mode {
		w = append(w, "mode")
	}
	if ot.UID != nt.UID || ot.GID != nt.GID {
		w = append(w, "owner")
	}
	if ot.Xattrs != nt.Xattrs {
		w = append(w, "xattrs")
	}
	if ot.Mtime != nt.Mtime && ot.Type != index.Dir {
		w = append(w, "mtime")
	}
	if (o.Type == index.Hardlink) != (n.Type == index.Hardlink) || o.Hardlink != n.Hardlink {
		w = append(w, "links")
	}
	if len(w) == 0 && ot.Ctime != nt.Ctime && ot.Ctime != 0 && nt.Ctime != 0 && ot.Type != index.Dir {
		// Nothing the index records differs, but the inode changed: data
		// written in place with the size and mtime put back, say.
		w = append(w, "ctime")
	}
	return w
}
