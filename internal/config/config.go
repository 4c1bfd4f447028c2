// Package config reads voltar's YAML configuration. Parsing has no side
// effects: Default, Parse and Validate only build and check values.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"go.yaml.in/yaml/v3"

	"voltar/internal/codec"
)

// DefaultPath is read when --config is not given.
const DefaultPath = "/etc/voltar/voltar.yaml"

// Config is the whole configuration file.
type Config struct {
	// Store is where backups go: a directory or s3://bucket/prefix.
	Store string `yaml:"store"`
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

	Compression      string `yaml:"compression"`
	CompressionLevel int    `yaml:"compression_level"`
	// Threads for compression; 0 = all cores.
	Threads int `yaml:"threads"`
	// Excludes are glob patterns left out of every filesystem archive.
	Excludes []string `yaml:"excludes"`
	// VolumeExcludes adds patterns per volume, keyed by "<vg>/<lv>" or "image/<file name>".
	VolumeExcludes map[string][]string `yaml:"volume_excludes"`
	// Concurrency is how many volumes are backed up at once.
	Concurrency int `yaml:"concurrency"`
	// CleanupTimeout bounds the release of snapshots, mounts and loop devices.
	CleanupTimeout time.Duration `yaml:"cleanup_timeout"`
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
		LVM: LVM{
			Include:      []string{"volume-*"},
			SnapshotSize: "100%ORIGIN",
		},
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

// Error is a configuration file that cannot be used.
type Error struct {
	Path string
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("config %s: %v", e.Path, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Validate checks values that parse but make no sense.
func (c *Config) Validate() error {
	var errs []error
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
	if c.CleanupTimeout <= 0 {
		errs = append(errs, fmt.Errorf("cleanup_timeout must be positive"))
	}
	for _, p := range append(append([]string{}, c.Excludes...), c.LVM.Include...) {
		if !doublestar.ValidatePattern(p) {
			errs = append(errs, fmt.Errorf("pattern %q is not a valid glob", p))
		}
	}
	for _, p := range c.LVM.Exclude {
		if !doublestar.ValidatePattern(p) {
			errs = append(errs, fmt.Errorf("pattern %q is not a valid glob", p))
		}
	}
	for k, ps := range c.VolumeExcludes {
		if strings.Count(k, "/") != 1 {
			errs = append(errs, fmt.Errorf("volume_excludes key %q: want <vg>/<volume> or image/<file name>", k))
		}
		for _, p := range ps {
			if !doublestar.ValidatePattern(p) {
				errs = append(errs, fmt.Errorf("volume_excludes %s: pattern %q is not a valid glob", k, p))
			}
		}
	}
	for i, im := range c.Images {
		if im.Path == "" {
			errs = append(errs, fmt.Errorf("images[%d]: path is empty", i))
		}
	}
	for _, d := range []struct{ key, val string }{{"runtime_dir", c.RuntimeDir}, {"state_dir", c.StateDir}} {
		if !strings.HasPrefix(d.val, "/") {
			errs = append(errs, fmt.Errorf("%s %q must be an absolute path", d.key, d.val))
		}
	}
	return errors.Join(errs...)
}

// Scratch is the directory for full image copies.
func (c *Config) Scratch() string {
	if c.ScratchDir != "" {
		return c.ScratchDir
	}
	return strings.TrimSuffix(c.StateDir, "/") + "/scratch"
}

// HostName is the configured host or the machine's short host name.
func (c *Config) HostName() (string, error) {
	if c.Host != "" {
		return c.Host, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("host name: %w", err)
	}
	h, _, _ = strings.Cut(h, ".")
	return h, nil
}
