// Package sysexec runs the external tools voltar drives (lvm, mkfs, ...).
// Everything goes through one Runner so tests can script the outputs.
package sysexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs a command and returns its standard output. A command that
// exits non-zero returns an *ExitError carrying its stderr.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExitError is a command that ran and failed.
type ExitError struct {
	Cmd    string
	Args   []string
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = "no error output"
	}
	return fmt.Sprintf("%s %s: exit status %d: %s", e.Cmd, strings.Join(e.Args, " "), e.Code, msg)
}

// Exec runs real commands.
type Exec struct {
	// Env is appended to the process environment when set.
	Env []string
}

var _ Runner = Exec{}

// Run implements Runner.
func (x Exec) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if len(x.Env) > 0 {
		cmd.Env = append(cmd.Environ(), x.Env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return stdout.Bytes(), &ExitError{Cmd: name, Args: args, Code: ee.ExitCode(), Stderr: stderr.String()}
		}
		return stdout.Bytes(), fmt.Errorf("run %s: %w", name, err)
	}
	return stdout.Bytes(), nil
}
