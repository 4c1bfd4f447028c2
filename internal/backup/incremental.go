package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"time"

	"voltar/internal/archive"
	"voltar/internal/browse"
	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/index"
	"voltar/internal/layout"
	"voltar/internal/manifest"
)

// Incremental is when a backup builds on the volume's previous one (config
// incremental:). The zero value makes every backup full.
type Incremental struct {
	// MaxChain is how many increments may follow a full backup before the
	// next full; 0: every backup is full.
	MaxChain int
	// FullEvery: a full backup at least this often (0: no bound).
	FullEvery time.Duration
	// Full forces a full backup (voltar backup --full).
	Full bool
	// Identities read the parent's file indexes when the store is
	// encrypted; without them every backup of an encrypted store is full.
	Identities *crypt.Identities
}

// parent is the backup an increment builds on, with its file indexes.
type parent struct {
	b       *catalog.Backup
	sha     string                  // of its manifest.json
	time    string                  // its timestamp, the From of what its own archives hold
	indexes map[string]*index.Index // by filesystem name
}

// chooseParent picks the backup this one builds on: the newest complete
// backup of the volume, if its chain may grow and is whole. It returns nil
// (a full backup) and says why in the log otherwise.
func (r *run) chooseParent(ctx context.Context) *parent {
	inc := r.o.Incremental
	if inc.MaxChain <= 0 {
		return nil
	}
	full := func(why string, args ...any) *parent {
		r.log.Info("full backup: "+fmt.Sprintf(why, args...), "max_chain", inc.MaxChain)
		return nil
	}
	if inc.Full {
		return full("asked for (--full)")
	}
	if r.o.Isolation == IsolationSandbox {
		return full("isolation: sandbox makes full backups only")
	}
	cat, err := catalog.List(ctx, r.o.Store, r.o.Host, r.v.Group+"/"+r.v.Name)
	if err != nil {
		return full("cannot list the volume's backups: %v", err)
	}
	// List sorts a volume's backups oldest first.
	var b *catalog.Backup
	for i := range cat.Backups {
		if c := &cat.Backups[i]; c.Host == r.o.Host && c.Group == r.v.Group && c.Volume == r.v.Name && c.Manifest.Volume.Kind != layout.Dump {
			b = c
		}
	}
	if b == nil {
		return full("no earlier backup of the volume")
	}
	m := b.Manifest
	if m.Level() >= inc.MaxChain {
		return full("the chain of %s has %d increments (max_chain %d)", b.ID, m.Level(), inc.MaxChain)
	}
	// The whole chain must be there: an increment on a broken chain
	// could never be restored.
	if b.ChainBroken != "" {
		return full("the chain of %s is broken: %s", b.ID, b.ChainBroken)
	}
	fullID := b.ID
	if m.Chain != nil {
		fullID = m.Chain.Full
	}
	if inc.FullEvery > 0 {
		ft, err := layout.ParseTime(path.Base(fullID))
		if err == nil && time.Since(ft) >= inc.FullEvery {
			return full("the chain's full backup %s is older than full_every %s", fullID, inc.FullEvery)
		}
	}
	if (m.Encryption != nil) != (r.o.Recipients != nil) {
		return full("encryption was turned on or off since %s", b.ID)
	}
	if m.Encryption != nil && inc.Identities == nil {
		return full("the store is encrypted and no encryption.identity_file is set to read %s's file indexes", b.ID)
	}
	sum := sha256.Sum256(b.ManifestData)
	return &parent{b: b, sha: hex.EncodeToString(sum[:]), time: path.Base(b.ID), indexes: map[string]*index.Index{}}
}

// sameShape reports why the volume no longer is what the parent backed up
// (size, partition table, a filesystem's type or UUID), or "".
func (r *run) sameShape(p *parent, parts []part) string {
	pm := p.b.Manifest
	if pm.Volume.Size != r.v.Size {
		return fmt.Sprintf("the volume was resized (%d -> %d bytes)", pm.Volume.Size, r.v.Size)
	}
	t, pt := r.m.Table, pm.Table
	if t.Type != pt.Type || t.DiskID != pt.DiskID || t.SectorSize != pt.SectorSize || len(t.Partitions) != len(pt.Partitions) {
		return "the partition table changed"
	}
	for i, q := range t.Partitions {
		o := pt.Partitions[i]
		if q.Number != o.Number || q.Start != o.Start || q.Size != o.Size || q.Type != o.Type || q.UUID != o.UUID {
			return fmt.Sprintf("partition %d changed", q.Number)
		}
	}
	for _, q := range parts {
		i := slices.IndexFunc(pm.Filesystems, func(f manifest.Filesystem) bool { return f.Name == q.name })
		if i < 0 {
			return q.name + " is new"
		}
		o := pm.Filesystems[i]
		if o.Type != q.fs.Type || o.UUID != q.fs.UUID {
			return fmt.Sprintf("%s changed (%s %s -> %s %s: reformatted?)", q.name, o.Type, o.UUID, q.fs.Type, q.fs.UUID)
		}
		// An exclude added or dropped changes what the tree holds
		// without touching an inode (and can split a hard-link group).
		if o.Mode == manifest.ModeFiles && !slices.Equal(o.Excludes, r.o.Excludes) {
			return "the exclude patterns changed"
		}
	}
	return ""
}

// loadParent reads the parent's file index of every filesystem it
// archived as files. Any failure means a full backup: an increment on a
// parent that cannot be read is worth nothing.
func (r *run) loadParent(ctx context.Context, p *parent, parts []part) error {
	for _, q := range parts {
		i := slices.IndexFunc(p.b.Manifest.Filesystems, func(f manifest.Filesystem) bool { return f.Name == q.name })
		fs := p.b.Manifest.Filesystems[i]
		if fs.Mode != manifest.ModeFiles {
			continue
		}
		if fs.Index == nil {
			return fmt.Errorf("%s of %s has no file index (made by an older voltar)", fs.Name, p.b.ID)
		}
		f, err := browse.Open(ctx, r.o.Store, p.b, fs, r.o.Incremental.Identities)
		if err != nil {
			return fmt.Errorf("file index of %s of %s: %w", fs.Name, p.b.ID, err)
		}
		p.indexes[fs.Name] = f.Index
		f.Close()
	}
	return nil
}

// increment decides, once the volume's layout is known, whether this
// backup is an increment on r.parent, and records its chain.
func (r *run) increment(ctx context.Context, parts []part) {
	p := r.parent
	if p == nil {
		return
	}
	r.parent = nil
	if why := r.sameShape(p, parts); why != "" {
		r.log.Info("full backup: " + why + " since " + p.b.ID)
		return
	}
	if err := r.loadParent(ctx, p, parts); err != nil {
		r.log.Warn("full backup: the parent cannot be read", "parent", p.b.ID, "err", err)
		return
	}
	r.parent = p
	pm := p.b.Manifest
	c := &manifest.Chain{Level: pm.Level() + 1, Parent: p.b.ID, ParentManifestSHA256: p.sha, Full: p.b.ID}
	if pm.Chain != nil {
		c.Full = pm.Chain.Full
	}
	r.m.Chain = c
	r.log.Info("incremental backup", "level", c.Level, "parent", c.Parent, "full", c.Full)
}

// archiveParent is what the archive of filesystem name builds on, or nil
// (stored whole).
func (r *run) archiveParent(name string) *archive.Parent {
	if r.parent == nil {
		return nil
	}
	ix, ok := r.parent.indexes[name]
	if !ok {
		return nil
	}
	return &archive.Parent{Index: ix, Time: r.parent.time}
}

// settleChain drops the chain of a backup none of whose filesystems was
// stored as an increment (all raw, say): it is a full backup.
func (r *run) settleChain() {
	if r.m.Chain == nil {
		return
	}
	for _, f := range r.m.Filesystems {
		if f.Incremental {
			return
		}
	}
	r.m.Chain = nil
}
