// Package verify proves a backup can be read back: every stored object is
// re-hashed against SHA256SUMS and the manifest while it is decrypted,
// decompressed and read as tar to its end, and the counts are compared with
// the manifest. An encrypted object without an identity to decrypt it is
// only re-hashed, and the result says so.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/index"
	"voltar/internal/layout"
	"voltar/internal/objio"
	"voltar/internal/signing"
	"voltar/internal/store"
)

// Problem is one thing wrong with a backup, naming the object.
type Problem struct {
	Object  string `json:"object"` // "p1.tar.zst", "SHA256SUMS", "manifest.json"
	Message string `json:"message"`
	// Hint says what to do, when that is not "make a new backup".
	Hint string `json:"hint,omitempty"`
}

func (p Problem) String() string { return p.Object + ": " + p.Message }

// Object is what was read of one stored object.
type Object struct {
	Name        string `json:"name"`
	StoredBytes int64  `json:"stored_bytes"`
	SHA256      string `json:"sha256"`
	// Counted from the tar stream (zero for raw archives and other objects).
	Entries     int64 `json:"entries"`
	Files       int64 `json:"files"`
	SourceBytes int64 `json:"source_bytes"`
	// Complete is true when the object was read to its end without error.
	Complete bool `json:"complete"`
	// Encrypted: the object is age-encrypted (its name ends in .age).
	Encrypted bool `json:"encrypted,omitempty"`
	// ContentChecked is true when the object was decrypted, decompressed
	// and (tar) read to its end; false when only its size and SHA-256 were
	// checked: an encrypted object and no identity configured.
	ContentChecked bool `json:"content_checked"`
}

// Result is the outcome of verifying one backup. OK is true when there are
// no problems.
type Result struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"`
	OK       bool      `json:"ok"`
	Objects  []Object  `json:"objects"`
	Problems []Problem `json:"problems"`
	// Notes are limits of the verification that are not problems: an
	// encrypted object whose content was not checked (NotChecked).
	Notes    []string      `json:"notes,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	// Chain lists the backups an incremental backup builds on, its parent
	// first: it is only as intact as they are (see Chains).
	Chain []string `json:"chain,omitempty"`
}

// ContentNotChecked reports whether some object's content was not read.
func (r *Result) ContentNotChecked() bool { return len(r.Notes) > 0 }

func (r *Result) problem(object, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{Object: object, Message: fmt.Sprintf(format, args...)})
}

// Backup verifies one backup; ids decrypt its encrypted archives (nil: no
// identity configured, so those are only re-hashed and a note says so).
// Store failures and a canceled ctx are reported as problems too; the
// caller checks ctx.Err() to tell an interruption.
func Backup(ctx context.Context, st store.Store, b *catalog.Backup, ids *crypt.Identities) Result {
	start := time.Now()
	r := Result{ID: b.ID, Host: b.Host, Objects: []Object{}, Problems: []Problem{}}
	m := b.Manifest
	if m.ID != "" && m.ID != b.ID {
		r.problem(layout.Manifest, "records id %s, but is stored under %s", m.ID, b.ID)
	}
	if m.Host != "" && m.Host != b.Host {
		r.problem(layout.Manifest, "records host %s, but is stored under %s", m.Host, b.Host)
	}
	if m.Chain != nil {
		parents, err := catalog.Chain(ctx, st, b)
		if err != nil {
			r.Problems = append(r.Problems, Problem{Object: "chain", Message: err.Error(), Hint: strings.Join(fail.Hints(err), "; ")})
		}
		for _, p := range parents {
			r.Chain = append(r.Chain, p.ID)
		}
	}
	sums, err := catalog.ReadSums(ctx, st, b)
	if err != nil {
		r.problem(layout.Sums, "%v", err)
		sums = nil
	}
	// manifest.json.sha256 was checked when the catalog read the manifest.
	named := map[string]bool{layout.Manifest: true, layout.Sums: true, layout.ManifestSum: true, layout.ManifestSig: true}
	for _, fs := range Archives(m) {
		named[fs.Archive] = true
		if msg := Disagree(fs, sums); msg != "" {
			r.problem(fs.Archive, "%s", msg)
		}
		obj, ok := b.Object(fs.Archive)
		if !ok {
			r.problem(fs.Archive, "missing: named by %s but not stored", layout.Manifest)
			continue
		}
		if obj.Size != fs.StoredBytes {
			r.problem(fs.Archive, "stored size is %d bytes, %s says %d", obj.Size, layout.Manifest, fs.StoredBytes)
		}
		// The index is read first, to check the archive against it as
		// the archive is read; it is listed after it.
		var ix *index.Index
		var ixObj *Object
		var ixNote string
		if fs.Index != nil {
			named[fs.Index.Name] = true
			var o Object
			ix, o, ixNote = readIndex(ctx, st, b, fs, sums, ids, &r)
			ixObj = &o
		}
		var got Object
		if layout.Encrypted(fs.Archive) && ids == nil {
			got = hashObject(ctx, st, b, fs.Archive, &r)
			r.Notes = append(r.Notes, fs.Archive+": "+NotChecked)
		} else {
			var ic *indexCheck
			if ix != nil {
				ic = newIndexCheck(ix, fs.Index.Name, fs.Archive, &r)
			}
			got = readArchive(ctx, st, b, fs.Archive, ids, &r, ic)
		}
		r.Objects = append(r.Objects, got)
		if ixObj != nil {
			r.Objects = append(r.Objects, *ixObj)
		}
		if ixNote != "" {
			r.Notes = append(r.Notes, ixNote)
		}
		if got.SHA256 == "" {
			continue // could not be opened; reported
		}
		if msg := Mismatch(got.SHA256, fs, sums); msg != "" {
			r.problem(fs.Archive, "%s", msg)
		}
		if got.StoredBytes != obj.Size {
			r.problem(fs.Archive, "read %d bytes, the store lists %d", got.StoredBytes, obj.Size)
		}
		if layout.IsTar(fs.Archive) && got.Complete {
			compare(&r, fs.Archive, "entries", got.Entries, fs.Entries)
			compare(&r, fs.Archive, "files", got.Files, fs.Files)
		}
		if got.Complete && got.ContentChecked {
			compare(&r, fs.Archive, "source bytes", got.SourceBytes, fs.SourceBytes)
		}
	}
	// Objects SHA256SUMS lists beyond the manifest's archives (a dump, say)
	// are re-hashed too.
	for _, name := range sortedKeys(sums) {
		if named[name] {
			continue
		}
		named[name] = true
		if _, ok := b.Object(name); !ok {
			r.problem(name, "missing: listed in %s but not stored", layout.Sums)
			continue
		}
		got := hashObject(ctx, st, b, name, &r)
		r.Objects = append(r.Objects, got)
		if got.SHA256 != "" && got.SHA256 != sums[name] {
			r.problem(name, "sha256 is %s, %s says %s", got.SHA256, layout.Sums, sums[name])
		}
	}
	for _, o := range b.Objects {
		if !named[o.Name] {
			r.problem(o.Name, "stray object: not named by %s or %s", layout.Manifest, layout.Sums)
		}
	}
	r.OK = len(r.Problems) == 0
	r.Duration = time.Since(start)
	return r
}

// Chains fails every incremental backup among results whose chain holds
// a backup that failed verification: it cannot be restored either.
func Chains(results []Result) {
	byID := map[string]*Result{}
	for i := range results {
		byID[results[i].Host+"/"+results[i].ID] = &results[i]
	}
	for i := range results {
		r := &results[i]
		for _, id := range r.Chain {
			if p, ok := byID[r.Host+"/"+id]; ok && !p.OK {
				r.Problems = append(r.Problems, Problem{Object: "chain",
					Message: "builds on " + id + ", which failed verification: this backup cannot be restored either",
					Hint:    "restore an older backup whose chain verifies, and make a new full with voltar backup --full"})
				r.OK = false
			}
		}
	}
}

// Signature checks the signature of b's manifest with v (its
// manifest.json.sig, see package signing) and adds a problem to r when it
// is missing or bad.
func Signature(ctx context.Context, st store.Store, b *catalog.Backup, v *signing.Verifier, r *Result) {
	err := v.Check(ctx, st, b)
	if err == nil {
		return
	}
	p := Problem{Object: layout.ManifestSig, Message: err.Error(), Hint: v.Hint()}
	var se *signing.Error
	if errors.As(err, &se) {
		p.Message = se.Reason
	}
	r.Problems = append(r.Problems, p)
	r.OK = false
}

// DamagedHint says what to do about a damaged manifest.json.
const DamagedHint = "the folder's manifest.json is damaged: do not restore from it; restore an older backup by its ID (voltar list), " +
	"inspect the folder and remove it by hand when it is not needed (voltar prune keeps it)"

// Damaged is the failed result of a backup folder whose manifest.json is
// there but unusable (catalog.Incomplete.Damaged): nothing else of it can
// be checked.
func Damaged(host, id, reason string) Result {
	return Result{ID: id, Host: host, Objects: []Object{},
		Problems: []Problem{{Object: layout.Manifest, Message: reason, Hint: DamagedHint}}}
}

// readArchive streams one archive through the decompressor and, for tar,
// reads every entry's data; failures become problems and leave SHA256 empty
// when the object could not be read to its end.
func readArchive(ctx context.Context, st store.Store, b *catalog.Backup, name string, ids *crypt.Identities, r *Result, ic *indexCheck) Object {
	o := Object{Name: name, Encrypted: layout.Encrypted(name)}
	var tap io.Writer
	if ic != nil && ic.frames != nil {
		tap = ic.frames
	}
	s, err := objio.OpenTapped(ctx, st, b.Key(name), ids, tap)
	if errors.Is(err, crypt.ErrWrongIdentity) {
		r.Problems = append(r.Problems, Problem{Object: name, Message: err.Error(), Hint: KeyHint(b)})
		// The stored bytes can still be checked.
		return hashObject(ctx, st, b, name, r)
	}
	if err != nil {
		r.problem(name, "%v", err)
		return o
	}
	defer s.Close()
	if s.Tar == nil {
		// Raw partition bytes: their decompressed length is the
		// partition's size, the manifest's source bytes.
		n, err := io.Copy(io.Discard, s.Data)
		o.SourceBytes = n
		if err != nil {
			r.problem(name, "%v", err)
			if d, _ := s.Finish(); d.Complete {
				o.SHA256, o.StoredBytes = d.SHA256, d.Bytes
			}
			return o
		}
	}
	if s.Tar != nil {
		if err := readTar(s, &o, ic); err != nil {
			r.problem(name, "%v", err)
			if d, _ := s.Finish(); d.Complete {
				o.SHA256, o.StoredBytes = d.SHA256, d.Bytes
			}
			if ic != nil {
				ic.broken() // which frame, if the index can tell
			}
			return o
		}
	}
	d, err := s.Finish()
	if d.Complete {
		o.SHA256, o.StoredBytes = d.SHA256, d.Bytes
	}
	if err != nil {
		r.problem(name, "%v", err)
	}
	if ic != nil {
		ic.end(s.Pos(), err == nil) // every decompressed byte: the tar stream's length
	}
	o.Complete = err == nil
	o.ContentChecked = o.Complete
	return o
}

// readTar reads every entry of s and its data, counting into o and
// checking each against the file index (ic, when there is one).
func readTar(s *objio.Stream, o *Object, ic *indexCheck) error {
	for {
		h, off, err := s.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar stream broken after %d entries: %w", o.Entries, err)
		}
		o.Entries++
		if ic != nil {
			ic.entry(h, off)
		}
		n, err := io.Copy(io.Discard, s.Tar)
		if err == nil && IsRegular(h) && n != h.Size {
			err = errTruncated
		}
		if err != nil {
			return fmt.Errorf("entry %d %q: %w", o.Entries, h.Name, err)
		}
		if IsRegular(h) {
			o.Files++
			o.SourceBytes += h.Size
		}
	}
}

// hashObject reads an object only to hash it.
func hashObject(ctx context.Context, st store.Store, b *catalog.Backup, name string, r *Result) Object {
	o := Object{Name: name, Encrypted: layout.Encrypted(name)}
	s, err := objio.OpenStored(ctx, st, b.Key(name))
	if err != nil {
		r.problem(name, "%v", err)
		return o
	}
	defer s.Close()
	d, err := s.Finish()
	if err != nil {
		r.problem(name, "%v", err)
		return o
	}
	o.SHA256, o.StoredBytes = d.SHA256, d.Bytes
	return o
}

func sortedKeys(m catalog.Sums) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func compare(r *Result, name, what string, got, want int64) {
	if got != want {
		r.problem(name, "%s %d, %s says %d", what, got, layout.Manifest, want)
	}
}

// Sample picks pct percent (0 < pct <= 100) of backups at random, at least
// one when there are any, keeping their order.
func Sample(backups []catalog.Backup, pct float64, rnd *rand.Rand) []catalog.Backup {
	if pct >= 100 || len(backups) == 0 {
		return backups
	}
	if pct <= 0 {
		return nil
	}
	n := max(1, int(math.Ceil(float64(len(backups))*pct/100)))
	idx := rnd.Perm(len(backups))[:n]
	slices.Sort(idx)
	out := make([]catalog.Backup, 0, n)
	for _, i := range idx {
		out = append(out, backups[i])
	}
	return out
}
