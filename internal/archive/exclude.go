package archive

import (
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// excluder decides which entries Write leaves out.
type excluder struct {
	pats []pattern
}

type pattern struct {
	glob    string
	path    bool   // match the path relative to root, not the base name
	dirOnly bool   // pattern ended in "/"
	keep    string // for "dir/**": the glob of the directory itself, which stays
}

func newExcluder(globs []string) (*excluder, error) {
	e := &excluder{}
	for _, g := range globs {
		p := pattern{glob: g}
		if strings.HasSuffix(p.glob, "/") {
			p.glob, p.dirOnly = strings.TrimRight(p.glob, "/"), true
		}
		if strings.HasPrefix(p.glob, "/") {
			p.glob, p.path = strings.TrimLeft(p.glob, "/"), true
		}
		if strings.Contains(p.glob, "/") {
			p.path = true
		}
		if p.glob == "" || !doublestar.ValidatePattern(p.glob) {
			return nil, fmt.Errorf("exclude pattern %q: not a valid glob", g)
		}
		if k, ok := strings.CutSuffix(p.glob, "/**"); ok && k != "" && k != "**" {
			// doublestar lets "/**" match nothing; like gitignore, keep
			// the directory and leave out only what is inside.
			p.keep = k
		}
		e.pats = append(e.pats, p)
	}
	return e, nil
}

// match reports whether the entry at rel (relative to root, no "./")
// is excluded.
func (e *excluder) match(rel string, dir bool) bool {
	if rel == "lost+found" {
		return true
	}
	base := rel[strings.LastIndexByte(rel, '/')+1:]
	for _, p := range e.pats {
		if p.dirOnly && !dir {
			continue
		}
		name := base
		if p.path {
			name = rel
		}
		if doublestar.MatchUnvalidated(p.glob, name) &&
			(p.keep == "" || !doublestar.MatchUnvalidated(p.keep, name)) {
			return true
		}
	}
	return false
}
