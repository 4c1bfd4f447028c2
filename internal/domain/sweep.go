package domain

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"voltar/internal/cleanup"
)

// ThawLeftover is the sweep's handler of cleanup.Freeze: it thaws a
// guest a killed run may have left frozen. A domain that is gone, not
// running or without an agent has nothing frozen; a thaw that fails
// (libvirt not reachable, the agent hung) keeps the entry for a later
// command, with a warning in the log.
func ThawLeftover(log *slog.Logger) cleanup.Handler {
	return func(ctx context.Context, ref string) error {
		var f FreezeRef
		if err := json.Unmarshal([]byte(ref), &f); err != nil || f.Domain == "" {
			return fmt.Errorf("frozen guest %q: not a domain", ref)
		}
		c := &Client{Socket: f.Socket}
		defer c.Close()
		tctx, cancel := context.WithTimeout(ctx, thawTimeout)
		defer cancel()
		n, err := c.Thaw(tctx, f.Domain)
		switch {
		case err == nil:
			log.Warn("thawed a guest a killed run left frozen", "domain", f.Domain, "filesystems", n)
			return nil
		case NoAgent(err) || NotRunning(err):
			return nil
		}
		// Kept for the next command, with a warning: failing every
		// command would not thaw the guest either (libvirt holds the
		// domain while a hung agent has not answered the freeze).
		return cleanup.Later(fmt.Errorf("thaw domain %s (virsh domfsthaw %s): %w", f.Domain, f.Domain, err))
	}
}
