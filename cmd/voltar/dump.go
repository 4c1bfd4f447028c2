package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"voltar/internal/catalog"
	"voltar/internal/dump"
	"voltar/internal/fail"
	"voltar/internal/nightly"
	"voltar/internal/store"
	"voltar/internal/units"
)

// dumpFlags are the flags of `voltar dump`; to is nil unless given.
type dumpFlags struct {
	to     *string
	asJSON bool
}

func (a *app) dumpCmd() *cobra.Command {
	var o dumpFlags
	cmd := &cobra.Command{
		Use:   "dump [--to STORE] [NAME...]",
		Short: "Dump the configured databases over SSH now",
		Long: `Run the database dumps configured under dumps: (all of them, or the NAMEs),
dump_concurrency at a time. Each logs in over SSH (the host key is checked
against known_hosts), runs its command, and streams the command's stdout
through zstd and SHA-256 into <store>/<host>/dumps/<NAME>/<timestamp>/.
credentials_file goes to the command's stdin, never onto a command line.

A non-zero exit status, a lost connection, errors on stderr or a truncated
dump fail the dump and leave nothing in the store. Exit status 1 when any
dump failed. Restore one with: voltar restore dumps/NAME/latest --to DIR`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.to = given(cmd, "to")
			return a.runDump(cmd.Context(), o, args)
		},
	}
	f := cmd.Flags()
	f.String("to", "", "store: a directory or s3://bucket/prefix (default: store: from the config)")
	f.BoolVar(&o.asJSON, "json", false, "print the results as JSON")
	return cmd
}

// runDump runs the dumps args name, all when none.
func (a *app) runDump(ctx context.Context, o dumpFlags, args []string) error {
	dumps, err := dump.Select(dumpTargets(a.cfg.Dumps), args)
	if err != nil {
		return err
	}
	if err := a.override(o.to, nil); err != nil {
		return err
	}
	st, host, err := a.storeAndHost(ctx)
	if err != nil {
		return err
	}
	rcpt, err := a.recipients()
	if err != nil {
		return err
	}
	sig, err := a.signer(ctx)
	if err != nil {
		return err
	}
	ses, err := a.begin(ctx, false, true)
	if err != nil {
		return err
	}
	defer ses.end()
	results := dump.All(ctx, dumps, a.cfg.DumpConcurrency, dump.Options{Settings: a.writerSettings(st, host, rcpt, sig, ses.journal)})
	failed := 0
	js := make([]dumpJSON, 0, len(results))
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
		js = append(js, newDumpJSON(r))
	}
	if err := printResults(a, o.asJSON, js, results, printDump); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d dumps failed", failed, len(results))
	}
	return nil
}

// printDump prints one line per dump, and for a failed one its error and
// hints indented below:
//
//	ok      dumps/db1/2026-11-25T013000Z  1.2 MiB stored, 8.4 MiB SQL, in 3s
//	FAILED  db2  (after 1s)
//	        dump db2: host key for 10.0.0.2:22 changed: ...
//	        hint: someone may be intercepting the connection; ...
func printDump(a *app, r dump.Result) {
	if r.Err == nil {
		m := r.Manifest
		fmt.Fprintf(a.stdout, "ok      %s  %s stored, %s SQL, in %s\n", m.ID, units.Bytes(m.PublishedBytes),
			units.Bytes(m.SourceBytes()), units.Duration(m.Finished.Sub(m.Started)))
		return
	}
	status := "FAILED"
	if r.Skipped {
		status = "SKIPPED"
	}
	fmt.Fprintf(a.stdout, "%-7s %s  (after %s)\n", status, r.Name, units.Duration(r.Finished.Sub(r.Started)))
	fmt.Fprintf(a.stdout, "        %s\n", indentLines(r.Err.Error(), "        "))
	for _, h := range fail.Hints(r.Err) {
		fmt.Fprintf(a.stdout, "        hint: %s\n", h)
	}
}

func indentLines(s, indent string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if s[i] == '\n' {
			out = append(out, indent...)
		}
	}
	return string(out)
}

// dumpJSON is one dump in `voltar dump --json`.
type dumpJSON struct {
	Name        string    `json:"name"`
	Status      string    `json:"status"` // ok, failed, skipped
	ID          string    `json:"id,omitempty"`
	StoredBytes int64     `json:"stored_bytes"`
	SQLBytes    int64     `json:"sql_bytes"`
	SHA256      string    `json:"sha256,omitempty"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Error       string    `json:"error,omitempty"`
	Hints       []string  `json:"hints,omitempty"`
}

func newDumpJSON(r dump.Result) dumpJSON {
	// The nightly report's row says what happened; this adds what a
	// dump's manifest knows beyond it.
	d := nightly.DumpRow(r)
	j := dumpJSON{Name: d.Name, Status: d.Status, ID: d.BackupID, StoredBytes: max(d.StoredBytes, 0),
		Started: d.Started, Finished: d.Finished}
	if m := r.Manifest; r.Err == nil && m != nil {
		j.SQLBytes = m.SourceBytes()
		if len(m.Filesystems) > 0 {
			j.SHA256 = m.Filesystems[0].SHA256
		}
	}
	if d.Err != nil {
		j.Error, j.Hints = d.Err.Message, d.Err.Hints
	}
	return j
}

// restoreDump is `voltar restore dumps/NAME/TS --to DIR`: it writes
// DIR/dump.sql, decompressed and checked against its SHA-256, and prints
// one line. restore.go calls it for backups where dump.IsDump is true.
func (a *app) restoreDump(ctx context.Context, st store.Store, b *catalog.Backup, dir, partition string, force bool) error {
	if partition != "" {
		return fail.Usage(fmt.Errorf("--partition does not apply to %s: a database dump has no partitions", b.ID))
	}
	ids, err := a.identitiesFor(b)
	if err != nil {
		return err
	}
	res, err := dump.Restore(ctx, st, b, dir, force, ids)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "restored %s to %s: %s of SQL, sha256 verified\n", res.ID, res.Path, units.Bytes(res.SQLBytes))
	fmt.Fprintf(a.stdout, "load it with e.g.: mariadb < %s (or psql -f %s)\n", res.Path, res.Path)
	return nil
}

// errDumpNotVolume refuses --to-image and --to-device for a database dump.
func errDumpNotVolume(b *catalog.Backup) error {
	return fail.Usage(fail.Hint(errors.New(b.ID+" is a database dump, not a volume"),
		"restore it with: voltar restore %s --to DIR, then load DIR/%s into the database", b.ID, dump.SQLName))
}
