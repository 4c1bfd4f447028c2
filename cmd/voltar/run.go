package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"voltar/internal/backup"
	"voltar/internal/config"
	"voltar/internal/dump"
	"voltar/internal/fail"
	"voltar/internal/nightly"
	"voltar/internal/progress"
	"voltar/internal/prune"
	"voltar/internal/report"
	"voltar/internal/retention"
	"voltar/internal/store/local"
)

func (a *app) runCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [--config FILE]",
		Short: "The nightly job: back up every selected volume, prune, report",
		Long: `Take the lock, release leftovers of dead runs, check the destination, back up
every volume the config selects (see voltar volumes), concurrency at a time,
prune each volume after its new backup succeeded, then report: text on
stdout, report.json_file, report.prometheus_textfile and mail.
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
	mail := mailConfig(cfg)
	if mail.Host != "" {
		if err := mail.Validate(); err != nil {
			return fail.Usage(fmt.Errorf("report.mail: %w", err))
		}
	}
	started := time.Now()
	abort := func(err error) error { return a.aborted(ctx, mail, po.Policy.String(), started, err) }
	st, host, err := a.storeAndHost(ctx)
	if err != nil {
		return abort(err)
	}
	rcpt, err := a.recipients()
	if err != nil {
		return abort(err)
	}
	l, err := a.lockAndSweep(ctx, false)
	if err != nil {
		return abort(err)
	}
	defer l.Release()
	_, vols, err := a.selection(ctx)
	if err != nil {
		return abort(err)
	}
	var jobs []nightly.Job
	for _, v := range vols {
		snap, err := a.snapshotter(v)
		if err != nil {
			return abort(err)
		}
		jobs = append(jobs, nightly.Job{Volume: v, Snapshotter: snap, Excludes: a.excludesFor(v, nil),
			BtrfsSnapshots: cfg.IncludeBtrfsSnapshots(v.ID())})
	}
	runID, j, err := a.startJournal()
	if err != nil {
		return abort(err)
	}
	// Mount, writability and free-space checks apply to a local store; an
	// S3 store was checked when it was opened and reports no free space.
	storePath := ""
	if ls, ok := st.(*local.Store); ok {
		storePath = ls.Root()
	}
	bars := progress.New(stderrFile(a))
	rep := nightly.Run(ctx, nightly.Options{
		Settings:  a.writerSettings(st, host, rcpt, j),
		StorePath: storePath, Jobs: jobs, Concurrency: cfg.Concurrency,
		Backup: backup.Options{RuntimeDir: cfg.RuntimeDir, RunID: runID, Progress: bars},
		Prune:  po,
		Dumps:  dumpTargets(cfg.Dumps), DumpsAfter: cfg.DumpsWhen == "after", DumpConcurrency: cfg.DumpConcurrency,
		RequireMount: cfg.Store.RequireMount, MinFreePercent: cfg.Store.MinFreePercent,
		Retention: po.Policy.String(),
	})
	bars.Wait()
	if err := j.Finish(); err != nil {
		rep.Errors = append(rep.Errors, *report.NewProblem(err))
	}
	if len(jobs) == 0 && len(cfg.Dumps) == 0 {
		rep.Errors = append(rep.Errors, report.Problem{Message: "no volumes selected", Hints: []string{"set lvm.volume_groups or images in the config; voltar volumes shows the selection"}})
	}
	return a.deliver(ctx, cfg, mail, rep)
}

// aborted reports a run that stopped before backing anything up: the
// store could not be opened (an S3 endpoint unreachable at night), the
// sweep or the volume selection failed. The operator who reads only the
// mail, the JSON report or the metrics learns of it too, also of a
// missing store directory (exit 2: an unmounted backup disk). Only another
// run holding the lock (exit 3) is not reported: that run reports.
func (a *app) aborted(ctx context.Context, mail report.MailConfig, retention string, started time.Time, err error) error {
	if errors.Is(err, fail.ErrLocked) {
		return err
	}
	host, herr := a.cfg.HostName()
	if herr != nil {
		host = "unknown host"
	}
	rep := &report.Run{
		Host: host, Started: started, Finished: time.Now(), Store: a.cfg.Store.Path, Retention: retention,
		StoreTotalBytes: -1, DestUsedBytes: -1, DestAvailBytes: -1, DestTotalBytes: -1,
		Errors: []report.Problem{*report.NewProblem(err)}, Version: version,
	}
	if derr := a.deliver(ctx, a.cfg, mail, rep); derr != nil {
		a.log.Error("the report of the aborted run was not delivered", "err", derr)
	}
	return err
}

// deliver prints and sends the report. Failures to deliver make the run fail.
func (a *app) deliver(ctx context.Context, cfg *config.Config, mail report.MailConfig, rep *report.Run) error {
	var errs []error
	if err := report.Text(a.stdout, rep); err != nil {
		errs = append(errs, err)
	}
	if p := cfg.Report.JSONFile; p != "" {
		var buf bytes.Buffer
		err := report.JSON(&buf, rep)
		if err == nil {
			err = writeFileAtomic(p, buf.Bytes())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("report.json_file: %w", err))
		}
	}
	if p := cfg.Report.PrometheusTextfile; p != "" {
		if err := report.WritePrometheus(p, rep); err != nil {
			errs = append(errs, fmt.Errorf("report.prometheus_textfile: %w", err))
		}
	}
	if mail.Host != "" && !(cfg.Report.Mail.OnlyOnFailure && rep.OK()) {
		// A cancelled run still mails its report.
		t := mail.Timeout
		if t == 0 {
			t = report.DefaultMailTimeout
		}
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t+10*time.Second)
		err := report.Send(mctx, mail, rep)
		cancel()
		if err != nil {
			errs = append(errs, fail.Hint(fmt.Errorf("the report could not be mailed: %w", err), "check report.mail in the config; the report above is complete"))
		} else {
			a.log.Info("report mailed", "to", mail.To)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !rep.OK() {
		ok, failed, total := rep.Counts()
		errs = append([]error{fmt.Errorf("run finished with failures: %d of %d volumes ok, %d failed", ok, total, failed)}, errs...)
	}
	return errors.Join(errs...)
}

func mailConfig(cfg *config.Config) report.MailConfig {
	m := cfg.Report.Mail
	return report.MailConfig{
		Host: m.Host, Port: m.Port, TLS: m.TLS, Username: m.Username,
		PasswordFile: m.PasswordFile, PasswordEnv: m.PasswordEnv,
		From: m.From, To: m.To, Timeout: m.Timeout, InsecureSkipVerify: m.InsecureSkipVerify,
	}
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

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
