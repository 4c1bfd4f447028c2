package main

// The libvirt domains of the config (domains:): which are there, which of
// their disks are backed up and why the others not, and the jobs that back
// up each domain's disks together (internal/domain).

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"voltar/internal/backup"
	"voltar/internal/domain"
	"voltar/internal/fail"
	"voltar/internal/nightly"
	"voltar/internal/volume"
)

// domainInject, set by tests only, is handed to domain.Options.Inject.
var domainInject func(stage string) error

// virt is the command's one libvirt client.
func (a *app) virt() *domain.Client {
	if a.virtClient == nil {
		a.virtClient = &domain.Client{Socket: a.cfg.LibvirtSocket}
	}
	return a.virtClient
}

// domainDisk is a disk of a selected domain that is backed up.
type domainDisk struct {
	dom    domain.Domain
	target string
	vol    volume.Volume
	snap   volume.Snapshotter
}

// domainSelection lists the domains the config's domains: patterns
// match, each disk as a candidate (selected, or why not), and the disks to
// back up. ids are the volumes selected otherwise: a disk that is one of
// them (or of another domain) fails its domain rather than share its
// history.
func (a *app) domainSelection(ctx context.Context, ids map[string]bool) ([]candidate, []domainDisk, error) {
	if len(a.cfg.Domains) == 0 {
		return nil, nil, nil
	}
	c := a.virt()
	names, err := c.Names(ctx)
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	if err != nil {
		var out []candidate
		for _, p := range a.cfg.Domains {
			out = append(out, missingDomain(p, "", err))
		}
		return out, nil, nil
	}
	sort.Strings(names)
	var out []candidate
	var disks []domainDisk
	seen := map[string]bool{}
	for _, p := range a.cfg.Domains {
		matched := false
		for _, n := range names {
			if ok, _ := doublestar.Match(p, n); !ok {
				continue
			}
			matched = true
			if seen[n] {
				continue
			}
			seen[n] = true
			cs, ds := a.domainDisks(ctx, n, ids)
			out = append(out, cs...)
			disks = append(disks, ds...)
		}
		if !matched {
			out = append(out, missingDomain(p, "", fmt.Errorf("no libvirt domain matches %q", p)))
		}
	}
	return out, disks, ctx.Err()
}

// domainDisks resolves the disks of domain name.
func (a *app) domainDisks(ctx context.Context, name string, ids map[string]bool) ([]candidate, []domainDisk) {
	d, err := a.virt().Lookup(ctx, name)
	if err != nil {
		return []candidate{missingDomain(name, "", err)}, nil
	}
	var out []candidate
	var disks []domainDisk
	var bad error
	for _, k := range d.Disks {
		cand := candidate{Volume: k.Source, Kind: "disk", Path: k.Source, Size: -1, Domain: d.Name, Disk: k.Target}
		if k.Skip != "" {
			cand.Reason = k.Skip
			out = append(out, cand)
			continue
		}
		v, s, err := a.diskVolume(ctx, k)
		if err == nil && ids[v.ID()] {
			err = fail.Hint(fmt.Errorf("disk %s of domain %s is the volume %s, which is selected already", k.Target, d.Name, v.ID()),
				"a volume has one history in the store: back it up either with its domain or on its own; file disks of different domains need distinct file names")
		}
		if err != nil {
			bad = errors.Join(bad, fmt.Errorf("disk %s: %w", k.Target, err))
			out = append(out, missingDomain(d.Name, k.Target, err))
			continue
		}
		ids[v.ID()] = true
		cand.Volume, cand.Kind, cand.Format, cand.Path, cand.Size, cand.Selected = v.ID(), v.Kind, v.Format, v.Path, v.Size, true
		out = append(out, cand)
		disks = append(disks, domainDisk{dom: d, target: k.Target, vol: v, snap: s})
	}
	if bad != nil {
		// A domain is taken whole or not at all.
		for i := range out {
			if out[i].Selected && !out[i].Missing {
				out[i].Selected, out[i].Reason = false, "another disk of the domain cannot be backed up: "+bad.Error()
			}
		}
		return out, nil
	}
	if len(disks) == 0 {
		out = append(out, missingDomain(d.Name, "", fmt.Errorf("domain %s has no disk voltar can back up", d.Name)))
	}
	return out, disks
}

// diskVolume resolves a disk to its volume: a block device as an LV, a
// file as an image (raw or qcow2, by its header).
func (a *app) diskVolume(ctx context.Context, k domain.Disk) (volume.Volume, volume.Snapshotter, error) {
	if k.Type == "block" {
		s, err := a.lvm()
		if err != nil {
			return volume.Volume{}, nil, err
		}
		v, err := s.Resolve(ctx, k.Source)
		if err != nil {
			return volume.Volume{}, nil, fail.Hint(fmt.Errorf("block device %s: %w", k.Source, err),
				"voltar backs up block disks that are LVM logical volumes (/dev/<vg>/<lv>)")
		}
		return v, s, nil
	}
	if strings.HasPrefix(filepath.Base(k.Source), domain.OverlayPrefix) {
		return volume.Volume{}, nil, fail.Hint(fmt.Errorf("disk %s runs on %s, the overlay of an external snapshot voltar could not commit back", k.Target, k.Source),
			"commit it back: `virsh blockcommit DOMAIN %s --active --pivot --wait`, then remove the overlay (the next voltar command also retries)", k.Target)
	}
	v, err := resolveImage(k.Source, false)
	if err != nil {
		return volume.Volume{}, nil, err
	}
	s, err := a.snapshotter(v)
	return v, s, err
}

// missingDomain is a domain (or one disk of it) the config selects that
// cannot be backed up: `run` fails it.
func missingDomain(name, target string, err error) candidate {
	hint := "`virsh -c qemu:///system list --all` shows the domains; fix the domain or domains: in the config"
	if hs := fail.Hints(err); len(hs) > 0 {
		hint = hs[0]
	}
	c := missingCandidate("domain:"+name, "domain", "", fail.Hint(errors.New(err.Error()), "%s", hint))
	c.Domain, c.Disk = name, target
	return c
}

// domainJobs are the nightly jobs of the domains' disks and each
// domain's freeze settings.
func (a *app) domainJobs(disks []domainDisk) ([]nightly.Job, map[string]domain.Options) {
	var jobs []nightly.Job
	opts := map[string]domain.Options{}
	for _, d := range disks {
		v := d.vol
		jobs = append(jobs, nightly.Job{Volume: v, Snapshotter: d.snap, Excludes: a.excludesFor(v, nil),
			BtrfsSnapshots: a.cfg.IncludeBtrfsSnapshots(v.ID()), Hooks: a.hooksFor(v), Isolation: a.cfg.IsolationFor(v.ID()),
			Incremental: a.incrementalFor(v, false), Domain: d.dom.Name, Target: d.target})
		if _, ok := opts[d.dom.Name]; ok {
			continue
		}
		// A client of its own: a call given up on (a freeze past
		// freeze_timeout) closes its connection, which must not fail
		// another domain's call in flight.
		c := &domain.Client{Socket: a.cfg.LibvirtSocket}
		opts[d.dom.Name] = domain.Options{Client: c, Domain: d.dom.Name, UUID: d.dom.UUID, Running: d.dom.Running,
			FreezeTimeout: a.cfg.FreezeTimeout, RequireFreeze: a.cfg.RequireFreeze, Inject: domainInject,
			Overlays: c, Scratch: a.cfg.Scratch(), Scope: backup.Scope(a.cfg.RuntimeDir)}
	}
	return jobs, opts
}

// domainNote is what the volumes listing says of a domain's disk.
func domainNote(c candidate) string {
	if c.Domain == "" {
		return ""
	}
	return strings.TrimSpace("domain " + c.Domain + " " + c.Disk)
}
