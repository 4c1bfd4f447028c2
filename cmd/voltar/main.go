// Command voltar makes snapshot-consistent backups of block volumes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"voltar/internal/config"
	"voltar/internal/fail"
	"voltar/internal/sandbox"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// The sandbox's launcher and guest init are this binary too.
	sandbox.Main()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit code. Only here are
// errors turned into exit codes.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a := &app{stdout: stdout, stderr: stderr}
	cmd := a.rootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return fail.ExitOK
	}
	var cfgErr *config.Error
	if ctx.Err() != nil {
		var left fail.Leftover
		if !errors.Is(err, context.Canceled) {
			printError(stderr, err)
		} else if errors.As(err, &left) {
			fmt.Fprintf(stderr, "voltar: %s\n", left.Leftover())
		}
		fmt.Fprintln(stderr, "voltar: interrupted; everything voltar had mounted, mapped or snapshotted was released")
		return fail.ExitInterrupted
	}
	printError(stderr, err)
	switch {
	case errors.Is(err, fail.ErrLocked):
		return fail.ExitLocked
	case fail.IsUsage(err), errors.As(err, &cfgErr):
		return fail.ExitUsage
	}
	return fail.ExitFailed
}

// printError writes err as `voltar: ...` followed by its hints.
func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "voltar: %v\n", err)
	for _, h := range fail.Hints(err) {
		fmt.Fprintf(w, "hint: %s\n", h)
	}
}
