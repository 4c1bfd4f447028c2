// Package catalog finds the backups in a store. A backup is a folder
// <host>/<group>/<volume>/<timestamp>/ holding manifest.json; a folder without
// one is incomplete (a run that died, or one still writing) and never a
// backup. The catalog uses only store.List and store.Get, so it reads every
// store alike, local or S3.
package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"voltar/internal/fail"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/store"
)

// Latest names the newest complete backup of a volume in an ID.
const Latest = "latest"

// Object is one stored object of a backup folder.
type Object struct {
	Name    string    `json:"name"` // relative to the folder, e.g. "p1.tar.zst"
	Key     string    `json:"key"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
}

// Backup is one complete backup: a folder with a readable manifest.json.
type Backup struct {
	ID       string             `json:"id"` // <group>/<volume>/<timestamp>
	Host     string             `json:"host"`
	Group    string             `json:"group"` // VG, "image" or "dumps"
	Volume   string             `json:"volume"`
	Time     time.Time          `json:"time"`
	Prefix   string             `json:"prefix"` // store key prefix, ends in "/"
	Objects  []Object           `json:"objects"`
	Manifest *manifest.Manifest `json:"manifest"`
	// ManifestData is manifest.json as it was read and decoded into
	// Manifest: what a signature check (manifest.json.sig) covers.
	ManifestData []byte `json:"-"`

	// Kind is KindFull or KindIncremental. Level (0 for a full backup),
	// Parent and Full repeat the manifest's chain: the backup an
	// increment builds on and its chain's full.
	Kind   string `json:"kind"`
	Level  int    `json:"level"`
	Parent string `json:"parent,omitempty"`
	Full   string `json:"full,omitempty"`
	// ChainBroken, set by List, says why an increment cannot be restored:
	// an ancestor that is missing, damaged or incomplete, or whose
	// manifest.json is not the one its child was made on. "" for a full
	// backup and for an increment whose chain is whole.
	ChainBroken string `json:"chain_broken,omitempty"`
}

// Kinds of backup.
const (
	KindFull        = "full"
	KindIncremental = "incremental"
)

// FullID is the backup's ID with its host: <host>/<group>/<volume>/<timestamp>.
func (b *Backup) FullID() string { return b.Host + "/" + b.ID }

// Key returns the store key of the object name in the backup's folder.
func (b *Backup) Key(name string) string { return b.Prefix + name }

// Object returns the named object of the folder, if it is there.
func (b *Backup) Object(name string) (Object, bool) {
	for _, o := range b.Objects {
		if o.Name == name {
			return o, true
		}
	}
	return Object{}, false
}

// Incomplete is a backup folder that is not a backup.
type Incomplete struct {
	ID      string    `json:"id"`
	Host    string    `json:"host"`
	Group   string    `json:"group"`
	Volume  string    `json:"volume"`
	Time    time.Time `json:"time"`
	Prefix  string    `json:"prefix"`
	Objects []Object  `json:"objects"`
	Bytes   int64     `json:"bytes"`
	// HasManifest is true when manifest.json exists but cannot be used; such
	// a folder may have been a good backup, so it deserves a look before it
	// is removed.
	HasManifest bool `json:"has_manifest"`
	// Damaged is true when manifest.json exists but cannot be read, does not
	// decode, fails manifest.Validate, or does not match
	// manifest.json.sha256. Such a folder is not a backup and not a run
	// still writing: verify fails it, restore .../latest stops at it, and
	// prune leaves it for a person.
	Damaged bool   `json:"damaged"`
	Reason  string `json:"reason"` // "no manifest.json", "manifest.json unreadable: ..."
}

// Damaged returns the folders whose manifest.json is there but unusable.
func (c *Catalog) Damaged() []Incomplete {
	var out []Incomplete
	for _, f := range c.Incomplete {
		if f.Damaged {
			out = append(out, f)
		}
	}
	return out
}

// Catalog is what a store holds.
type Catalog struct {
	Store      string       `json:"store"`
	Backups    []Backup     `json:"backups"`
	Incomplete []Incomplete `json:"incomplete"`
}

// folder is one <host>/<group>/<volume>/<timestamp>/ prefix while listing.
type folder struct {
	host, group, volume string
	time                time.Time
	prefix              string
	objects             []Object
}

func (f *folder) id() string { return layout.ID(f.group, f.volume, f.time) }

// List returns the backups and incomplete folders under host ("" = every
// host) whose volume matches filter (see MatchVolume). Both lists are sorted
// by host, group, volume, then time, oldest first. Keys outside the layout
// (not <host>/<group>/<volume>/<timestamp>/<name>) are ignored.
func List(ctx context.Context, st store.Store, host, filter string) (*Catalog, error) {
	group, volume, err := parseFilter(filter)
	if err != nil {
		return nil, err
	}
	prefix := ""
	if host != "" {
		prefix = host + "/"
		if group != "" {
			prefix += group + "/" + volume + "/"
		}
	}
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", st, err)
	}
	folders := groupFolders(objs, group, volume)
	cat := &Catalog{Store: st.String(), Backups: []Backup{}, Incomplete: []Incomplete{}}
	for _, f := range folders {
		b, inc, err := load(ctx, st, f)
		if err != nil {
			return nil, err
		}
		if b != nil {
			cat.Backups = append(cat.Backups, *b)
		} else {
			cat.Incomplete = append(cat.Incomplete, *inc)
		}
	}
	cat.checkChains()
	return cat, nil
}

// groupFolders sorts objects into backup folders, dropping keys outside the
// layout and volumes the filter does not match.
func groupFolders(objs []store.Object, group, volume string) []*folder {
	byPrefix := map[string]*folder{}
	var out []*folder
	for _, o := range objs {
		k, ok := layout.ParseKey(o.Key)
		if !ok {
			continue
		}
		if (group != "" && k.Group != group) || (volume != "" && k.Volume != volume) {
			continue
		}
		p := k.Prefix()
		f := byPrefix[p]
		if f == nil {
			f = &folder{host: k.Host, group: k.Group, volume: k.Volume, time: k.Time, prefix: p}
			byPrefix[p] = f
			out = append(out, f)
		}
		f.objects = append(f.objects, Object{Name: k.Name, Key: o.Key, Size: o.Size, ModTime: o.ModTime})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.host != b.host {
			return a.host < b.host
		}
		if a.group != b.group {
			return a.group < b.group
		}
		if a.volume != b.volume {
			return a.volume < b.volume
		}
		return a.time.Before(b.time)
	})
	return out
}

// load reads a folder's manifest. A missing manifest makes the folder
// incomplete; one that is there but unusable (unreadable, not decodable,
// invalid, or not matching manifest.json.sha256) makes it damaged. Only a
// failing store (not a missing object) is an error.
func load(ctx context.Context, st store.Store, f *folder) (*Backup, *Incomplete, error) {
	inc := &Incomplete{
		ID: f.id(), Host: f.host, Group: f.group, Volume: f.volume, Time: f.time,
		Prefix: f.prefix, Objects: f.objects, Reason: "no " + layout.Manifest,
	}
	hasSum := false
	for _, o := range f.objects {
		inc.Bytes += o.Size
		switch o.Name {
		case layout.Manifest:
			inc.HasManifest = true
		case layout.ManifestSum:
			hasSum = true
		}
	}
	if !inc.HasManifest {
		return nil, inc, nil
	}
	m, data, err := readManifest(ctx, st, f.prefix, hasSum)
	if errors.Is(err, store.ErrNotFound) {
		// Deleted between List and Get (a prune running meanwhile).
		inc.HasManifest = false
		return nil, inc, nil
	}
	if err != nil {
		var derr *damageError
		if !errors.As(err, &derr) {
			return nil, nil, err
		}
		inc.Damaged = true
		inc.Reason = derr.Error()
		return nil, inc, nil
	}
	b := &Backup{
		ID: f.id(), Host: f.host, Group: f.group, Volume: f.volume, Time: f.time,
		Prefix: f.prefix, Objects: f.objects, Manifest: m, ManifestData: data, Kind: KindFull,
	}
	if c := m.Chain; c != nil {
		b.Kind, b.Level, b.Parent, b.Full = KindIncremental, c.Level, c.Parent, c.Full
	}
	return b, nil, nil
}

// damageError is a manifest.json that is there but cannot be used.
type damageError struct{ msg string }

func (e *damageError) Error() string { return e.msg }

// maxManifest bounds what is read of a manifest.json: a real one is a few
// KiB, and a damaged store must not make voltar read gigabytes into memory.
const maxManifest = 16 << 20

// readManifest reads and decodes (so validates) the folder's manifest.json
// and, when the folder has manifest.json.sha256, checks it against that.
func readManifest(ctx context.Context, st store.Store, prefix string, hasSum bool) (*manifest.Manifest, []byte, error) {
	key := prefix + layout.Manifest
	want := ""
	if hasSum {
		var err error
		want, err = readChecksum(ctx, st, prefix+layout.ManifestSum)
		if err != nil {
			return nil, nil, err
		}
	}
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
	if err != nil {
		return nil, nil, &damageError{fmt.Sprintf("%s unreadable: %v", layout.Manifest, err)}
	}
	if len(data) > maxManifest {
		return nil, nil, &damageError{fmt.Sprintf("%s unreadable: larger than %d bytes", layout.Manifest, maxManifest)}
	}
	if want != "" {
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			return nil, nil, &damageError{fmt.Sprintf("%s damaged: its sha256 is %s, %s says %s",
				layout.Manifest, got, layout.ManifestSum, want)}
		}
	}
	m, err := manifest.Decode(bytes.NewReader(data))
	var ie *manifest.InvalidError
	if errors.As(err, &ie) {
		return nil, nil, &damageError{fmt.Sprintf("%s %v", layout.Manifest, err)}
	}
	if err != nil {
		return nil, nil, &damageError{fmt.Sprintf("%s unreadable: %v", layout.Manifest, err)}
	}
	return m, data, nil
}

// readChecksum reads manifest.json.sha256: one sha256sum line for
// manifest.json. A missing one ("" and no error: deleted meanwhile) leaves
// the manifest unchecked; a malformed one is damage.
func readChecksum(ctx context.Context, st store.Store, key string) (string, error) {
	rc, err := st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 4096))
	if err != nil {
		return "", &damageError{fmt.Sprintf("%s unreadable: %v", layout.ManifestSum, err)}
	}
	want, name, ok := strings.Cut(strings.TrimSuffix(string(data), "\n"), "  ")
	if _, herr := hex.DecodeString(want); !ok || name != layout.Manifest || len(want) != 64 || herr != nil {
		return "", &damageError{fmt.Sprintf("%s damaged: want one line \"<sha256>  %s\"", layout.ManifestSum, layout.Manifest)}
	}
	want = strings.ToLower(want)
	return want, nil
}

// MatchVolume reports whether a filter as accepted by List names the
// volume group/volume.
func MatchVolume(filter, group, volume string) bool {
	g, v, err := parseFilter(filter)
	return err == nil && (g == "" || g == group) && (v == "" || v == volume)
}

// parseFilter accepts "", "volume", "group/volume" and "/dev/group/volume".
// An image volume is named by its base name ("disk.img" or "image/disk.img").
func parseFilter(filter string) (group, volume string, err error) {
	f := filter
	switch {
	case strings.HasPrefix(f, "/dev/"):
		f = strings.TrimPrefix(f, "/dev/")
	case strings.HasPrefix(f, "/"): // a path to an image file
		return "image", path.Base(f), nil
	}
	parts := strings.Split(f, "/")
	switch {
	case f == "":
		return "", "", nil
	case len(parts) == 1:
		return "", parts[0], nil
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return parts[0], parts[1], nil
	}
	return "", "", fail.Usage(fmt.Errorf("volume %q: want VOLUME, GROUP/VOLUME or /dev/GROUP/VOLUME", filter))
}
