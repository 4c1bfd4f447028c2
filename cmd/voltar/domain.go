package main

// The translation of the config into what the domain packages take: the
// report's outputs, retention policies, S3 settings, encryption
// recipients, the writer settings, the dump targets, and the volume selection with a snapshotter for each
// volume. Nothing outside cmd/voltar reads the config.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/cleanup"
	"voltar/internal/codec"
	"voltar/internal/config"
	"voltar/internal/crypt"
	"voltar/internal/domain"
	"voltar/internal/dump"
	"voltar/internal/fail"
	"voltar/internal/folder"
	"voltar/internal/lock"
	"voltar/internal/nightly"
	"voltar/internal/objio"
	"voltar/internal/prune"
	"voltar/internal/report"
	"voltar/internal/retention"
	"voltar/internal/signing"
	"voltar/internal/store"
	"voltar/internal/store/s3"
	"voltar/internal/sysexec"
	"voltar/internal/volume"
	"voltar/internal/volume/image"
	"voltar/internal/volume/lvm"
	"voltar/internal/volume/qcow2"
)

// outputs is where the report of `voltar run` goes, from report: in the
// config; a mail setting that cannot work is a usage error before the run.
func (a *app) outputs() (report.Outputs, error) {
	r := a.cfg.Report
	m := r.Mail
	out := report.Outputs{
		Text: a.stdout, JSONFile: r.JSONFile, PrometheusTextfile: r.PrometheusTextfile,
		Mail: report.MailConfig{
			Host: m.Host, Port: m.Port, TLS: m.TLS, Username: m.Username,
			PasswordFile: m.PasswordFile, PasswordEnv: m.PasswordEnv,
			From: m.From, To: m.To, Timeout: m.Timeout, InsecureSkipVerify: m.InsecureSkipVerify,
		},
		MailOnlyOnFailure: m.OnlyOnFailure, Logger: a.log,
	}
	if out.Mail.Host != "" {
		if err := out.Mail.Validate(); err != nil {
			return out, fail.Usage(fmt.Errorf("report.mail: %w", err))
		}
	}
	return out, nil
}

// policyOf is the retention policy r configures and the time zone it
// counts days in; key names it in errors.
func policyOf(r config.Retention, key string) (retention.Policy, *time.Location, error) {
	p := retention.Policy{KeepDays: r.KeepDays, KeepLast: r.KeepLast, KeepDaily: r.KeepDaily,
		KeepWeekly: r.KeepWeekly, KeepMonthly: r.KeepMonthly, IncompleteGrace: r.IncompleteGrace}
	if err := p.Validate(); err != nil {
		return p, nil, fmt.Errorf("%s: %w", key, err)
	}
	loc := time.Local
	if r.TimeZone != "" {
		l, err := time.LoadLocation(r.TimeZone)
		if err != nil {
			return p, nil, fmt.Errorf("%s.time_zone: %w", key, err)
		}
		loc = l
	}
	return p, loc, nil
}

// pruneOptions is the global policy plus each dump's own.
func (a *app) pruneOptions(dryRun bool) (prune.Options, error) {
	pol, loc, err := policyOf(a.cfg.Retention, "retention")
	if err != nil {
		return prune.Options{}, fail.Usage(err)
	}
	type policy struct {
		p   retention.Policy
		loc *time.Location
	}
	own := map[string]policy{}
	for _, d := range a.cfg.Dumps {
		if d.Retention == nil {
			continue
		}
		p, l, err := policyOf(d.EffectiveRetention(a.cfg.Retention), "dumps "+d.Name+" retention")
		if err != nil {
			return prune.Options{}, fail.Usage(err)
		}
		own[d.Name] = policy{p, l}
	}
	return prune.Options{
		Policy: pol, Loc: loc, DryRun: dryRun, Logger: a.log,
		PolicyFor: func(group, volume string) (retention.Policy, *time.Location, bool) {
			if group != dump.Group {
				return retention.Policy{}, nil, false
			}
			p, ok := own[volume]
			return p.p, p.loc, ok
		},
	}, nil
}

// lvm returns the LVM snapshotter configured by the config, one per
// command.
func (a *app) lvm() (*lvm.Snapshotter, error) {
	if a.lvmSnap != nil {
		return a.lvmSnap, nil
	}
	if _, err := exec.LookPath("lvcreate"); err != nil {
		return nil, fail.Hint(fmt.Errorf("LVM tools not found"), "install lvm2 to back up logical volumes")
	}
	pol, err := lvm.ParsePolicy(a.cfg.LVM.SnapshotSize)
	if err != nil {
		return nil, fail.Usage(fmt.Errorf("lvm.snapshot_size: %w", err))
	}
	a.lvmSnap = &lvm.Snapshotter{Runner: sysexec.Exec{}, Policy: pol, Logger: a.log, Scope: backup.Scope(a.cfg.RuntimeDir), LockDir: lock.DefaultVolumeDir}
	return a.lvmSnap, nil
}

// images returns the image snapshotter: clones go next to each image or,
// where no reflink is possible, into the scratch directory.
func (a *app) images() *image.Snapshotter {
	s := &image.Snapshotter{Scratch: a.cfg.Scratch(), Scope: backup.Scope(a.cfg.RuntimeDir), Logger: a.log}
	for _, im := range a.cfg.Images {
		s.Dirs = append(s.Dirs, filepath.Dir(im.Path))
	}
	return s
}

// qcow2 returns the qcow2 snapshotter, one per command: overlays go into
// the scratch directory, exports under the runtime directory.
func (a *app) qcow2() *qcow2.Snapshotter {
	if a.qcowSnap == nil {
		a.qcowSnap = &qcow2.Snapshotter{Scratch: a.cfg.Scratch(), Scope: backup.Scope(a.cfg.RuntimeDir),
			RuntimeDir: a.cfg.RuntimeDir, Logger: a.log}
	}
	return a.qcowSnap
}

// resolveImage turns the path of an image file into a volume: a qcow2
// image by its header (whatever its name), else a raw image.
func resolveImage(path string, offline bool) (volume.Volume, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		if ok, err := qcow2.IsQcow2(path); err == nil && ok {
			return qcow2.Resolve(path, offline)
		}
	}
	return image.Resolve(path, offline)
}

// selection lists what the config selects, with reasons for the rest.
// A configured source that cannot be backed up (a volume group that does
// not exist or cannot be listed, an image file that is gone) is selected
// but missing: the operator asked for it, so `run` fails it rather than
// dropping it. Only a config error or a cancel is an error here.
func (a *app) selection(ctx context.Context) ([]candidate, []volume.Volume, error) {
	cs, vols, _, err := a.selectAll(ctx)
	return cs, vols, err
}

// selectAll is selection plus the disks of the selected libvirt domains.
func (a *app) selectAll(ctx context.Context) ([]candidate, []volume.Volume, []domainDisk, error) {
	var out []candidate
	var vols []volume.Volume
	if vgs := a.cfg.LVM.VolumeGroups; len(vgs) > 0 {
		// Without the LVM tools every configured group is missing, and
		// the images are still backed up; a bad lvm: setting is a config
		// error.
		s, lerr := a.lvm()
		if fail.IsUsage(lerr) {
			return nil, nil, nil, lerr
		}
		for _, g := range vgs {
			err := lerr
			var cs []lvm.Candidate
			if err == nil {
				// One VG at a time, so that one that fails does not
				// hide the others.
				cs, err = s.List(ctx, []string{g}, lvm.Filter{Include: a.cfg.LVM.Include, Exclude: a.cfg.LVM.Exclude})
			}
			if ctx.Err() != nil {
				return nil, nil, nil, ctx.Err()
			}
			if err != nil {
				out = append(out, missingVG(g, err))
				continue
			}
			for _, c := range cs {
				out = append(out, candidate{Volume: c.Volume.ID(), Kind: c.Volume.Kind, Path: c.Volume.Path, Size: c.Volume.Size, Selected: c.Selected, Reason: c.Reason})
				if c.Selected {
					vols = append(vols, c.Volume)
				}
			}
		}
	}
	for _, im := range a.cfg.Images {
		v, err := resolveImage(im.Path, im.Offline)
		if err != nil {
			out = append(out, missingImage(im.Path, err))
			continue
		}
		out = append(out, candidate{Volume: v.ID(), Kind: v.Kind, Format: v.Format, Path: v.Path, Size: v.Size, Selected: true})
		vols = append(vols, v)
	}
	ids := map[string]bool{}
	for _, v := range vols {
		ids[v.ID()] = true
	}
	dcs, disks, err := a.domainSelection(ctx, ids)
	if err != nil {
		return nil, nil, nil, err
	}
	out = append(out, dcs...)
	for i := range out {
		out[i].Isolation = a.cfg.IsolationFor(out[i].Volume)
	}
	return out, vols, disks, nil
}

// missingVG is the candidate of a configured volume group that cannot be
// listed. Its ID <vg>/* stands for every volume of the group: the group's
// own backups are not reported as unselected while it fails.
func missingVG(vg string, err error) candidate {
	hint := fmt.Sprintf("lvm.volume_groups lists %s, but `lvs %s` fails: see its message, and fix LVM or the config", vg, vg)
	switch {
	case errors.Is(err, lvm.ErrNotFound):
		hint = fmt.Sprintf("lvm.volume_groups lists %s: activate it (vgchange -ay %s; vgs shows the groups here) or remove it from lvm.volume_groups", vg, vg)
	case len(fail.Hints(err)) > 0:
		hint = fail.Hints(err)[0]
	}
	return missingCandidate(vg+"/*", volume.KindLVM, "", fail.Hint(errors.New(err.Error()), "%s", hint))
}

// missingImage is the candidate of an images: entry that is not a usable
// image file. Its ID is what its backups are stored under. The error of
// image.Resolve is kept without its hint, which speaks of command-line
// arguments.
func missingImage(path string, err error) candidate {
	if _, serr := os.Stat(path); serr == nil && len(fail.Hints(err)) > 0 {
		// The file is there; what is wrong is in it (a qcow2 image's
		// backing file is missing): its own hint says what to do.
		return missingCandidate("image/"+filepath.Base(path), volume.KindImage, path, fail.Hint(errors.New(err.Error()), "%s", fail.Hints(err)[0]))
	}
	return missingCandidate("image/"+filepath.Base(path), volume.KindImage, path, fail.Hint(errors.New(err.Error()),
		"images: lists %s: bring the file back (a deleted VM, a typo in the path, an unmounted share?) or remove it from images:", path))
}

func missingCandidate(id, kind, path string, err error) candidate {
	return candidate{Volume: id, Kind: kind, Path: path, Size: -1, Selected: true, Missing: true,
		Reason: err.Error(), Hints: fail.Hints(err), err: err}
}

// excludesFor merges the global, per-volume and command-line patterns.
func (a *app) excludesFor(v volume.Volume, extra []string) []string {
	out := append([]string{}, a.cfg.Excludes...)
	out = append(out, a.cfg.VolumeExcludes[v.ID()]...)
	return append(out, extra...)
}

// override amends the config with the flags given on the command line:
// the store (--to) and the compression (--compress, at its default level).
func (a *app) override(to, compress *string) error {
	if to != nil {
		a.cfg.Store.Path = *to
	}
	if compress != nil {
		if !codec.Valid(*compress) {
			return fail.Usage(fmt.Errorf("--compress %q: want zstd, gzip or none", *compress))
		}
		a.cfg.Compression, a.cfg.CompressionLevel = *compress, 0
	}
	return nil
}

// resolveAll resolves every VOLUME argument before anything is touched,
// so a typo in the third does not leave the first two half done.
func (a *app) resolveAll(ctx context.Context, args []string, offline bool) ([]volume.Volume, []volume.Snapshotter, error) {
	var vols []volume.Volume
	var snaps []volume.Snapshotter
	for _, arg := range args {
		v, s, err := a.resolve(ctx, arg, offline)
		if err != nil {
			return nil, nil, err
		}
		for _, o := range vols {
			if o.ID() == v.ID() {
				return nil, nil, fail.Usage(fail.Hint(fmt.Errorf("%s and %s are both the volume %s", o.Path, v.Path, v.ID()),
					"back up one at a time only if they are the same volume; image files need distinct names"))
			}
		}
		vols = append(vols, v)
		snaps = append(snaps, s)
	}
	return vols, snaps, nil
}

// resolve turns a VOLUME argument into a volume and the snapshotter for it.
func (a *app) resolve(ctx context.Context, arg string, offline bool) (volume.Volume, volume.Snapshotter, error) {
	if isLVMSpec(arg) {
		s, err := a.lvm()
		if err != nil {
			return volume.Volume{}, nil, err
		}
		v, err := s.Resolve(ctx, arg)
		if errors.Is(err, lvm.ErrNotFound) || errors.Is(err, lvm.ErrNotVolume) {
			return volume.Volume{}, nil, fail.Usage(err) // the argument is wrong
		}
		if err != nil {
			return volume.Volume{}, nil, fail.Hint(err, "LVM failed to list the volume group; run `lvs %s` to see why, and retry", strings.SplitN(strings.TrimPrefix(arg, "/dev/"), "/", 2)[0])
		}
		return v, s, nil
	}
	for _, im := range a.cfg.Images {
		if im.Path == arg {
			offline = offline || im.Offline
		}
	}
	v, err := resolveImage(arg, offline)
	if err != nil {
		return volume.Volume{}, nil, err
	}
	s, _ := a.snapshotter(v)
	return v, s, nil
}

// snapshotter returns what snapshots v.
func (a *app) snapshotter(v volume.Volume) (volume.Snapshotter, error) {
	if v.Kind == volume.KindLVM {
		return a.lvm()
	}
	if v.Format == volume.FormatQcow2 {
		return a.qcow2(), nil
	}
	return a.images(), nil
}

// isLVMSpec tells vg/lv and /dev/vg/lv from image paths: an existing regular
// file is always an image.
func isLVMSpec(arg string) bool {
	if fi, err := os.Stat(arg); err == nil && fi.Mode().IsRegular() {
		return false
	}
	if strings.HasPrefix(arg, "/dev/") {
		return strings.Count(strings.TrimPrefix(arg, "/dev/"), "/") == 1 && !strings.HasPrefix(arg, "/dev/loop")
	}
	return !strings.HasPrefix(arg, "/") && !strings.HasPrefix(arg, ".") && strings.Count(arg, "/") == 1
}

func hasLVM(vols []volume.Volume) bool {
	for _, v := range vols {
		if v.Kind == volume.KindLVM {
			return true
		}
	}
	return false
}

// recipients returns the public keys to encrypt to, nil when encryption:
// configures none. Bad keys and unreadable files are usage errors.
func (a *app) recipients() (*crypt.Recipients, error) {
	e := a.cfg.Encryption
	if !e.Enabled() {
		return nil, nil
	}
	r, err := crypt.NewRecipients(e.Keys(), e.RecipientsFile)
	if err != nil {
		return nil, fail.Usage(fail.Hint(fmt.Errorf("encryption: %w", err),
			"recipients are public keys: age1... as `age-keygen -y KEYFILE` prints it, or ssh-ed25519/ssh-rsa lines of .pub files; see encryption: in examples/voltar.yaml"))
	}
	return r, nil
}

// signer is the manifest signer of signing.key_file, nil when none is
// configured. It signs once to check the key, so a bad key stops a command
// before it snapshots anything.
func (a *app) signer(ctx context.Context) (folder.Signer, error) {
	if a.cfg.Signing.KeyFile == "" {
		return nil, nil
	}
	s, err := signing.NewSigner(ctx, a.cfg.Signing.KeyFile)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// verifier checks manifest signatures against signing.allowed_signers,
// nil when none is configured.
func (a *app) verifier() (*signing.Verifier, error) {
	if a.cfg.Signing.AllowedSigners == "" {
		return nil, nil
	}
	return signing.NewVerifier(a.cfg.Signing.AllowedSigners)
}

// resolveSigned finds the backup id names and checks its manifest's
// signature (checkSignature): what every command that reads a backup's
// data starts with.
func (a *app) resolveSigned(ctx context.Context, st store.Store, host, id string) (*catalog.Backup, error) {
	b, err := catalog.Resolve(ctx, st, host, id)
	if err != nil {
		return nil, err
	}
	if err := a.checkSignature(ctx, st, b); err != nil {
		return nil, err
	}
	return b, nil
}

// checkSignature fails a backup about to be restored whose manifest is not
// signed by an allowed signer, when signing.allowed_signers is set.
func (a *app) checkSignature(ctx context.Context, st store.Store, b *catalog.Backup) error {
	v, err := a.verifier()
	if err != nil || v == nil {
		return err
	}
	err = v.Check(ctx, st, b)
	var se *signing.Error
	if errors.As(err, &se) {
		return fail.Hint(err, "%s", v.Hint())
	}
	return err
}

// s3Config is the S3 store s3://bucket/prefix under the S3 settings of
// the config's store section, also when the name came from --to or a dead
// run's journal.
func (a *app) s3Config(name string) (s3.Config, error) {
	set, err := a.cfg.Store.S3(name)
	if err != nil {
		return s3.Config{}, fail.Usage(fmt.Errorf("store %s: %w", name, err))
	}
	creds, err := s3.LoadCredentials(set.AccessKeyFile, set.SecretKeyFile, os.Getenv, func(file string) {
		a.log.Warn("S3 key file is readable by others; chmod 0600 it", "file", file)
	})
	if err != nil {
		return s3.Config{}, fmt.Errorf("store %s: %w", name, err)
	}
	return s3.Config{
		Endpoint: set.Endpoint, Secure: set.Secure, Region: set.Region,
		Bucket: set.Bucket, Prefix: set.Prefix, Credentials: creds, CAFile: set.CAFile,
		VirtualHost: !set.PathStyle, PartSize: set.PartSize,
	}, nil
}

// jobs is what `voltar run` backs up: every selected volume with its
// snapshotter and excludes, and the configured sources that cannot be
// backed up, which the run reports as failed.
func (a *app) jobs(ctx context.Context) ([]nightly.Job, []nightly.Missing, map[string]domain.Options, error) {
	cs, vols, disks, err := a.selectAll(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var missing []nightly.Missing
	for _, c := range cs {
		if c.Missing {
			missing = append(missing, nightly.Missing{ID: c.Volume, Err: c.err})
		}
	}
	var jobs []nightly.Job
	for _, v := range vols {
		snap, err := a.snapshotter(v)
		if err != nil {
			return nil, nil, nil, err
		}
		jobs = append(jobs, nightly.Job{Volume: v, Snapshotter: snap, Excludes: a.excludesFor(v, nil),
			BtrfsSnapshots: a.cfg.IncludeBtrfsSnapshots(v.ID()), Hooks: a.hooksFor(v), Isolation: a.cfg.IsolationFor(v.ID()),
			Incremental: a.incrementalFor(v, false)})
	}
	djobs, dopts := a.domainJobs(disks)
	return append(jobs, djobs...), missing, dopts, nil
}

// incrementalFor is the incremental setting of volume v's backup; full
// forces a full one. An encrypted store's increments read their parent's
// indexes with the configured identity; without one every backup is full
// (backup.Volume says so in the log).
func (a *app) incrementalFor(v volume.Volume, full bool) backup.Incremental {
	c := a.cfg.IncrementalFor(v.ID())
	inc := backup.Incremental{MaxChain: c.MaxChain, FullEvery: c.FullEvery, Full: full}
	if inc.MaxChain > 0 && a.cfg.Encryption.Enabled() {
		ids, err := a.identities()
		if err != nil {
			a.log.Warn("incremental backups of an encrypted store need its identity; backing up in full", "err", err)
		}
		inc.Identities = ids
	}
	return inc
}

// writerSettings is what every backup and dump of a command shares, built
// in one place from the config and what the command opened.
func (a *app) writerSettings(st store.Store, host string, rcpt *crypt.Recipients, sig folder.Signer, j *cleanup.Journal) folder.Settings {
	return folder.Settings{Signer: sig,
		Store: st, Host: host,
		Encoding: objio.Encoding{Compression: a.cfg.Compression, Level: a.cfg.CompressionLevel, Threads: a.cfg.Threads, Recipients: rcpt},
		Version:  version, Logger: a.log, Journal: j, CleanupTimeout: a.cfg.CleanupTimeout,
	}
}

// dumpTargets translates the config's dumps: entries for package dump.
func dumpTargets(ds []config.Dump) []dump.Target {
	out := make([]dump.Target, 0, len(ds))
	for _, d := range ds {
		out = append(out, dump.Target{
			Name: d.Name, Host: d.Host, Port: d.Port, User: d.User, KeyFile: d.KeyFile,
			KnownHosts: d.KnownHosts, AcceptNewHostKey: d.AcceptNewHostKey, Command: d.Command,
			CredentialsFile: d.CredentialsFile, Timeout: d.Timeout,
		})
	}
	return out
}
