package dump

import (
	"context"
	"fmt"
	"time"

	"voltar/internal/manifest"
	"voltar/internal/parallel"
)

// Result is the outcome of one dump.
type Result struct {
	Name string
	// Manifest is the published dump's, nil when it failed.
	Manifest *manifest.Manifest
	// Err says why the dump failed; nil on success.
	Err error
	// Skipped: the dump was not attempted (the run was interrupted first).
	Skipped           bool
	Started, Finished time.Time
}

// All takes every dump, concurrency at a time (at least 1), and returns the
// results in the order of dumps. One dump's failure never stops the others;
// a cancelled ctx skips those not yet started.
func All(ctx context.Context, dumps []Target, concurrency int, o Options) []Result {
	o.defaults()
	return parallel.Map(ctx, dumps, concurrency, func(d Target) Result {
		res := Result{Name: d.Name, Started: o.Now()}
		if err := ctx.Err(); err != nil {
			res.Skipped, res.Err = true, fmt.Errorf("dump %s not attempted: %w", d.Name, err)
		} else {
			res.Manifest, res.Err = Run(ctx, d, o)
		}
		res.Finished = o.Now()
		return res
	})
}
