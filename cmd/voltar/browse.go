package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"voltar/internal/browse"
	"voltar/internal/catalog"
	"voltar/internal/dump"
	"voltar/internal/fail"
	"voltar/internal/index"
	"voltar/internal/store"
)

// browseStore opens the store for a browse command, counting what is
// read from it: the command logs the count at its end (--log-level debug).
func (a *app) browseStore(ctx context.Context) (store.Store, string, func(), error) {
	st, host, err := a.storeAndHost(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	c := store.NewCounter(st)
	return c, host, func() {
		a.log.Debug("read from the store", "requests", c.Reads(), "bytes", c.Bytes())
	}, nil
}

// openBrowse resolves a backup ID and opens it for browsing. The caller
// calls close when done with it.
func (a *app) openBrowse(ctx context.Context, id string) (_ *browse.Backup, close func(), err error) {
	st, host, done, err := a.browseStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			done()
		}
	}()
	b, err := a.resolveSigned(ctx, st, host, id)
	if err != nil {
		return nil, nil, err
	}
	if dump.IsDump(b.Manifest) {
		return nil, nil, fail.Usage(fmt.Errorf("%s is a database dump, not a filesystem backup: voltar restore %s --to DIR writes its SQL", b.ID, b.ID))
	}
	ids, err := a.identitiesFor(b)
	if err != nil {
		return nil, nil, err
	}
	bk := browse.OpenBackup(st, b, ids)
	return bk, func() { bk.Close(); done() }, nil
}

// streamedNote tells, once per filesystem, that there is no fast path.
func (a *app) streamedNote(f *browse.FS) {
	if f != nil && f.Streamed {
		a.log.Warn("reading the whole archive: "+f.Why, "archive", f.FS.Archive)
	}
}

// jsonEntry is an entry as ls, find and diff print it with --json.
type jsonEntry struct {
	Backup string `json:"backup,omitempty"`
	// Path is the entry's path; a path that is not UTF-8 is in PathB64
	// instead, base64-encoded (JSON strings hold only UTF-8).
	Path    string     `json:"path,omitempty"`
	PathB64 string     `json:"path_b64,omitempty"`
	Type    index.Type `json:"type"`
	Size    int64      `json:"size"`
	Mode    string     `json:"mode"`
	UID     int        `json:"uid"`
	GID     int        `json:"gid"`
	Uname   string     `json:"uname,omitempty"`
	Gname   string     `json:"gname,omitempty"`
	Mtime   time.Time  `json:"mtime"`
	Link    string     `json:"link,omitempty"`
	Hard    string     `json:"hardlink,omitempty"`
}

func toJSON(id, p string, e *index.Entry) jsonEntry {
	j := jsonEntry{Backup: id, Path: p, Type: e.Type, Size: e.Size, Mode: modeString(e), UID: e.UID, GID: e.GID,
		Uname: e.Uname, Gname: e.Gname, Mtime: time.Unix(0, e.Mtime).UTC(), Link: e.Link, Hard: e.Hardlink}
	if !utf8.ValidString(p) {
		j.Path, j.PathB64 = "", base64.StdEncoding.EncodeToString([]byte(p))
	}
	return j
}

// shown is what ls and find show of an entry: a hard link with its
// target's type, size and attributes, as ls shows every name of a file.
func shown(ix *index.Index, e *index.Entry) *index.Entry {
	t := ix.Target(e)
	if t == e {
		return e
	}
	d := *t
	d.Path, d.Hardlink = e.Path, t.Path
	return &d
}

// modeString is ls -l's mode column.
func modeString(e *index.Entry) string {
	m := fs.FileMode(e.Mode & 0o777)
	switch e.Type {
	case index.Dir:
		m |= fs.ModeDir
	case index.Symlink:
		m |= fs.ModeSymlink
	case index.Char:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case index.Block:
		m |= fs.ModeDevice
	case index.Fifo:
		m |= fs.ModeNamedPipe
	}
	if e.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	s := []byte(m.String())
	// Go writes type letters where ls writes "-" and "l", "c", "b", "p".
	switch e.Type {
	case index.Symlink:
		s = append([]byte("l"), s[1:]...)
	case index.Char:
		s = append([]byte("c"), s[2:]...)
	case index.Block:
		s = append([]byte("b"), s[1:]...)
	case index.Fifo:
		s = append([]byte("p"), s[1:]...)
	}
	return string(s)
}

// quoteName shows a name on a terminal line: control characters and
// invalid UTF-8 escaped, as ls -b does.
func quoteName(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == 0xfffd }) < 0 {
		return s
	}
	q := fmt.Sprintf("%q", s)
	return q[1 : len(q)-1]
}

func (a *app) lsCmd() *cobra.Command {
	var long, asJSON, recursive bool
	cmd := &cobra.Command{
		Use:   "ls BACKUP [PATH] [--long] [--json] [-R]",
		Short: "List a directory of a backup from its file index",
		Long: `List PATH (default: the root) of BACKUP like ls, from the backup's file index:
nothing of the archives is read. A backup of several filesystems shows them as
p1, p2, ... at its root. -R lists everything under PATH.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := "."
			if len(args) == 2 {
				p = args[1]
			}
			return a.runLs(cmd.Context(), args[0], p, long, asJSON, recursive)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&long, "long", "l", false, "long format: mode, owner, size, mtime, link target")
	f.BoolVar(&asJSON, "json", false, "print the entries as JSON")
	f.BoolVarP(&recursive, "recursive", "R", false, "list everything under PATH")
	return cmd
}

func (a *app) runLs(ctx context.Context, id, p string, long, asJSON, recursive bool) error {
	bk, closeBk, err := a.openBrowse(ctx, id)
	if err != nil {
		return err
	}
	defer closeBk()
	type row struct {
		path string
		e    *index.Entry
	}
	var rows []row
	f, e, err := bk.Lookup(ctx, p)
	if err != nil {
		return err
	}
	a.streamedNote(f)
	var walk func(f *browse.FS, dir string)
	walk = func(f *browse.FS, dir string) {
		for _, c := range f.Index.Children(dir) {
			rows = append(rows, row{bk.Join(f.FS.Name, c.Path), shown(f.Index, c)})
			if recursive && c.Type == index.Dir {
				walk(f, c.Path)
			}
		}
	}
	switch {
	case f == nil: // the root of several filesystems
		for _, m := range bk.Filesystems() {
			if m.Mode != "files" {
				rows = append(rows, row{m.Name, &index.Entry{Path: m.Name, Type: index.File, Size: m.SourceBytes, Mode: 0o600}})
				continue
			}
			mf, err := bk.FS(ctx, m.Name)
			if err != nil {
				return err
			}
			a.streamedNote(mf)
			root, _ := mf.Index.Lookup(".")
			if root == nil {
				root = &index.Entry{Path: ".", Type: index.Dir, Mode: 0o755}
			}
			rows = append(rows, row{m.Name, root})
			if recursive {
				walk(mf, ".")
			}
		}
	case e.Type == index.Dir:
		walk(f, e.Path)
	default:
		rows = append(rows, row{bk.Join(f.FS.Name, e.Path), shown(f.Index, e)})
	}
	if asJSON {
		out := make([]jsonEntry, 0, len(rows))
		for _, r := range rows {
			out = append(out, toJSON("", r.path, r.e))
		}
		return a.printJSON(out)
	}
	w := bufio.NewWriterSize(a.stdout, 64<<10)
	for _, r := range rows {
		name := r.path
		if !recursive {
			name = name[strings.LastIndexByte(name, '/')+1:]
		}
		if !long {
			fmt.Fprintln(w, quoteName(name))
			continue
		}
		fmt.Fprintln(w, longLine(r.e, quoteName(name)))
	}
	return w.Flush()
}

// longLine is an ls -l line.
func longLine(e *index.Entry, name string) string {
	owner, group := e.Uname, e.Gname
	if owner == "" {
		owner = fmt.Sprint(e.UID)
	}
	if group == "" {
		group = fmt.Sprint(e.GID)
	}
	size := fmt.Sprint(e.Size)
	switch e.Type {
	case index.Symlink:
		size = fmt.Sprint(len(e.Link)) // as ls shows it
	case index.Char, index.Block:
		size = fmt.Sprintf("%d, %d", e.Major, e.Minor)
	}
	nlink := max(e.Nlink, 1)
	s := fmt.Sprintf("%s %3d %-8s %-8s %10s %s %s", modeString(e), nlink, owner, group, size,
		time.Unix(0, e.Mtime).UTC().Format("2006-01-02 15:04"), name)
	if e.Type == index.Symlink {
		s += " -> " + quoteName(e.Link)
	}
	return s
}

func (a *app) findCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "find BACKUP|VOLUME GLOB [--json]",
		Short: "Search one backup, or every backup of a volume, for paths matching a glob",
		Long: `Print the backup ID, path, size and mtime of every entry matching GLOB, from
the file indexes. A GLOB without "/" matches names at any depth ('*.conf');
one with "/" matches the path from the backup's root ('etc/ssh/*', 'home/**/id_*').
VOLUME (vg/volume) searches every backup of the volume, oldest first.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runFind(cmd.Context(), args[0], args[1], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the matches as JSON")
	return cmd
}

func (a *app) runFind(ctx context.Context, target, glob string, asJSON bool) error {
	pt, err := browse.ParsePattern(glob)
	if err != nil {
		return err
	}
	st, host, done, err := a.browseStore(ctx)
	if err != nil {
		return err
	}
	defer done()
	var backups []*catalog.Backup
	if strings.Count(strings.Trim(target, "/"), "/") >= 2 {
		b, err := catalog.Resolve(ctx, st, host, target)
		if err != nil {
			return err
		}
		backups = append(backups, b)
	} else {
		c, err := catalog.List(ctx, st, host, target)
		if err != nil {
			return fail.Usage(err)
		}
		for i := range c.Backups {
			if !dump.IsDump(c.Backups[i].Manifest) {
				backups = append(backups, &c.Backups[i])
			}
		}
		if len(backups) == 0 {
			return fail.Hint(fmt.Errorf("no backups of %s in %s", target, st), "voltar list shows the volumes that have backups")
		}
	}
	out := []jsonEntry{}
	w := bufio.NewWriterSize(a.stdout, 64<<10)
	defer w.Flush()
	for _, b := range backups {
		if err := a.checkSignature(ctx, st, b); err != nil {
			return err
		}
		ids, err := a.identitiesFor(b)
		if err != nil {
			return err
		}
		bk := browse.OpenBackup(st, b, ids)
		for _, m := range bk.Filesystems() {
			if m.Mode != "files" {
				continue
			}
			f, err := bk.FS(ctx, m.Name)
			if err != nil {
				bk.Close()
				return err
			}
			a.streamedNote(f)
			for i := range f.Index.Entries {
				e := &f.Index.Entries[i]
				p := bk.Join(m.Name, e.Path)
				if !pt.Match(p) {
					continue
				}
				e = shown(f.Index, e)
				if asJSON {
					out = append(out, toJSON(b.ID, p, e))
					continue
				}
				fmt.Fprintf(w, "%s  %s  %d  %s\n", b.ID, quoteName(p), e.Size, time.Unix(0, e.Mtime).UTC().Format(time.RFC3339))
			}
		}
		bk.Close()
	}
	if asJSON {
		return a.printJSON(out)
	}
	return w.Flush()
}

func (a *app) catCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cat BACKUP PATH",
		Short: "Write one file of a backup to stdout, verified",
		Long: `Write the content of PATH in BACKUP to stdout. Only the archive frames that
hold the file are read from the store, and each is checked against the SHA-256
the file index records before a byte of it is written. From a backup without a
file index, or a gzip one, the whole archive is read and checked first.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runCat(cmd.Context(), args[0], args[1])
		},
	}
}

func (a *app) runCat(ctx context.Context, id, p string) error {
	bk, closeBk, err := a.openBrowse(ctx, id)
	if err != nil {
		return err
	}
	defer closeBk()
	f, e, err := bk.LookupFile(ctx, p)
	if err != nil {
		return err
	}
	defer f.Close()
	if e.Type == index.Dir {
		return fail.Usage(fmt.Errorf("%s is a directory: voltar ls %s %s lists it", p, id, p))
	}
	a.streamedNote(f)
	w := bufio.NewWriterSize(a.stdout, 1<<20)
	_, err = f.Copy(ctx, e, w)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		if errors.Is(err, browse.ErrDamaged) {
			return fmt.Errorf("cat %s: %w", p, err)
		}
		var pe *os.PathError
		if errors.As(err, &pe) || errors.Is(err, io.ErrClosedPipe) {
			return err
		}
		return fmt.Errorf("cat %s: %w", p, err)
	}
	return nil
}
