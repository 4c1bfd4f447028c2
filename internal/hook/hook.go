// Package hook runs the operator's commands around a volume's snapshot:
// pre_snapshot right before it is made (to quiesce an application, flush a
// database, freeze a guest's filesystems), post_snapshot right after (to
// undo that), whatever happened in between; and around its whole backup:
// pre_backup before anything is done, post_backup after everything, with
// the outcome.
//
// A hook is an argv list, run without a shell (unless its argv names one),
// with the volume in its environment and its output in voltar's log. It
// runs in its own process group, which is killed when its timeout passes
// or the run is cancelled, so nothing it started outlives it.
package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"voltar/internal/fail"
)

// Names of the hooks, as the config spells them and VOLTAR_HOOK says.
const (
	PreSnapshot  = "pre_snapshot"
	PostSnapshot = "post_snapshot"
	PreBackup    = "pre_backup"
	PostBackup   = "post_backup"
)

// DefaultTimeout bounds a hook whose config sets none.
const DefaultTimeout = time.Minute

// Command is one configured hook.
type Command struct {
	Argv    []string
	Timeout time.Duration // 0: DefaultTimeout
}

// Set is the hooks of one volume; an empty Argv is no hook. Pre and Post
// run around the snapshot, PreBackup and PostBackup around the backup.
type Set struct {
	Pre, Post             Command
	PreBackup, PostBackup Command
}

// Empty reports whether no hook is set.
func (s Set) Empty() bool {
	return len(s.Pre.Argv) == 0 && len(s.Post.Argv) == 0 && len(s.PreBackup.Argv) == 0 && len(s.PostBackup.Argv) == 0
}

// Error is a hook that failed: it exited non-zero, could not be started,
// or was killed at its timeout or by a cancel.
type Error struct {
	Name string // PreSnapshot or PostSnapshot
	Argv []string
	// Output is the end of what it wrote (stdout and stderr), for the
	// message; all of it is in the log.
	Output string
	Err    error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s hook %q: %v", e.Name, strings.Join(e.Argv, " "), e.Err)
	if e.Output != "" {
		msg += ": " + e.Output
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// ErrTimeout is matched by the error of a hook killed at its timeout.
var ErrTimeout = errors.New("did not finish in time; killed with its process group")

// Run runs c (named name in messages and VOLTAR_HOOK) with env added to
// voltar's environment, logging each line it writes. A cancelled ctx
// kills it; so does its timeout. A post hook should be given a ctx that
// is not cancelled with the run (context.WithoutCancel), so that it still
// undoes what the pre hook did after a signal.
func Run(ctx context.Context, name string, c Command, env []string, log *slog.Logger) error {
	if len(c.Argv) == 0 {
		return nil
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("hook", name)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, c.Argv[0], c.Argv[1:]...)
	cmd.Env = append(append(os.Environ(), "VOLTAR_HOOK="+name), env...)
	cmd.Stdin = nil
	out := &lines{log: log}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, killed as a whole: a shell script's sleep or
	// a forgotten background job goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that escaped the group and keeps the output pipe open
	// must not hold voltar.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	log.Info("running hook", "argv", c.Argv, "timeout", timeout)
	err := cmd.Run()
	out.flush()
	if err == nil {
		log.Info("hook done", "took", time.Since(start).Round(time.Millisecond))
		return nil
	}
	switch {
	case errors.Is(hctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		err = fmt.Errorf("%w (timeout %s)", ErrTimeout, timeout)
	case ctx.Err() != nil:
		err = fmt.Errorf("killed: %w", context.Cause(ctx))
	}
	herr := &Error{Name: name, Argv: c.Argv, Output: out.tail(), Err: err}
	hint := "its output is in voltar's log (hook=" + name + "); fix the command, or remove it from hooks:/volume_hooks: in the config"
	if errors.Is(err, ErrTimeout) {
		hint = "the hook took longer than its timeout; make it faster or raise timeout: in its hooks: section"
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		hint = "hooks run without a shell: the first word must be an executable (an absolute path, or a name in PATH); for shell syntax use [/bin/sh, -c, \"...\"]"
	}
	return fail.Hint(herr, "%s", hint)
}

// lines logs what a hook writes, line by line, and keeps the last lines
// for the error message.
type lines struct {
	log  *slog.Logger
	mu   sync.Mutex
	buf  []byte
	last []string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		l.line(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 { // a very long line: log what there is
		l.line(string(l.buf))
		l.buf = nil
	}
	return len(p), nil
}

func (l *lines) line(s string) {
	s = strings.TrimRight(s, "\r")
	l.log.Info("hook output", "line", s)
	if strings.TrimSpace(s) == "" {
		return
	}
	l.last = append(l.last, s)
	if len(l.last) > 3 {
		l.last = l.last[1:]
	}
}

func (l *lines) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.line(string(l.buf))
		l.buf = nil
	}
}

// tail is the last lines written, joined, for a message.
func (l *lines) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.last, " / ")
	if len(s) > 400 {
		s = "..." + s[len(s)-400:]
	}
	return s
}

// Env is the environment a volume's hooks get. Empty values are left out.
func Env(pairs ...string) []string {
	var out []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			out = append(out, pairs[i]+"="+pairs[i+1])
		}
	}
	return out
}

// Owed is a post hook a run owes once its pre hook ran, as the run's
// journal records it: a run killed before the post hook ran leaves it to
// the next voltar command's sweep (RunOwed).
type Owed struct {
	Argv    []string      `json:"argv"`
	Env     []string      `json:"env"`
	Timeout time.Duration `json:"timeout"`
}

// Ref is o as a journal ref.
func (o Owed) Ref() string {
	b, _ := json.Marshal(o)
	return string(b)
}

// RunOwed runs the post hook a dead run's journal names by ref, with
// VOLTAR_STATUS=killed: the run was killed after its pre hook ran.
func RunOwed(ctx context.Context, ref string, log *slog.Logger) error {
	var o Owed
	if err := json.Unmarshal([]byte(ref), &o); err != nil || len(o.Argv) == 0 {
		return fmt.Errorf("owed post_snapshot hook %q: not a hook", ref)
	}
	env := append(append([]string{}, o.Env...), "VOLTAR_STATUS=killed", "VOLTAR_ERROR=voltar was killed after the pre_snapshot hook ran")
	return Run(ctx, PostSnapshot, Command{Argv: o.Argv, Timeout: o.Timeout}, env, log)
}
