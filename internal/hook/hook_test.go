package hook_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"voltar/internal/fail"
	"voltar/internal/hook"
)

func logger(buf *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(buf, nil)) }

// A hook gets its name and the caller's variables in its environment, runs
// without a shell (its argv reaches it as given), and its output is logged
// line by line.
func TestRunEnvironmentAndOutput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	var log bytes.Buffer
	err := hook.Run(context.Background(), hook.PreSnapshot, hook.Command{Argv: []string{"/bin/sh", "-c",
		`printf '%s|%s|%s\n' "$VOLTAR_HOOK" "$VOLTAR_VOLUME" "$1" > "$0"; echo hello from the hook; echo second >&2`, out, "a b;c"}},
		hook.Env("VOLTAR_VOLUME", "vg0/volume-1", "VOLTAR_EMPTY", ""), logger(&log))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if got, want := string(b), "pre_snapshot|vg0/volume-1|a b;c\n"; got != want {
		t.Errorf("hook saw %q, want %q", got, want)
	}
	for _, want := range []string{`line="hello from the hook"`, "line=second", "hook=pre_snapshot"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, log.String())
		}
	}
}

// A failing hook's error names the hook, its command, its exit and what it
// said last, with a hint.
func TestRunFailure(t *testing.T) {
	err := hook.Run(context.Background(), hook.PostSnapshot, hook.Command{Argv: []string{"/bin/sh", "-c", "echo cannot thaw >&2; exit 3"}}, nil, nil)
	var he *hook.Error
	if !errors.As(err, &he) || he.Name != hook.PostSnapshot || !strings.Contains(err.Error(), "exit status 3") ||
		!strings.Contains(err.Error(), "cannot thaw") || len(fail.Hints(err)) == 0 {
		t.Fatalf("Run = %v (hints %q)", err, fail.Hints(err))
	}
	err = hook.Run(context.Background(), hook.PreSnapshot, hook.Command{Argv: []string{"no-such-command-voltar"}}, nil, nil)
	if err == nil || !strings.Contains(strings.Join(fail.Hints(err), " "), "without a shell") {
		t.Fatalf("missing command: %v (hints %q)", err, fail.Hints(err))
	}
}

// A hook that hangs is killed at its timeout together with what it
// started (its process group), and the error says so.
func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	err := hook.Run(context.Background(), hook.PreSnapshot, hook.Command{
		Argv:    []string{"/bin/sh", "-c", `sleep 60 & echo $! > "$0"; wait`, pidFile},
		Timeout: 300 * time.Millisecond,
	}, nil, nil)
	if !errors.Is(err, hook.ErrTimeout) {
		t.Fatalf("Run = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %s after a 300ms timeout", d)
	}
	b, _ := os.ReadFile(pidFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if perr != nil {
		t.Fatalf("pid file: %q", b)
	}
	for i := 0; i < 50; i++ {
		// Gone, or a zombie its new parent has not reaped yet.
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if syscall.Kill(pid, 0) != nil || err != nil || strings.Contains(string(st), ") Z ") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("the hook's child %d survived the timeout", pid)
}

// A cancel (a signal to voltar) kills a running hook at once.
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	err := hook.Run(ctx, hook.PreSnapshot, hook.Command{Argv: []string{"sleep", "60"}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "killed") || time.Since(start) > 5*time.Second {
		t.Fatalf("Run = %v after %s", err, time.Since(start))
	}
}
