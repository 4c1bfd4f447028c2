// Package prune applies the retention policy to the backups in a store and
// deletes what it does not keep. The decisions come from the pure
// retention.Apply; this package only lists, tells retention how the
// backups chain (an increment's parent, whether that parent is still the
// one it was made on) and deletes. Chains are kept whole: a backup a kept
// increment builds on is never deleted.
package prune

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/layout"
	"voltar/internal/retention"
	"voltar/internal/store"
)

// Options configure a prune.
type Options struct {
	Policy retention.Policy
	// PolicyFor, when set, may give a volume (or dump) its own policy; ok
	// false falls back to Policy.
	// with the time zone its days, weeks and months are counted in.
	PolicyFor func(group, volume string) (p retention.Policy, loc *time.Location, ok bool)
	Loc       *time.Location
	Now       func() time.Time
	DryRun    bool
	Logger    *slog.Logger
}

// Decision is one backup folder's fate.
type Decision struct {
	ID       string `json:"id"`
	Time     string `json:"time"`
	Complete bool   `json:"complete"`
	// Damaged: manifest.json is there but unusable; such a folder is
	// always kept and never counts as a backup.
	Damaged bool `json:"damaged,omitempty"`
	// Level is 0 for a full backup, n for an increment n steps from its
	// full; Parent is the backup an increment builds on. A kept
	// increment keeps its parent, whose Reasons then say so.
	Level   int      `json:"level,omitempty"`
	Parent  string   `json:"parent,omitempty"`
	Keep    bool     `json:"keep"`
	Reasons []string `json:"reasons"`
	Bytes   int64    `json:"bytes"`
	Removed bool     `json:"removed"`
	Error   string   `json:"error,omitempty"`
}

// Volume is the result for one volume.
type Volume struct {
	Volume    string     `json:"volume"` // <vg>/<volume>
	Decisions []Decision `json:"decisions"`
}

// Store prunes every volume of host in st (filter "" = all, else a volume).
func Store(ctx context.Context, st store.Store, host, filter string, o Options) ([]Volume, error) {
	c, err := catalog.List(ctx, st, host, filter)
	if err != nil {
		return nil, err
	}
	type group struct {
		backups    []catalog.Backup
		incomplete []catalog.Incomplete
	}
	groups := map[string]*group{}
	get := func(g, v string) *group {
		k := g + "/" + v
		if groups[k] == nil {
			groups[k] = &group{}
		}
		return groups[k]
	}
	for _, b := range c.Backups {
		get(b.Group, b.Volume).backups = append(get(b.Group, b.Volume).backups, b)
	}
	for _, in := range c.Incomplete {
		get(in.Group, in.Volume).incomplete = append(get(in.Group, in.Volume).incomplete, in)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Volume
	var errs []error
	for _, k := range keys {
		g := groups[k]
		v, err := apply(ctx, st, k, g.backups, g.incomplete, o)
		out = append(out, v)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// apply decides and deletes for one volume.
func apply(ctx context.Context, st store.Store, vol string, backups []catalog.Backup, incomplete []catalog.Incomplete, o Options) (Volume, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	var in []retention.Backup
	prefixes := map[string]string{}
	sizes := map[string]int64{}
	damaged := map[string]string{}
	levels := map[string]int{}
	sums := map[string]string{} // manifest.json's SHA-256 of each backup
	for _, b := range backups {
		if len(b.ManifestData) > 0 {
			sum := sha256.Sum256(b.ManifestData)
			sums[b.ID] = hex.EncodeToString(sum[:])
		}
	}
	for _, b := range backups {
		rb := retention.Backup{ID: b.ID, Time: b.Time, Complete: true}
		if c := b.Manifest.Chain; c != nil {
			// An increment is restorable only from the parent it was made
			// on: one whose manifest has changed since breaks the chain.
			rb.Parent = c.Parent
			sum, ok := sums[c.Parent]
			rb.ParentChanged = ok && sum != c.ParentManifestSHA256
			levels[b.ID] = c.Level
		}
		in = append(in, rb)
		prefixes[b.ID] = b.Prefix
		for _, obj := range b.Objects {
			sizes[b.ID] += obj.Size
		}
	}
	for _, f := range incomplete {
		// A manifest that exists but cannot be used (damaged, invalid,
		// from a newer voltar) may describe a good backup: never delete
		// it blindly, and never count it as one (Complete false), nor an
		// increment that builds on it as restorable.
		if f.HasManifest || f.Damaged {
			damaged[f.ID] = f.Reason
		}
		in = append(in, retention.Backup{ID: f.ID, Time: f.Time, Complete: false})
		prefixes[f.ID] = f.Prefix
		sizes[f.ID] = f.Bytes
	}
	res := Volume{Volume: vol}
	pol, loc := o.Policy, o.Loc
	if o.PolicyFor != nil {
		group, name, _ := strings.Cut(vol, "/")
		if p, l, ok := o.PolicyFor(group, name); ok {
			pol, loc = p, l
		}
	}
	var errs []error
	for _, d := range retention.Apply(in, pol, now(), loc) {
		dec := Decision{
			ID: d.Backup.ID, Time: d.Backup.Time.UTC().Format(time.RFC3339), Complete: d.Backup.Complete,
			Level: levels[d.Backup.ID], Parent: d.Backup.Parent,
			Keep: d.Keep, Reasons: d.Reasons, Bytes: sizes[d.Backup.ID],
		}
		if why, ok := damaged[dec.ID]; ok {
			dec.Keep, dec.Damaged = true, true
			dec.Reasons = []string{"damaged, left for a person to inspect (" + why + ")"}
		}
		if !dec.Keep && !o.DryRun {
			if err := Delete(ctx, st, prefixes[dec.ID]); err != nil {
				dec.Error = err.Error()
				errs = append(errs, fmt.Errorf("remove %s: %w", dec.ID, err))
			} else {
				dec.Removed = true
				if o.Logger != nil {
					o.Logger.Info("backup removed", "id", dec.ID, "reasons", dec.Reasons)
				}
			}
		}
		res.Decisions = append(res.Decisions, dec)
	}
	return res, errors.Join(errs...)
}

// Delete removes a backup folder. The manifest goes first: an interrupted
// delete leaves an incomplete folder, never a "complete" backup with
// missing archives.
func Delete(ctx context.Context, st store.Store, prefix string) error {
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return err
	}
	sort.SliceStable(objs, func(i, j int) bool {
		return path.Base(objs[i].Key) == layout.Manifest && path.Base(objs[j].Key) != layout.Manifest
	})
	for _, obj := range objs {
		if err := st.Delete(ctx, obj.Key); err != nil {
			return err
		}
	}
	if tr, ok := store.As[store.TempRemover](st); ok {
		return tr.RemoveTemp(ctx, prefix)
	}
	return nil
}
