package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"voltar/internal/fail"
)

// Outputs say where a run's report goes. Empty fields are not written.
type Outputs struct {
	// Text receives the plain-text report (stdout).
	Text io.Writer
	// JSONFile and PrometheusTextfile are replaced atomically, so a reader
	// never sees half a report.
	JSONFile           string
	PrometheusTextfile string
	// Mail is sent when Mail.Host is set, unless MailOnlyOnFailure and the
	// run was good.
	Mail              MailConfig
	MailOnlyOnFailure bool
	Logger            *slog.Logger
}

// mailGrace is added to the mail timeout for the whole delivery (connect,
// TLS, auth, data), so a slow relay fails with its own error first.
const mailGrace = 10 * time.Second

// Deliver writes r to every output in o and returns what failed, each
// error naming its output. A cancelled ctx still delivers: an
// interrupted run's report matters most.
func Deliver(ctx context.Context, r *Run, o Outputs) error {
	var errs []error
	if o.Text != nil {
		if err := Text(o.Text, r); err != nil {
			errs = append(errs, err)
		}
	}
	if p := o.JSONFile; p != "" {
		var buf bytes.Buffer
		err := JSON(&buf, r)
		if err == nil {
			err = WriteFileAtomic(p, buf.Bytes())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("report.json_file: %w", err))
		}
	}
	if p := o.PrometheusTextfile; p != "" {
		if err := WritePrometheus(p, r); err != nil {
			errs = append(errs, fmt.Errorf("report.prometheus_textfile: %w", err))
		}
	}
	if o.Mail.Host != "" && !(o.MailOnlyOnFailure && r.OK()) {
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.Mail.timeout()+mailGrace)
		err := Send(mctx, o.Mail, r)
		cancel()
		if err != nil {
			errs = append(errs, fail.Hint(fmt.Errorf("the report could not be mailed: %w", err), "check report.mail in the config; the report above is complete"))
		} else if o.Logger != nil {
			o.Logger.Info("report mailed", "to", o.Mail.To)
		}
	}
	return errors.Join(errs...)
}

// WriteFileAtomic replaces path with data (mode 0600) through a temporary
// file in the same directory and a rename, so a reader sees the old file or
// the new one, never part of one.
func WriteFileAtomic(path string, data []byte) error {
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
