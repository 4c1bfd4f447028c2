package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"voltar/internal/backup"
	"voltar/internal/fail"
	"voltar/internal/nightly"
	"voltar/internal/progress"
	"voltar/internal/report"
)

func (a *app) runCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [--config FILE]",
		Short: "The nightly job: back up every selected volume, prune, report",
		Long: `Take the lock, release leftovers of dead runs, check the destination, back up
every volume the config selects (see voltar volumes), concurrency at a time,
prune each volume after its new backup succeeded, then report: text on
stdout, report.json_file, report.prometheus_textfile and mail.
A configured source that cannot be backed up (an images: file that is gone,
a volume group that does not exist) is a failed volume; volumes with
backups in the store that are no longer selected are listed, not failed.
Exit 0 when everything succeeded, 1 when anything failed (mail included).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.nightly(cmd.Context())
		},
	}
	return cmd
}

func (a *app) nightly(ctx context.Context) error {
	cfg := a.cfg
	po, err := a.pruneOptions(false)
	if err != nil {
		return err
	}
	out, err := a.outputs()
	if err != nil {
		return err
	}
	started := time.Now()
	abort := func(err error) error { return a.aborted(ctx, out, po.Policy.String(), started, err) }
	st, host, err := a.storeAndHost(ctx)
	if err != nil {
		return abort(err)
	}
	rcpt, err := a.recipients()
	if err != nil {
		return abort(err)
	}
	sig, err := a.signer(ctx)
	if err != nil {
		return abort(err)
	}
	ses, err := a.begin(ctx, false, false)
	if err != nil {
		return abort(err)
	}
	defer ses.end()
	jobs, missing, domains, err := a.jobs(ctx)
	if err != nil {
		return abort(err)
	}
	if err := ses.startJournal(); err != nil {
		return abort(err)
	}
	bars := progress.New(stderrFile(a))
	rep := nightly.Run(ctx, nightly.Options{
		Settings: a.writerSettings(st, host, rcpt, sig, ses.journal),
		Jobs:     jobs, Missing: missing, Concurrency: cfg.Concurrency, Domains: domains,
		Backup: backup.Options{RuntimeDir: cfg.RuntimeDir, RunID: ses.runID, Progress: bars, BootRaw: cfg.BootPartitions == "raw"},
		Prune:  po,
		Dumps:  dumpTargets(cfg.Dumps), DumpsAfter: cfg.DumpsWhen == "after", DumpConcurrency: cfg.DumpConcurrency,
		RequireMount: cfg.Store.RequireMount, MinFreePercent: cfg.Store.MinFreePercent,
		Retention: po.Policy.String(),
	})
	bars.Wait()
	if err := ses.finishJournal(); err != nil {
		rep.Errors = append(rep.Errors, *report.NewProblem(err))
	}
	if len(jobs) == 0 && len(missing) == 0 && len(cfg.Dumps) == 0 {
		rep.Errors = append(rep.Errors, report.Problem{Message: "no volumes selected", Hints: []string{"set lvm.volume_groups, images or domains in the config; voltar volumes shows the selection"}})
	}
	return a.deliver(ctx, out, rep)
}

// aborted reports a run that stopped before backing anything up: the
// store could not be opened (an S3 endpoint unreachable at night), the
// sweep or the volume selection failed. The operator who reads only the
// mail, the JSON report or the metrics learns of it too, also of a
// missing store directory (exit 2: an unmounted backup disk). Only another
// run holding the lock (exit 3) is not reported: that run reports.
func (a *app) aborted(ctx context.Context, out report.Outputs, retention string, started time.Time, err error) error {
	if errors.Is(err, fail.ErrLocked) {
		return err
	}
	host, herr := a.cfg.HostName()
	if herr != nil {
		host = "unknown host"
	}
	rep := nightly.Aborted(host, a.cfg.Store.Path, retention, version, started, time.Now(), err)
	// Only a failure to deliver is worth a line here: that the run did
	// not happen is err, which the caller prints.
	if derr := report.Deliver(ctx, rep, out); derr != nil {
		a.log.Error("the report of the aborted run was not delivered", "err", derr)
	}
	return err
}

// deliver prints and sends the report and returns the run's result:
// failures to deliver make the run fail too.
func (a *app) deliver(ctx context.Context, out report.Outputs, rep *report.Run) error {
	derr := report.Deliver(ctx, rep, out)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var errs []error
	if !rep.OK() {
		ok, failed, total := rep.Counts()
		note := ""
		if vpf, _ := rep.PruneFailed(); vpf > 0 {
			note = fmt.Sprintf(" (%d stored, prune failed)", vpf)
		}
		errs = append(errs, fmt.Errorf("run finished with failures: %d of %d volumes ok, %d failed%s", ok, total, failed, note))
	}
	return errors.Join(append(errs, derr)...)
}
