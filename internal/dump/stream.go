package dump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"golang.org/x/crypto/ssh"

	"voltar/internal/fail"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store"
)

// RemoteError is a remote command that did not produce a complete dump.
type RemoteError struct {
	Reason string
	// Stderr is the end of the command's stderr (at most 4 KiB).
	Stderr string
}

func (e *RemoteError) Error() string {
	if e.Stderr == "" {
		return e.Reason
	}
	lines := strings.Split(e.Stderr, "\n")
	if len(lines) > 10 {
		lines = append([]string{"..."}, lines[len(lines)-10:]...)
	}
	return e.Reason + "; its stderr:\n  " + strings.Join(lines, "\n  ")
}

// stream runs the command and stores its stdout through the object
// pipeline (objio: compressor -> [age] -> SHA-256 -> store.Put). The object
// is committed only after the command exited 0 with a clean stderr and a
// complete-looking stream; otherwise the upload is aborted and nothing
// appears under its key.
func (r *run) stream(ctx context.Context, client *ssh.Client) (manifest.Filesystem, []string, error) {
	fs := manifest.Filesystem{Name: "dump", Type: program(r.cmd), Mode: Mode, Archive: r.object, Started: r.o.Now().UTC()}
	sess, err := client.NewSession()
	if err != nil {
		return fs, nil, fmt.Errorf("open an SSH session: %w", err)
	}
	defer sess.Close()
	// The ssh package copies Stdin to the channel and then sends EOF, so a
	// command reading its options from /dev/stdin sees the whole file.
	sess.Stdin = bytes.NewReader(r.creds)
	stderr := &stderrLog{}
	sess.Stderr = stderr
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return fs, nil, err
	}

	w, err := objio.Create(ctx, r.o.Store, r.prefix+r.object, r.o.Encoding, store.PutOptions{})
	if err != nil {
		return fs, nil, err
	}

	r.log.Info("dump started", "command", r.cmd)
	tail := &tailBuffer{n: stdoutTail}
	var sql countWriter
	var copyErr, waitErr error
	if err := sess.Start(r.cmd); err != nil {
		copyErr = fmt.Errorf("start the remote command: %w", err)
	} else {
		_, copyErr = io.Copy(io.MultiWriter(w, tail, &sql), stdout)
		if copyErr == nil {
			waitErr = sess.Wait()
		}
	}
	stderr.finish()
	var sum objio.Sum
	verr := r.verdict(ctx, copyErr, waitErr, stderr, tail.Bytes(), sql.n)
	if verr != nil {
		err = w.Abort(verr) // a store that failed first is the cause
	} else {
		// Only now may the object be committed.
		sum, err = w.Commit()
	}
	switch {
	case ctx.Err() != nil:
		return fs, nil, fmt.Errorf("dump stopped after %d bytes: %w", sql.n, ctx.Err())
	case err != nil:
		return fs, nil, err
	case verr != nil:
		return fs, nil, verr
	}
	fs.StoredBytes, fs.SourceBytes = sum.Bytes, sql.n
	fs.SHA256 = sum.SHA256
	fs.Finished = r.o.Now().UTC()
	warnings := stderr.Warnings()
	for _, w := range warnings {
		r.log.Warn("remote command warned", "stderr", w)
	}
	return fs, warnings, nil
}

// verdict decides whether the command produced a complete dump.
func (r *run) verdict(ctx context.Context, copyErr, waitErr error, stderr *stderrLog, tail []byte, n int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	hint := func(err error) error {
		return fail.Hint(err, "run it by hand to see why: %s", r.byHand())
	}
	remote := func(format string, args ...any) error {
		return hint(&RemoteError{Reason: fmt.Sprintf(format, args...), Stderr: stderr.Tail()})
	}
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case copyErr != nil:
		return remote("reading the dump failed after %d bytes: %v", n, copyErr)
	case errors.As(waitErr, &exit) && exit.Signal() != "":
		return remote("the remote command was killed by signal %s after %d bytes", exit.Signal(), n)
	case errors.As(waitErr, &exit) && exit.ExitStatus() == 127:
		return fail.Hint(&RemoteError{Reason: "the remote command was not found (exit status 127)", Stderr: stderr.Tail()},
			"install the dump program on the instance, or fix command: of dump %s", r.d.Name)
	case errors.As(waitErr, &exit):
		return remote("the remote command failed with exit status %d after %d bytes", exit.ExitStatus(), n)
	case errors.As(waitErr, &missing):
		return remote("the SSH session ended without an exit status after %d bytes: the dump is truncated (connection lost, or the command was killed)", n)
	case waitErr != nil:
		return remote("the SSH session failed after %d bytes: %v", n, waitErr)
	}
	if p := stderr.problem(); p != "" {
		return remote("%s", p)
	}
	if n == 0 {
		return remote("the remote command wrote nothing to stdout")
	}
	if t := Trailer(r.cmd); t != "" && !hasTrailer(tail, t) {
		return remote("the dump does not end with %q: it is truncated (%d bytes)", t, n)
	}
	return nil
}

// byHand is the ssh command line that runs the dump like voltar does.
func (r *run) byHand() string {
	ssh := "ssh"
	if _, port := splitHostPort(Addr(r.d)); port != "22" {
		ssh += " -p " + port
	}
	in := "/dev/null"
	if r.d.CredentialsFile != "" {
		in = r.d.CredentialsFile
	}
	return fmt.Sprintf("%s -i %s %s@%s '%s' < %s > /dev/null", ssh, r.d.KeyFile, r.d.User, r.d.Host, r.cmd, in)
}

// program names the dump program of a command, for the manifest: the first
// dump program voltar knows, else the command's first word.
func program(cmd string) string {
	fields := strings.Fields(cmd)
	for _, f := range fields {
		switch b := path.Base(f); b {
		case "mysqldump", "mariadb-dump", "mariadump", "pg_dump", "pg_dumpall":
			return b
		}
	}
	if len(fields) == 0 {
		return "command"
	}
	return path.Base(fields[0])
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
