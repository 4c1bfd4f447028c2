package config

import (
	"fmt"
	"strings"
	"time"
)

// Hooks are commands run around a volume's snapshot. Each is an argv list,
// run without a shell: [/usr/local/sbin/quiesce, --volume, web1] or, for
// shell syntax, [/bin/sh, -c, "..."].
type Hooks struct {
	// PreSnapshot runs right before the snapshot; if it fails, the volume
	// fails and no snapshot is taken.
	PreSnapshot []string `yaml:"pre_snapshot"`
	// PostSnapshot runs right after the snapshot, and always once the pre
	// hook ran (after its failure, a failed snapshot, a signal).
	PostSnapshot []string `yaml:"post_snapshot"`
	// PreBackup runs before anything of the volume's backup is done; if it
	// fails, the volume fails and nothing is made.
	PreBackup []string `yaml:"pre_backup"`
	// PostBackup runs after everything of the volume's backup is done
	// (snapshot released, backup stored or not), with the outcome.
	PostBackup []string `yaml:"post_backup"`
	// Timeout bounds each hook (0: 1m); a hook still running then is
	// killed with its process group and fails.
	Timeout time.Duration `yaml:"timeout"`
}

// HooksFor returns the hooks of volume id ("<vg>/<lv>", "image/<file
// name>"): its own volume_hooks entry's hooks and timeout where it sets
// them (an empty list: none), the global hooks: otherwise.
func (c *Config) HooksFor(id string) Hooks {
	h := c.Hooks
	v, ok := c.VolumeHooks[id]
	if !ok {
		return h
	}
	if v.PreSnapshot != nil {
		h.PreSnapshot = v.PreSnapshot
	}
	if v.PostSnapshot != nil {
		h.PostSnapshot = v.PostSnapshot
	}
	if v.PreBackup != nil {
		h.PreBackup = v.PreBackup
	}
	if v.PostBackup != nil {
		h.PostBackup = v.PostBackup
	}
	if v.Timeout != 0 {
		h.Timeout = v.Timeout
	}
	return h
}

func (c *Config) validateHooks() []error {
	var errs []error
	check := func(where string, h Hooks) {
		for _, x := range []struct {
			name string
			argv []string
		}{{"pre_snapshot", h.PreSnapshot}, {"post_snapshot", h.PostSnapshot}, {"pre_backup", h.PreBackup}, {"post_backup", h.PostBackup}} {
			// An empty list is no hook (in volume_hooks: none for this
			// volume, whatever hooks: says).
			if len(x.argv) > 0 && strings.TrimSpace(x.argv[0]) == "" {
				errs = append(errs, fmt.Errorf("%s.%s: want a command as a list, e.g. [/usr/local/sbin/quiesce, web1]", where, x.name))
			}
		}
		if h.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%s.timeout must not be negative", where))
		}
	}
	check("hooks", c.Hooks)
	for k, h := range c.VolumeHooks {
		if err := volumeKey("volume_hooks", k); err != nil {
			errs = append(errs, err)
		}
		check("volume_hooks "+k, h)
	}
	return errs
}
