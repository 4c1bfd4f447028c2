package catalog

import (
	"crypto/sha256"
	"encoding/hex"
)

// checkChains sets ChainBroken on every increment whose chain cannot be
// restored. An increment needs its parent as a backup of the catalog (not
// missing, incomplete or damaged) with the manifest.json it was made on,
// and the same of every ancestor up to its full. A volume's backups are
// listed oldest first and a parent is older than its child (manifest.Validate),
// so each parent is settled before its children.
func (c *Catalog) checkChains() {
	type parent struct {
		backup bool   // false: an incomplete or damaged folder
		sum    string // SHA-256 of its manifest.json, "" if not known
		cause  string // where its own chain breaks: "<id> is missing"
	}
	backups := make(map[string]*parent, len(c.Backups))
	for _, f := range c.Incomplete {
		cause := f.ID + " is incomplete (no manifest.json)"
		if f.Damaged || f.HasManifest {
			cause = f.ID + " is damaged"
		}
		backups[f.Host+"/"+f.ID] = &parent{cause: cause}
	}
	// An incomplete folder and a backup never share an ID: both are the
	// folder's name. The backups come last so that a parent is one.
	for i := range c.Backups {
		b := &c.Backups[i]
		me := &parent{backup: true}
		if len(b.ManifestData) > 0 {
			sum := sha256.Sum256(b.ManifestData)
			me.sum = hex.EncodeToString(sum[:])
		}
		backups[b.FullID()] = me
		if b.Parent == "" {
			continue
		}
		p, ok := backups[b.Host+"/"+b.Parent]
		switch {
		case !ok:
			me.cause = b.Parent + " is missing"
			b.ChainBroken = "parent " + me.cause
		case !p.backup:
			me.cause = p.cause
			b.ChainBroken = "parent " + me.cause
		case p.sum != "" && p.sum != b.Manifest.Chain.ParentManifestSHA256:
			me.cause = b.Parent + " is not the backup it was made on (its manifest.json changed)"
			b.ChainBroken = "parent " + me.cause
		case p.cause != "":
			me.cause = p.cause
			b.ChainBroken = "ancestor " + me.cause
		}
	}
}
