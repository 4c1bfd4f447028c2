// Package sandbox reads a guest filesystem without the host kernel ever
// parsing it (config isolation: sandbox).
//
// A User-Mode Linux kernel, started as an unprivileged host process, gets
// the filesystem's bytes as a block device (a read-only host loop device,
// behind a copy-on-write file that takes the journal replay), mounts it in
// its own kernel and runs voltar's own archive.Write inside the guest. Only
// a framed byte stream (protocol.go) crosses back over a raw serial line;
// the host checks it strictly and hands the tar bytes on.
//
// Three roles of the same binary:
//
//	host     Archive: starts the launcher, reads and checks the stream
//	launcher (VOLTAR_SANDBOX=launch) root in new mount, PID, network, IPC and
//	         UTS namespaces: builds a private root on a tmpfs, drops to the
//	         sandbox user with no capabilities and resource limits, and
//	         execs linux.uml
//	guest    (VOLTAR_SANDBOX=guest, PID 1 in UML) mounts, archives, reports
//
// Main dispatches the last two; every program that may be the sandbox's
// binary (cmd/voltar, and test binaries that use Archive) calls it first.
package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/archive"
	"voltar/internal/btrfs"
	"voltar/internal/disk"
	"voltar/internal/fail"
	"voltar/internal/index"
)

// Config is one filesystem to archive in a sandbox.
type Config struct {
	// Device is a host block device holding exactly the filesystem (a
	// read-only loop device over the snapshot's partition).
	Device string
	// FSType is DetectFS's name: ext2/3/4, xfs, btrfs, vfat.
	FSType string
	// Dir is an empty directory the launcher mounts its private tmpfs on
	// (in its own mount namespace: the host never sees that mount).
	Dir string

	Excludes       []string
	BtrfsSnapshots bool
	// NoProjectIDs: see archive.Options.
	NoProjectIDs bool
	// BootRaw: when syslinux is found, report it and archive nothing
	// (the caller stores the filesystem raw).
	BootRaw bool

	Limits Limits
	Logger *slog.Logger
	// Progress is called with the guest's progress records.
	Progress func(archive.Progress)
	// Index, when set, makes the guest send the file index's entries
	// (archive.Options.Index), which get here checked (index.ParseEntry)
	// and in order. Nil: the guest sends none, and one is an error.
	Index func(*index.Entry) error

	// Binary is the program run as launcher and as guest init; it must
	// call Main first. Default: this program (os.Executable).
	Binary string
	// Kernel is the UML kernel; default linux.uml from PATH.
	Kernel string
	// User is the host account the sandbox runs as; default DefaultUser.
	User string
}

// Limits bound one sandbox.
type Limits struct {
	// Memory is the guest's RAM (UML mem=); it lives in a file on the
	// sandbox's tmpfs. Default 256 MiB.
	Memory int64
	// Scratch bounds the copy-on-write file that takes the journal
	// replay (the tmpfs holds it and the guest's RAM). Default 1 GiB.
	Scratch int64
	// Idle fails the sandbox when it sends nothing for this long (a hang).
	// Default 5 minutes.
	Idle time.Duration
	// CPU is RLIMIT_CPU of the sandbox. Default 24 hours.
	CPU time.Duration
	// TestStall is for tests only (no config key sets it): the guest
	// mounts the filesystem, then sends nothing more, as a hung guest
	// kernel would.
	TestStall bool
	// TestLose is for tests only: the guest archives, then powers off
	// without its result record, as when the serial line loses the end
	// of the stream (ErrLost).
	TestLose bool
}

func (l Limits) withDefaults() Limits {
	if l.Memory <= 0 {
		l.Memory = 256 << 20
	}
	if l.Scratch <= 0 {
		l.Scratch = 1 << 30
	}
	if l.Idle <= 0 {
		l.Idle = 5 * time.Minute
	}
	if l.CPU <= 0 {
		l.CPU = 24 * time.Hour
	}
	return l
}

// Result is what the guest reports after the archive: the archive's own
// result and what the host's completeness checks need, measured in the
// guest on the mounted filesystem.
type Result struct {
	Archive archive.Result `json:"archive"`
	// Syslinux is the directory holding ldlinux.sys and ldlinux.c32, ""
	// for none (disk.FindSyslinux). With Config.BootRaw and a syslinux
	// found, nothing was archived.
	Syslinux string `json:"syslinux,omitempty"`
	// Statfs of the mounted filesystem, after the archive.
	Statfs *Statfs `json:"statfs,omitempty"`
	// Subvolumes and DefaultSubvolume: btrfs only (btrfs.List, Default).
	Subvolumes       []btrfs.Entry `json:"subvolumes,omitempty"`
	DefaultSubvolume uint64        `json:"default_subvolume,omitempty"`
	// Error is set when the guest failed; nothing else is then valid.
	Error *GuestError `json:"error,omitempty"`
	// TarBytes is the length of the tar stream the guest sent; checked
	// against what arrived.
	TarBytes int64 `json:"tar_bytes"`
}

// Statfs is what statfs(2) said about the mounted filesystem.
type Statfs struct {
	Blocks, Bfree, Bsize, Files, Ffree uint64
}

// GuestError is a failure inside the guest, by kind.
type GuestError struct {
	Kind    string `json:"kind"` // one of the Err* kinds below
	Message string `json:"message"`
}

// Kinds of GuestError.
const (
	KindSetup       = "setup"       // the guest could not prepare itself
	KindMount       = "mount"       // the guest kernel refused the filesystem
	KindUnsupported = "unsupported" // the guest kernel lacks the type
	KindEncrypted   = "encrypted"   // archive.ErrEncrypted
	KindArchive     = "archive"     // any other archive error
	KindCheck       = "check"       // statfs or the btrfs subvolume list
)

func (e *GuestError) Error() string { return "in the sandbox: " + e.Kind + ": " + e.Message }

// Unwrap lets errors.Is find the errors the caller branches on.
func (e *GuestError) Unwrap() error {
	switch e.Kind {
	case KindEncrypted:
		return archive.ErrEncrypted
	case KindUnsupported:
		return disk.ErrUnsupportedFS
	}
	return nil
}

// ErrTimeout is matched when the sandbox sent nothing for Limits.Idle.
var ErrTimeout = errors.New("sandbox sent nothing")

// Archive archives cfg's filesystem in a sandbox and writes the tar stream
// to w. It returns only when the sandbox's processes are gone. On error
// what was written to w is incomplete and must be discarded.
func Archive(ctx context.Context, cfg Config, w io.Writer) (Result, error) {
	lim := cfg.Limits.withDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec, err := newSpec(cfg, lim)
	if err != nil {
		return Result{}, err
	}
	return archiveOnce(ctx, spec, cfg, lim, log, w)
}

// ErrLost is matched when the guest powered off but its stream did not
// arrive whole: measured here about once in 50 starts, UML's serial line
// kept the last bytes the guest wrote. The caller may run it again (with
// a fresh writer: part of the stream may have reached w).
var ErrLost = errors.New("the guest powered off, but its stream did not arrive whole")

// pipeSize is the size of the stream's pipe.
const pipeSize = 1 << 20

// haltGrace is how long a guest that has powered off may take to exit.
const haltGrace = 5 * time.Second

// archiveOnce runs one sandbox.
func archiveOnce(ctx context.Context, spec *spec, cfg Config, lim Limits, log *slog.Logger, w io.Writer) (Result, error) {
	rd, wr, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: %w", err)
	}
	defer rd.Close()
	// A pipe holds 64 KiB: with 1 MiB the guest's kernel rarely finds it
	// full and waits for the host, a few round trips each time.
	if c, err := wr.SyscallConn(); err == nil {
		c.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		wr.Close()
		return Result{}, fmt.Errorf("sandbox: %w", err)
	}
	console := &tail{max: 16 << 10}
	cmd := exec.Command(spec.Binary)
	cmd.Args = []string{"voltar-sandbox"}
	cmd.Env = []string{envRole + "=" + roleLaunch, envSpec + "=" + string(raw)}
	if v := os.Getenv("VOLTAR_SANDBOX_CONSOLE"); v != "" {
		cmd.Env = append(cmd.Env, "VOLTAR_SANDBOX_CONSOLE="+v)
	}
	var consoleOut io.Writer = console
	if os.Getenv("VOLTAR_SANDBOX_CONSOLE") == "1" {
		// Debugging: the whole console on stderr too.
		consoleOut = io.MultiWriter(console, os.Stderr)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, consoleOut, consoleOut
	cmd.ExtraFiles = []*os.File{wr}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
		Setsid:     true,
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		wr.Close()
		return Result{}, fail.Hint(fmt.Errorf("sandbox: start: %w", err), "isolation: sandbox needs root and new namespaces (not inside a restricted container)")
	}
	wr.Close()
	log.Debug("sandbox started", "pid", cmd.Process.Pid, "device", cfg.Device, "type", cfg.FSType)

	// Everything below ends with the process gone: a kill of the
	// launcher (PID 1 of its namespace, UML after the exec) takes the
	// whole PID namespace with it.
	var once sync.Once
	kill := func() { once.Do(func() { _ = cmd.Process.Kill() }) }
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	type outcome struct {
		res Result
		err error
	}
	act := &activity{}
	act.mark()
	done := make(chan outcome, 1)
	in := newHostStream(rd, "/proc/"+strconv.Itoa(cmd.Process.Pid)+"/root", log)
	defer in.close() // after done: the reader is finished with it
	go func() {
		res, err := readStream(in, w, cfg, log, act)
		done <- outcome{res, err}
	}()
	tick := time.NewTicker(min(lim.Idle/4, time.Second))
	defer tick.Stop()
	var out outcome
	var cause error
	halted := false
	ctxDone := ctx.Done()
wait:
	for {
		select {
		case out = <-done:
			break wait
		case <-tick.C:
			if cause == nil && !halted && console.halted() && act.idleFor(haltGrace) {
				// Powered off, yet still there and silent:
				// nothing more will come.
				halted = true
				kill()
				rd.Close()
				continue
			}
			if cause != nil || !act.idleFor(lim.Idle) {
				continue
			}
			cause = fmt.Errorf("%w for %s: killed as hung", ErrTimeout, lim.Idle)
			kill()
			rd.Close() // the reader may be blocked in a pipe a helper still holds
		case <-ctxDone:
			ctxDone = nil
			if cause == nil {
				cause = ctx.Err()
			}
			kill()
			rd.Close()
		}
	}
	if out.err != nil || cause != nil {
		kill()
	}
	// The result is in: the guest powers off by itself.
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(30 * time.Second):
		kill()
		werr = <-waited
	}
	log.Debug("sandbox finished", "elapsed", time.Since(started).Round(time.Millisecond), "exit", werr)
	lost := ctx.Err() == nil && console.halted() && (cause != nil || out.err != nil)
	switch {
	case lost && cause != nil:
		return Result{}, withConsole(fmt.Errorf("sandbox: %w (%v)", ErrLost, cause), console)
	case lost:
		return Result{}, withConsole(fmt.Errorf("sandbox: %w (%v)", ErrLost, out.err), console)
	case cause != nil:
		return Result{}, withConsole(fmt.Errorf("sandbox: %w", cause), console)
	case out.err != nil:
		return Result{}, withConsole(fmt.Errorf("sandbox: %w", out.err), console)
	case out.res.Error != nil:
		return out.res, withConsole(out.res.Error, console)
	}
	return out.res, nil
}

// readStream reads the guest's records, writes the tar bytes to w and
// returns the checked result. act is marked at every record, and
// counts no time while w holds the stream up (a slow store is not a hung
// guest).
func readStream(r io.Reader, w io.Writer, cfg Config, log *slog.Logger, act *activity) (Result, error) {
	if act == nil {
		act = &activity{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fr := newFrameReader(r)
	if err := fr.start(); err != nil {
		return Result{}, err
	}
	// The tar bytes go to w and through Go's tar reader, which checks
	// every header (checksums, PAX records) and counts the entries: a
	// stream that is not the tar its result describes fails here.
	tc := newTarCheck()
	defer tc.abort()
	var res Result
	var tarBytes, indexEntries int64
	var writeErr error
	for {
		typ, p, err := fr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if writeErr != nil {
				return Result{}, writeErr
			}
			return Result{}, err
		}
		act.mark()
		switch typ {
		case RecTar:
			tarBytes += int64(len(p))
			if err := tc.write(p); err != nil {
				return Result{}, err
			}
			if writeErr == nil {
				act.writing.Store(true)
				_, err := w.Write(p)
				act.writing.Store(false)
				act.mark()
				if err != nil {
					// Keep reading: the guest must not block on a
					// full pipe while the caller gives up.
					writeErr = err
				}
			}
		case RecProgress:
			pr := archive.Progress{Bytes: int64(binary.BigEndian.Uint64(p)), Files: int64(binary.BigEndian.Uint64(p[8:]))}
			if pr.Bytes < 0 || pr.Files < 0 {
				return Result{}, malformed("negative progress")
			}
			if cfg.Progress != nil {
				cfg.Progress(pr)
			}
		case RecLog:
			var l logRecord
			if err := strictJSON(p, &l); err != nil {
				return Result{}, malformed("log record: %v", err)
			}
			log.Warn("sandbox: "+printable(l.Msg), "detail", printable(l.Attrs))
		case RecIndex:
			if cfg.Index == nil {
				return Result{}, malformed("index record, and no index is being written")
			}
			for len(p) > 0 {
				nl := bytes.IndexByte(p, '\n')
				if nl < 0 {
					return Result{}, malformed("index record with a partial line")
				}
				e, err := index.ParseEntry(p[:nl])
				if err != nil {
					return Result{}, malformed("index entry %d: %v", indexEntries+1, err)
				}
				if err := cfg.Index(&e); err != nil {
					return Result{}, malformed("index entry %d: %v", indexEntries+1, err)
				}
				indexEntries++
				p = p[nl+1:]
			}
		case RecResult:
			if err := strictJSON(p, &res); err != nil {
				return Result{}, malformed("result record: %v", err)
			}
		}
	}
	if writeErr != nil {
		return Result{}, writeErr
	}
	if err := checkResult(res, tarBytes, cfg); err != nil {
		return Result{}, err
	}
	entries, err := tc.finish()
	if err != nil {
		return Result{}, err
	}
	if res.Error == nil && tarBytes > 0 && entries != res.Archive.Entries {
		return Result{}, malformed("the tar stream holds %d entries, the result says %d", entries, res.Archive.Entries)
	}
	if res.Error == nil && tarBytes > 0 && cfg.Index != nil && indexEntries != entries {
		return Result{}, malformed("the tar stream holds %d entries, the index %d", entries, indexEntries)
	}
	return res, nil
}

// tarCheck reads the tar stream as it passes.
type tarCheck struct {
	pw      *io.PipeWriter
	done    chan struct{}
	entries int64
	err     error
}

func newTarCheck() *tarCheck {
	pr, pw := io.Pipe()
	tc := &tarCheck{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(tc.done)
		tr := tar.NewReader(pr)
		for {
			_, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err == nil {
				_, err = io.Copy(io.Discard, tr)
			}
			if err != nil {
				tc.err = malformed("tar stream, after %d entries: %v", tc.entries, err)
				pr.CloseWithError(tc.err)
				return
			}
			tc.entries++
		}
		// The end-of-archive blocks; what follows is padding.
		io.Copy(io.Discard, pr)
	}()
	return tc
}

func (tc *tarCheck) write(p []byte) error {
	if _, err := tc.pw.Write(p); err != nil {
		<-tc.done
		return tc.err
	}
	return nil
}

func (tc *tarCheck) finish() (int64, error) {
	tc.pw.Close()
	<-tc.done
	return tc.entries, tc.err
}

func (tc *tarCheck) abort() {
	tc.pw.CloseWithError(errors.New("aborted"))
	<-tc.done
}

// activity is when the guest last sent something, and whether the host
// is busy with it.
type activity struct {
	last    atomic.Int64 // UnixNano
	writing atomic.Bool
}

func (a *activity) mark() { a.last.Store(time.Now().UnixNano()) }

// idleFor reports whether the guest has sent nothing for d while the host
// was waiting for it.
func (a *activity) idleFor(d time.Duration) bool {
	return !a.writing.Load() && time.Since(time.Unix(0, a.last.Load())) >= d
}

// checkResult holds the guest's result to what the host can tell.
func checkResult(res Result, tarBytes int64, cfg Config) error {
	if res.Error != nil {
		if res.Error.Kind == "" {
			return malformed("error without a kind")
		}
		res.Error.Message = printable(res.Error.Message)
		return nil
	}
	if res.TarBytes != tarBytes {
		return malformed("result says %d tar bytes, %d arrived", res.TarBytes, tarBytes)
	}
	a := res.Archive
	if a.SourceBytes < 0 || a.Files < 0 || a.Entries < 0 || a.Excluded < 0 || a.Skipped < 0 || a.Inodes < 0 || a.Files > a.Entries {
		return malformed("impossible counts in the result: %+v", a)
	}
	archived := tarBytes > 0
	if cfg.BootRaw && res.Syslinux != "" {
		if archived {
			return malformed("archive sent although syslinux was found with boot_partitions: raw")
		}
		return nil
	}
	if !archived || tarBytes%512 != 0 || a.Entries == 0 {
		return malformed("no whole tar stream (%d bytes, %d entries)", tarBytes, a.Entries)
	}
	if res.Statfs == nil {
		return malformed("no statfs in the result")
	}
	if cfg.FSType == "btrfs" && len(res.Subvolumes) == 0 && res.DefaultSubvolume == 0 {
		// Subvolumes may be none, but get-default always answers.
		return malformed("no btrfs default subvolume in the result")
	}
	return nil
}

// strictJSON decodes one JSON value with no unknown fields and nothing after.
func strictJSON(p []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(p))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the value")
	}
	return nil
}

// printable cuts s to 1000 bytes and escapes what is not printable ASCII,
// for logs and error messages.
func printable(s string) string {
	if len(s) > 1000 {
		s = s[:1000] + "..."
	}
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	return b.String()
}

// withConsole adds the end of the guest's console output to err.
func withConsole(err error, console *tail) error {
	out := strings.TrimSpace(console.String())
	if out == "" {
		return err
	}
	lines := strings.Split(out, "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return fail.Hint(err, "the sandbox's console said, last:\n%s", printable(strings.Join(lines, "\n")))
}

// halted reports whether the guest kernel said it powered off.
func (t *tail) halted() bool {
	s := t.String()
	return strings.Contains(s, "reboot: System halted") || strings.Contains(s, "reboot: Power down")
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.ReplaceAll(string(t.b), "\r", "")
}
