// Package config reads voltar's YAML configuration. Parsing has no side
// effects: Default, Parse and Validate only build and check values.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"go.yaml.in/yaml/v3"

	"voltar/internal/codec"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/layout"
)

// DefaultPath is read when --config is not given.
const DefaultPath = "/etc/voltar/voltar.yaml"

// Config is the whole configuration file.
type Config struct {
	// Store is where backups go. In YAML either a plain path or a mapping
	// with path and the settings for a local or an S3 store.
	Store Store `yaml:"store"`
	// Host names this machine in the store; default: the short host name.
	Host string `yaml:"host"`
	// RuntimeDir holds the lock and the private mount points.
	RuntimeDir string `yaml:"runtime_dir"`
	// StateDir holds the journals of running backups, so that a later run can
	// undo what a killed one left behind, and copies of images.
	StateDir string `yaml:"state_dir"`
	// ScratchDir receives full copies of image volumes whose filesystem
	// cannot reflink; default <state_dir>/scratch.
	ScratchDir string `yaml:"scratch_dir"`

	LVM    LVM     `yaml:"lvm"`
	Images []Image `yaml:"images"`
	// Domains are libvirt domains, by name or glob (web*), whose disks
	// are backed up together: every disk snapshotted at one instant,
	// with the guest's filesystems frozen when its qemu-guest-agent
	// answers, then each archived as the backup of its volume (an LV
	// disk as the LV, a file disk as an image).
	Domains []string `yaml:"domains"`
	// LibvirtSocket is libvirtd's socket (qemu:///system); default
	// /var/run/libvirt/libvirt-sock.
	LibvirtSocket string `yaml:"libvirt_socket"`
	// FreezeTimeout bounds a guest's freeze (default 10s); a freeze that
	// takes longer is given up and the guest thawed.
	FreezeTimeout time.Duration `yaml:"freeze_timeout"`
	// RequireFreeze fails a domain whose guest cannot be frozen (no agent,
	// a freeze that fails or times out) instead of backing it up
	// crash-consistent.
	RequireFreeze bool `yaml:"require_freeze"`

	Compression      string `yaml:"compression"`
	CompressionLevel int    `yaml:"compression_level"`
	// Threads for compression; 0 = all cores, at most codec.MaxAutoThreads.
	Threads int `yaml:"threads"`
	// Excludes are glob patterns left out of every filesystem archive.
	Excludes []string `yaml:"excludes"`
	// VolumeExcludes adds patterns per volume, keyed by "<vg>/<lv>" or "image/<file name>".
	VolumeExcludes map[string][]string `yaml:"volume_excludes"`
	// BtrfsSnapshots: "skip" (default) leaves the contents of read-only
	// btrfs snapshots out (listed as skipped), "include" archives them.
	BtrfsSnapshots string `yaml:"btrfs_snapshots"`
	// VolumeBtrfsSnapshots overrides BtrfsSnapshots per volume, keyed like
	// VolumeExcludes.
	VolumeBtrfsSnapshots map[string]string `yaml:"volume_btrfs_snapshots"`
	// Isolation is where guest filesystems are parsed: "kernel" (default)
	// mounts them in this host's kernel; "sandbox" parses them in a
	// User-Mode Linux kernel run as an unprivileged user, so a crafted
	// filesystem cannot attack the host's kernel (multi-tenant hosts).
	Isolation string `yaml:"isolation"`
	// VolumeIsolation overrides Isolation per volume, keyed like
	// VolumeExcludes.
	VolumeIsolation map[string]string `yaml:"volume_isolation"`
	// Incremental makes backups build on the volume's previous one
	// (GNU tar incremental archives); VolumeIncremental overrides it per
	// volume, keyed like VolumeExcludes.
	Incremental       Incremental            `yaml:"incremental"`
	VolumeIncremental map[string]Incremental `yaml:"volume_incremental"`
	// BootPartitions: "files" (default) archives a filesystem that a
	// bootloader points into by block numbers (syslinux/extlinux, LILO)
	// as files and warns that the bootloader must be reinstalled after a
	// restore; "raw" stores such a filesystem raw, so it boots as it was.
	BootPartitions string `yaml:"boot_partitions"`
	// Hooks run around every volume's snapshot; VolumeHooks per volume,
	// keyed like VolumeExcludes, replace them hook by hook (hooks.go).
	Hooks       Hooks            `yaml:"hooks"`
	VolumeHooks map[string]Hooks `yaml:"volume_hooks"`
	// Concurrency is how many volumes are backed up at once.
	Concurrency int `yaml:"concurrency"`
	// CleanupTimeout bounds the release of snapshots, mounts and loop devices.
	CleanupTimeout time.Duration `yaml:"cleanup_timeout"`

	Retention Retention `yaml:"retention"`
	Report    Report    `yaml:"report"`
	Dumps     []Dump    `yaml:"dumps"`
	// DumpsWhen: run the dumps "before" (default) or "after" the volumes.
	DumpsWhen string `yaml:"dumps_when"`
	// DumpConcurrency: dumps running at once.
	DumpConcurrency int `yaml:"dump_concurrency"`

	// Encryption age-encrypts every stored object when it has recipients.
	Encryption Encryption `yaml:"encryption"`
	// Signing signs every manifest and requires good signatures.
	Signing Signing `yaml:"signing"`
}

// Signing configures OpenSSH signatures of manifests (manifest.json.sig,
// `ssh-keygen -Y sign -n voltar-manifest`). Backups need the private key;
// verify and restore need only the allowed-signers file.
type Signing struct {
	// KeyFile is the OpenSSH private key (mode 0600, no passphrase) that
	// backup, run and dump sign every manifest with.
	KeyFile string `yaml:"key_file"`
	// AllowedSigners is an allowed-signers file (ssh-keygen(1)); when
	// set, verify and restore fail every backup whose manifest is not
	// signed by a key it lists.
	AllowedSigners string `yaml:"allowed_signers"`
}

// Encryption configures age encryption of archives, raw partitions and
// dumps. Backups need only the recipients (public keys); verify (of the
// content) and restore need the identity (the private key).
type Encryption struct {
	// Recipients are public keys: age (age1...), or SSH (ssh-ed25519,
	// ssh-rsa) as in a .pub file.
	Recipients []Recipient `yaml:"recipients"`
	// RecipientsFile names files in age's recipients-file format (one key
	// per line, # comments); in YAML a path or a list of paths.
	RecipientsFile Paths `yaml:"recipients_file"`
	// IdentityFile holds the private key(s) verify and restore decrypt
	// with; the environment variable VOLTAR_AGE_IDENTITY_FILE overrides it.
	IdentityFile string `yaml:"identity_file"`
}

// Enabled reports whether backups are to be encrypted.
func (e Encryption) Enabled() bool { return len(e.Recipients) > 0 || len(e.RecipientsFile) > 0 }

// Keys returns the recipients given inline.
func (e Encryption) Keys() []string {
	var out []string
	for _, r := range e.Recipients {
		out = append(out, r.Key)
	}
	return out
}

// Recipient is one public key of encryption.recipients, with its line in
// the file for error messages.
type Recipient struct {
	Key  string `yaml:"-"`
	Line int    `yaml:"-"`
}

// UnmarshalYAML takes a scalar and remembers its line.
func (r *Recipient) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: encryption.recipients: want a list of public keys (strings)", n.Line)
	}
	r.Key, r.Line = n.Value, n.Line
	return nil
}

// Paths is a list of paths that YAML may also give as a single string.
type Paths []string

// UnmarshalYAML accepts `key: /path` as well as a list.
func (p *Paths) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "" {
			*p = nil
		} else {
			*p = Paths{n.Value}
		}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*p = list
	return nil
}

// Dump is a database dump taken over SSH inside an instance.
type Dump struct {
	Name string `yaml:"name"`
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	User string `yaml:"user"`
	// KeyFile is the private key voltar logs in with.
	KeyFile string `yaml:"key_file"`
	// KnownHosts must hold the instance's host key: host keys are always
	// verified.
	KnownHosts string `yaml:"known_hosts"`
	// AcceptNewHostKey trusts and records an unknown host's key on first
	// contact (never a changed one).
	AcceptNewHostKey bool `yaml:"accept_new_host_key"`
	// Command writes the dump to stdout; default mysqldump of everything.
	Command string `yaml:"command"`
	// CredentialsFile is sent over the SSH session's stdin, never in argv:
	// e.g. a [client] option file for --defaults-extra-file=/dev/stdin.
	CredentialsFile string        `yaml:"credentials_file"`
	Timeout         time.Duration `yaml:"timeout"`
	// Retention overrides the global retention for this dump.
	Retention *Retention `yaml:"retention"`
}

// EffectiveRetention is the policy for d's dumps: its own when set, else
// global. An own policy inherits incomplete_grace and time_zone when it
// leaves them out.
func (d Dump) EffectiveRetention(global Retention) Retention {
	if d.Retention == nil {
		return global
	}
	r := *d.Retention
	if r.IncompleteGrace == 0 {
		r.IncompleteGrace = global.IncompleteGrace
	}
	if r.TimeZone == "" {
		r.TimeZone = global.TimeZone
	}
	return r
}

// Store says where backups go.
type Store struct {
	// Path is a directory or s3://bucket/prefix.
	Path string `yaml:"path"`
	// RequireMount: the path (or the directory given here) must be a mount
	// point, so an unmounted backup disk never fills the root filesystem.
	// Local stores only.
	RequireMount string `yaml:"require_mount"`
	// MinFreePercent: `run` refuses to start when less is free. Local
	// stores only.
	MinFreePercent float64 `yaml:"min_free_percent"`

	// The rest applies to s3:// stores (see S3): the path's, or one named
	// by `backup --to s3://...` next to a local path.

	// Endpoint is the S3 server: host:port, or a URL http(s)://host:port.
	Endpoint string `yaml:"endpoint"`
	// Region is sent in request signatures; "" = us-east-1, which Ceph
	// RGW, MinIO and versitygw accept by default.
	Region string `yaml:"region"`
	// AccessKeyFile and SecretKeyFile hold the keys (mode 0600). When
	// unset, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the
	// environment are used. Never in this file, never on the command line.
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKeyFile string `yaml:"secret_key_file"`
	// TLS: https (nil = default: on, or the endpoint URL's scheme). Plain
	// http only to a loopback endpoint.
	TLS *bool `yaml:"tls"`
	// CAFile adds PEM certificates to the system's trusted roots.
	CAFile string `yaml:"ca_file"`
	// Addressing: "path" (default, bucket in the URL path) or
	// "virtual-host" (bucket in the host name).
	Addressing string `yaml:"addressing"`
	// PartSize of multipart uploads, e.g. "16M" (default). An upload
	// buffers two parts, and one object holds at most 10000 parts.
	PartSize string `yaml:"part_size"`
}

// UnmarshalYAML accepts `store: /path` as well as the mapping.
func (s *Store) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		s.Path = n.Value
		return nil
	}
	if n.Kind == yaml.MappingNode {
		// n.Decode does not inherit KnownFields; check the keys here.
		for i := 0; i < len(n.Content); i += 2 {
			switch k := n.Content[i].Value; k {
			case "path", "require_mount", "min_free_percent", "endpoint", "region", "access_key_file",
				"secret_key_file", "tls", "ca_file", "addressing", "part_size":
			default:
				return fmt.Errorf("line %d: field %s not found in type config.Store", n.Content[i].Line, k)
			}
		}
	}
	type plain Store
	p := plain(*s)
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = Store(p)
	return nil
}

// Incremental is when a backup stores only what changed since the
// previous one. The zero value makes every backup full.
type Incremental struct {
	// MaxChain is how many increments follow a full backup before the
	// next full; 0 (default) makes every backup full.
	MaxChain int `yaml:"max_chain"`
	// FullEvery: a full backup at least this often, e.g. 168h; 0: no bound.
	FullEvery time.Duration `yaml:"full_every"`
}

// IncrementalFor returns the incremental setting of the volume id
// ("<vg>/<lv>", "image/<file name>").
func (c *Config) IncrementalFor(id string) Incremental {
	if v, ok := c.VolumeIncremental[id]; ok {
		return v
	}
	return c.Incremental
}

func (i Incremental) validate(key string) []error {
	var errs []error
	if i.MaxChain < 0 {
		errs = append(errs, fmt.Errorf("%s.max_chain %d: must not be negative (0 makes every backup full)", key, i.MaxChain))
	}
	if i.FullEvery < 0 {
		errs = append(errs, fmt.Errorf("%s.full_every %s: must not be negative", key, i.FullEvery))
	}
	return errs
}

// Retention decides which backups `run` and `prune` delete.
type Retention struct {
	KeepDays        int           `yaml:"keep_days"`
	KeepLast        int           `yaml:"keep_last"`
	KeepDaily       int           `yaml:"keep_daily"`
	KeepWeekly      int           `yaml:"keep_weekly"`
	KeepMonthly     int           `yaml:"keep_monthly"`
	IncompleteGrace time.Duration `yaml:"incomplete_grace"`
	// TimeZone for daily/weekly/monthly buckets; default the host's.
	TimeZone string `yaml:"time_zone"`
}

// Report configures what `run` tells about itself.
type Report struct {
	JSONFile           string `yaml:"json_file"`
	PrometheusTextfile string `yaml:"prometheus_textfile"`
	Mail               Mail   `yaml:"mail"`
}

// Mail is the SMTP report.
type Mail struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// TLS: starttls (default), tls (implicit), or none (loopback relays only).
	TLS          string        `yaml:"tls"`
	Username     string        `yaml:"username"`
	PasswordFile string        `yaml:"password_file"`
	PasswordEnv  string        `yaml:"password_env"`
	From         string        `yaml:"from"`
	To           []string      `yaml:"to"`
	Timeout      time.Duration `yaml:"timeout"`
	// InsecureSkipVerify accepts any server certificate.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// OnlyOnFailure sends mail only when something failed.
	OnlyOnFailure bool `yaml:"only_on_failure"`
}

// LVM selects logical volumes and sizes their snapshots.
type LVM struct {
	VolumeGroups []string `yaml:"volume_groups"`
	Include      []string `yaml:"include"`
	Exclude      []string `yaml:"exclude"`
	SnapshotSize string   `yaml:"snapshot_size"`
}

// Image is a raw disk-image file backed up as a volume.
type Image struct {
	Path string `yaml:"path"`
	// Offline: nothing writes to the image, read it in place without a clone.
	Offline bool `yaml:"offline"`
}

// Default returns the configuration used for keys a file leaves out.
func Default() *Config {
	return &Config{
		RuntimeDir:     "/run/voltar",
		StateDir:       "/var/lib/voltar",
		Compression:    codec.Zstd,
		Concurrency:    1,
		CleanupTimeout: 2 * time.Minute,
		FreezeTimeout:  10 * time.Second,
		LVM: LVM{
			Include:      []string{"volume-*"},
			SnapshotSize: "100%ORIGIN",
		},
		Retention:       Retention{IncompleteGrace: 24 * time.Hour},
		DumpsWhen:       "before",
		BtrfsSnapshots:  "skip",
		Isolation:       "kernel",
		BootPartitions:  "files",
		DumpConcurrency: 1,
		Report:          Report{Mail: Mail{TLS: "starttls", Timeout: time.Minute}},
	}
}

// Parse reads YAML from r over the defaults. Unknown keys are errors, so a
// typo never silently falls back to a default.
func Parse(r io.Reader) (*Config, error) {
	c := Default()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return c, nil
}

// Load reads and validates the file at path. A missing file at the default
// path gives the defaults, so one-off commands work without a config.
func Load(path string, explicit bool) (*Config, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return Default(), nil
	}
	if err != nil {
		return nil, &Error{Path: path, Err: err}
	}
	defer f.Close()
	c, err := Parse(f)
	if err != nil {
		return nil, &Error{Path: path, Err: err}
	}
	if err := c.Validate(); err != nil {
		return nil, &Error{Path: path, Err: err}
	}
	return c, nil
}

// IncludeBtrfsSnapshots reports whether read-only btrfs snapshots of the
// volume id ("<vg>/<lv>", "image/<file name>") are archived.
func (c *Config) IncludeBtrfsSnapshots(id string) bool {
	if v, ok := c.VolumeBtrfsSnapshots[id]; ok {
		return v == "include"
	}
	return c.BtrfsSnapshots == "include"
}

// volumeKey checks a key of a per-volume setting (volume_excludes,
// volume_hooks, ...): "<vg>/<lv>" or "image/<file name>".
func volumeKey(setting, k string) error {
	if strings.Count(k, "/") != 1 {
		return fmt.Errorf("%s key %q: want <vg>/<volume> or image/<file name>", setting, k)
	}
	return nil
}

// IsolationFor returns the isolation ("kernel" or "sandbox") of the volume
// id ("<vg>/<lv>", "image/<file name>").
func (c *Config) IsolationFor(id string) string {
	if v, ok := c.VolumeIsolation[id]; ok {
		return v
	}
	return c.Isolation
}

// Error is a configuration file that cannot be used.
type Error struct {
	Path string
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("config %s: %v", e.Path, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Validate checks values that parse but make no sense.
// MaxThreads bounds threads: each compressor thread holds its frames in
// memory (see codec.WriterMemory), so more than this only costs memory.
const MaxThreads = 128

func (c *Config) Validate() error {
	var errs []error
	if c.Host != "" {
		if err := layout.ValidHost(c.Host); err != nil {
			errs = append(errs, fail.Hint(err, "host names this machine's folder in the store: one word like \"node-1\" or \"node-1.example.org\""))
		}
	}
	if !codec.Valid(c.Compression) {
		errs = append(errs, fmt.Errorf("compression %q: want zstd, gzip or none", c.Compression))
	}
	if c.Compression == codec.Zstd && (c.CompressionLevel < 0 || c.CompressionLevel > 22) {
		errs = append(errs, fmt.Errorf("compression_level %d: zstd takes 1..22", c.CompressionLevel))
	}
	if c.Compression == codec.Gzip && (c.CompressionLevel < 0 || c.CompressionLevel > 9) {
		errs = append(errs, fmt.Errorf("compression_level %d: gzip takes 1..9", c.CompressionLevel))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be at least 1", c.Concurrency))
	}
	if c.Threads < 0 || c.Threads > MaxThreads {
		errs = append(errs, fail.Hint(fmt.Errorf("threads %d: want 0 (all cores, at most %d) up to %d", c.Threads, codec.MaxAutoThreads, MaxThreads),
			"leave threads: 0 unless compression should use fewer cores"))
	}
	if c.CleanupTimeout <= 0 {
		errs = append(errs, fmt.Errorf("cleanup_timeout must be positive"))
	}
	for _, p := range append(append([]string{}, c.Excludes...), c.LVM.Include...) {
		if !doublestar.ValidatePattern(p) {
			errs = append(errs, fmt.Errorf("pattern %q is not a valid glob", p))
		}
	}
	if c.FreezeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("freeze_timeout must be positive"))
	}
	for _, p := range c.Domains {
		if p == "" || !doublestar.ValidatePattern(p) {
			errs = append(errs, fmt.Errorf("domains: %q is not a domain name or a valid glob", p))
		}
	}
	for _, p := range c.LVM.Exclude {
		if !doublestar.ValidatePattern(p) {
			errs = append(errs, fmt.Errorf("pattern %q is not a valid glob", p))
		}
	}
	for k, ps := range c.VolumeExcludes {
		if err := volumeKey("volume_excludes", k); err != nil {
			errs = append(errs, err)
		}
		for _, p := range ps {
			if !doublestar.ValidatePattern(p) {
				errs = append(errs, fmt.Errorf("volume_excludes %s: pattern %q is not a valid glob", k, p))
			}
		}
	}
	errs = append(errs, c.validateHooks()...)
	if c.BootPartitions != "files" && c.BootPartitions != "raw" {
		errs = append(errs, fmt.Errorf("boot_partitions %q: want files or raw", c.BootPartitions))
	}
	if c.BtrfsSnapshots != "skip" && c.BtrfsSnapshots != "include" {
		errs = append(errs, fmt.Errorf("btrfs_snapshots %q: want skip or include", c.BtrfsSnapshots))
	}
	for k, v := range c.VolumeBtrfsSnapshots {
		if err := volumeKey("volume_btrfs_snapshots", k); err != nil {
			errs = append(errs, err)
		}
		if v != "skip" && v != "include" {
			errs = append(errs, fmt.Errorf("volume_btrfs_snapshots %s: %q: want skip or include", k, v))
		}
	}
	if c.Isolation != "kernel" && c.Isolation != "sandbox" {
		errs = append(errs, fmt.Errorf("isolation %q: want kernel or sandbox", c.Isolation))
	}
	for k, v := range c.VolumeIsolation {
		if err := volumeKey("volume_isolation", k); err != nil {
			errs = append(errs, err)
		}
		if v != "kernel" && v != "sandbox" {
			errs = append(errs, fmt.Errorf("volume_isolation %s: %q: want kernel or sandbox", k, v))
		}
	}
	errs = append(errs, c.Incremental.validate("incremental")...)
	for k, v := range c.VolumeIncremental {
		if err := volumeKey("volume_incremental", k); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, v.validate("volume_incremental "+k)...)
	}
	if c.DumpsWhen != "before" && c.DumpsWhen != "after" {
		errs = append(errs, fmt.Errorf("dumps_when %q: want before or after", c.DumpsWhen))
	}
	if c.DumpConcurrency < 1 {
		errs = append(errs, fmt.Errorf("dump_concurrency %d: must be at least 1", c.DumpConcurrency))
	}
	names := map[string]bool{}
	for i, d := range c.Dumps {
		switch {
		case d.Name == "" || strings.ContainsAny(d.Name, "/ ") || d.Name == "." || d.Name == "..":
			errs = append(errs, fmt.Errorf("dumps[%d]: name %q must be a plain word (it names the store folder)", i, d.Name))
		case names[d.Name]:
			errs = append(errs, fmt.Errorf("dumps[%d]: name %q is used twice", i, d.Name))
		}
		names[d.Name] = true
		if d.Host == "" || d.User == "" || d.KeyFile == "" {
			errs = append(errs, fmt.Errorf("dumps[%d] %s: host, user and key_file are required", i, d.Name))
		}
		if d.KnownHosts == "" {
			errs = append(errs, fmt.Errorf("dumps[%d] %s: known_hosts is required: voltar always verifies host keys", i, d.Name))
		}
		if d.Timeout < 0 {
			errs = append(errs, fmt.Errorf("dumps[%d] %s: timeout must not be negative", i, d.Name))
		}
	}
	// An image volume is named by its file's base name in the store
	// (image/<name>): two files of one name would share, and prune, one
	// history.
	byName := map[string]string{}
	for i, im := range c.Images {
		if im.Path == "" {
			errs = append(errs, fmt.Errorf("images[%d]: path is empty", i))
			continue
		}
		name := filepath.Base(im.Path)
		if other, ok := byName[name]; ok {
			errs = append(errs, fail.Hint(fmt.Errorf("images[%d] %s: same file name as %s; both would be the one volume image/%s in the store", i, im.Path, other, name),
				"give the image files distinct names (e.g. web1.img, db1.img)"))
		}
		byName[name] = im.Path
	}
	for _, r := range []struct {
		key string
		n   int
	}{{"keep_days", c.Retention.KeepDays}, {"keep_last", c.Retention.KeepLast}, {"keep_daily", c.Retention.KeepDaily}, {"keep_weekly", c.Retention.KeepWeekly}, {"keep_monthly", c.Retention.KeepMonthly}} {
		if r.n < 0 {
			errs = append(errs, fmt.Errorf("retention.%s %d: must not be negative", r.key, r.n))
		}
	}
	if c.Retention.IncompleteGrace < 0 {
		errs = append(errs, fmt.Errorf("retention.incomplete_grace must not be negative"))
	}
	if c.Store.MinFreePercent < 0 || c.Store.MinFreePercent >= 100 {
		errs = append(errs, fmt.Errorf("store.min_free_percent %v: want 0..99", c.Store.MinFreePercent))
	}
	errs = append(errs, c.Store.validate()...)
	if c.Retention.TimeZone != "" {
		if _, err := time.LoadLocation(c.Retention.TimeZone); err != nil {
			errs = append(errs, fmt.Errorf("retention.time_zone: %w", err))
		}
	}
	errs = append(errs, c.Encryption.validate()...)
	for _, p := range []struct{ key, val string }{{"signing.key_file", c.Signing.KeyFile}, {"signing.allowed_signers", c.Signing.AllowedSigners}} {
		if p.val != "" && !filepath.IsAbs(p.val) {
			errs = append(errs, fmt.Errorf("%s %q must be an absolute path", p.key, p.val))
		}
	}
	for _, d := range []struct{ key, val string }{{"runtime_dir", c.RuntimeDir}, {"state_dir", c.StateDir}} {
		if !strings.HasPrefix(d.val, "/") {
			errs = append(errs, fmt.Errorf("%s %q must be an absolute path", d.key, d.val))
		}
	}
	return errors.Join(errs...)
}

// validate parses the inline recipients; files are read when used.
func (e Encryption) validate() []error {
	var errs []error
	for i, r := range e.Recipients {
		if _, _, err := crypt.ParseRecipient(r.Key); err != nil {
			where := fmt.Sprintf("encryption.recipients[%d]", i)
			if r.Line > 0 {
				where += fmt.Sprintf(" (line %d)", r.Line)
			}
			errs = append(errs, fail.Hint(fmt.Errorf("%s: %w", where, err),
				"a recipient is a public key: age1... as `age-keygen -y KEYFILE` prints it, or the ssh-ed25519/ssh-rsa line of a .pub file"))
		}
	}
	for i, f := range e.RecipientsFile {
		if strings.TrimSpace(f) == "" {
			errs = append(errs, fmt.Errorf("encryption.recipients_file[%d] is empty", i))
		}
	}
	return errs
}

// Scratch is the directory for full image copies.
func (c *Config) Scratch() string {
	if c.ScratchDir != "" {
		return c.ScratchDir
	}
	return strings.TrimSuffix(c.StateDir, "/") + "/scratch"
}

// HostName is the configured host or the machine's short host name. Both
// are held to layout.ValidHost (one safe path segment): it names the
// host's folder in the store. A name that fails it is a config error.
func (c *Config) HostName() (string, error) {
	h := c.Host
	if h == "" {
		var err error
		if h, err = os.Hostname(); err != nil {
			return "", fail.Hint(fail.Usage(fmt.Errorf("host name: %w", err)), "set host: in the config")
		}
		h, _, _ = strings.Cut(h, ".")
	}
	if err := layout.ValidHost(h); err != nil {
		what := "host"
		if c.Host == "" {
			what = "the machine's host name (the default for host:)"
		}
		return "", fail.Hint(fail.Usage(fmt.Errorf("%s: %w", what, err)),
			"set host: in the config to one word of letters, digits, '.', '_' or '-', like \"node-1\"")
	}
	return h, nil
}
