package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"sync"
	"time"

	"voltar/internal/archive"
	"voltar/internal/browse"
	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/index"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/memlimit"
	"voltar/internal/store"
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
	b    *catalog.Backup
	sha  string // of its manifest.json
	time string // its timestamp, the From of what its own archives hold
	// indexes are its file indexes by filesystem name, read in the
	// background from when the parent is chosen: a large index takes as
	// long to read as the snapshot, the mount and the first part of the
	// walk (archive.Parent).
	indexes map[string]*parentIndex
	stop    context.CancelFunc
	wg      sync.WaitGroup
	release []func() // of the memory the indexes hold (memlimit.Hold)
}

// indexEntryMemory is what one entry of a parent's index holds in memory
// (the entry, its path, the map by path): ~300 bytes measured with a
// million entries. An unchanged re-backup of them took 9.2-9.9 s with the
// collector running without pause, 7.6-8.0 s holding this (RSS 408 ->
// 460 MiB), 7.8 s holding 512 (RSS 530 MiB).
const indexEntryMemory = 320

// parentIndex is one of the parent's file indexes, read or being read.
type parentIndex struct {
	done chan struct{}
	ix   *index.Index
	err  error
}

// load starts reading the file index of every filesystem the parent
// archived as files, one after the other, in its manifest's order.
func (p *parent) load(ctx context.Context, st store.Store, ids *crypt.Identities) {
	ctx, p.stop = context.WithCancel(ctx)
	var todo []manifest.Filesystem
	for _, fs := range p.b.Manifest.Filesystems {
		if fs.Mode == manifest.ModeFiles {
			p.indexes[fs.Name] = &parentIndex{done: make(chan struct{})}
			todo = append(todo, fs)
		}
	}
	p.wg.Go(func() {
		for _, fs := range todo {
			pi := p.indexes[fs.Name]
			pi.ix, pi.err = readParentIndex(ctx, st, p.b, fs, ids)
			if pi.err == nil {
				// Go's soft memory limit is sized for a full backup; a
				// large index above it kept the collector running.
				p.release = append(p.release, memlimit.Hold(int64(len(pi.ix.Entries))*indexEntryMemory))
			}
			close(pi.done)
		}
	})
}

// close stops reading the parent's indexes and waits for the reader.
func (p *parent) close() {
	if p != nil && p.stop != nil {
		p.stop()
		p.wg.Wait()
		for _, r := range p.release {
			r()
		}
		p.release = nil
	}
}

// readParentIndex reads the file index of filesystem fs of backup b.
func readParentIndex(ctx context.Context, st store.Store, b *catalog.Backup, fs manifest.Filesystem, ids *crypt.Identities) (*index.Index, error) {
	if fs.Index == nil {
		return nil, fmt.Errorf("%s of %s has no file index (made by an older voltar)", fs.Name, b.ID)
	}
	f, err := browse.Open(ctx, st, b, fs, ids)
	if err != nil {
		return nil, fmt.Errorf("file index of %s of %s: %w", fs.Name, b.ID, err)
	}
	defer f.Close()
	return f.Index, nil
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
	p := &parent{b: b, sha: hex.EncodeToString(sum[:]), time: path.Base(b.ID), indexes: map[string]*parentIndex{}}
	p.load(ctx, r.o.Store, inc.Identities)
	return p
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
		p.close()
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
// (stored whole). Its index may still be being read: the archive waits
// for it, and is stored whole if it cannot be read (an increment on a
// parent that cannot be read is worth nothing).
func (r *run) archiveParent(name string) *archive.Parent {
	p := r.parent
	if p == nil {
		return nil
	}
	pi, ok := p.indexes[name]
	if !ok {
		return nil
	}
	return &archive.Parent{Time: p.time, Index: func() (*index.Index, error) {
		<-pi.done
		if pi.err != nil && !errors.Is(pi.err, context.Canceled) {
			r.log.Warn("whole archive: the parent's file index cannot be read", "fs", name, "parent", p.b.ID, "err", pi.err)
		}
		return pi.ix, pi.err
	}}
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
	r.log.Info("full backup: no filesystem was stored as an increment on " + r.m.Chain.Parent)
	r.m.Chain = nil
}
