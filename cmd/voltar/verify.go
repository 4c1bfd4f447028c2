package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/spf13/cobra"

	"voltar/internal/catalog"
	"voltar/internal/fail"
	"voltar/internal/verify"
)

// verifyFlags are the flags of `voltar verify`.
type verifyFlags struct {
	asJSON bool
	sample float64
}

func (a *app) verifyCmd() *cobra.Command {
	var o verifyFlags
	cmd := &cobra.Command{
		Use:   "verify [--json] [--sample PCT] [BACKUP...]",
		Short: "Re-hash and read back every stored archive",
		Long: `Verify backups (all of this host's when none is named): re-hash every stored
object against SHA256SUMS and the manifest, decompress and read every tar
stream to its end, and compare entry, file and byte counts with the manifest.
BACKUP is <vg>/<volume>/<timestamp> (or .../latest). Any mismatch: exit 1.

A folder whose manifest.json is there but unusable (unreadable, invalid, or
not matching manifest.json.sha256) fails verification as damaged. With
signing.allowed_signers set, a backup whose manifest.json.sig is missing or
not made by a key that file lists fails too.

Encrypted backups are decrypted with encryption.identity_file (or
$VOLTAR_AGE_IDENTITY_FILE). Without an identity their stored size and SHA-256
are still checked, and the output says their content was not checked.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runVerify(cmd.Context(), o, args)
		},
	}
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print results as JSON")
	cmd.Flags().Float64Var(&o.sample, "sample", 0, "verify a random PCT percent of the backups (at least one)")
	return cmd
}

// problemHints collects the distinct hints of the problems (say, which key
// decrypts a backup) and reports whether any problem has none: damage.
func problemHints(results []verify.Result) (hints []string, damaged bool) {
	seen := map[string]bool{}
	for _, r := range results {
		for _, p := range r.Problems {
			if p.Hint == "" {
				damaged = true
			} else if !seen[p.Hint] {
				seen[p.Hint] = true
				hints = append(hints, p.Hint)
			}
		}
	}
	return hints, damaged
}

// runVerify verifies the backups args name, all of this host's when none.
func (a *app) runVerify(ctx context.Context, o verifyFlags, args []string) error {
	if o.sample < 0 || o.sample > 100 {
		return fail.Usage(fmt.Errorf("--sample %v: want a percentage 0..100", o.sample))
	}
	a.sweepIfIdle(ctx)
	st, host, err := a.storeAndHost(ctx)
	if err != nil {
		return err
	}
	var backups []catalog.Backup
	// Folders whose manifest.json is there but unusable fail
	// verification; they are never sampled away.
	var damaged []verify.Result
	if len(args) == 0 {
		c, err := catalog.List(ctx, st, host, "")
		if err != nil {
			return err
		}
		backups = c.Backups
		for _, f := range c.Damaged() {
			damaged = append(damaged, verify.Damaged(f.Host, f.ID, f.Reason))
		}
	}
	for _, id := range args {
		b, err := catalog.Resolve(ctx, st, host, id)
		var de *catalog.DamagedError
		if errors.As(err, &de) {
			damaged = append(damaged, verify.Damaged(de.Host, de.ID, de.Reason))
			continue
		}
		if err != nil {
			return err
		}
		backups = append(backups, *b)
	}
	if o.sample > 0 && len(backups) > 0 {
		backups = verify.Sample(backups, o.sample, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	}
	var ptrs []*catalog.Backup
	for i := range backups {
		ptrs = append(ptrs, &backups[i])
	}
	ids, err := a.identitiesFor(ptrs...)
	if err != nil {
		return err
	}
	sigs, err := a.verifier()
	if err != nil {
		return err
	}
	results := damaged
	have := map[string]bool{}
	check := func(b *catalog.Backup) {
		r := verify.Backup(ctx, st, b, ids)
		if sigs != nil {
			verify.Signature(ctx, st, b, sigs, &r)
		}
		a.log.Debug("verified", "id", r.ID, "ok", r.OK)
		results = append(results, r)
		have[b.FullID()] = true
	}
	for i := range backups {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		check(&backups[i])
	}
	// An increment is only as good as the backups it builds on (its
	// result's Chain): those not verified yet are, with it. A parent
	// that cannot be resolved is already the increment's problem.
	for i := len(damaged); i < len(results) && ctx.Err() == nil; i++ {
		for _, id := range results[i].Chain {
			if have[results[i].Host+"/"+id] {
				continue
			}
			if b, err := catalog.Resolve(ctx, st, results[i].Host, id); err == nil {
				check(b)
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	verify.Chains(results)
	if len(args) == 0 {
		// The catalog's order: damaged folders among the backups.
		slices.SortStableFunc(results, func(a, b verify.Result) int {
			return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.ID, b.ID))
		})
	}
	if o.asJSON {
		if err := a.printJSON(results); err != nil {
			return err
		}
	} else if err := verify.WriteText(a.stdout, results); err != nil {
		return err
	}
	if n := verify.Failed(results); n > 0 {
		err := fmt.Errorf("%d of %d backups failed verification", n, len(results))
		hints, damaged := problemHints(results)
		if damaged {
			err = fail.Hint(err, "the objects named above are damaged: do not restore from them; make a new backup and check the store's disk")
		}
		// Hints shows the outermost first: wrap in reverse.
		for i := len(hints) - 1; i >= 0; i-- {
			err = fail.Hint(err, "%s", hints[i])
		}
		return err
	}
	return nil
}
