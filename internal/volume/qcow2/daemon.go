package qcow2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/fail"
	"voltar/internal/volume"
)

// startTimeout bounds how long the daemon may take to set up its export.
const startTimeout = 30 * time.Second

// daemon is a running qemu-storage-daemon.
type daemon struct {
	cmd  *exec.Cmd
	log  string // its stdout and stderr
	done chan struct{}
	err  error // set when done is closed
}

// output is the end of what the daemon wrote.
func (d *daemon) output() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return strings.TrimSpace(string(b))
}

// exportID is the id of every export of this installation: the mark by
// which a sweep finds a dead run's daemons.
func exportID(scope string) string { return "voltar-" + scope }

// node is a --blockdev argument.
type node map[string]any

// graph is the block graph of v read through top (the image or its
// clone): a file and a format node per layer, each format node naming the
// next as its backing (so qemu opens exactly the chain voltar resolved,
// read-only), and the writable overlay on top, which is exported.
func (s *Snapshotter) graph(v volume.Volume, top string, n names) []node {
	layers := append([]volume.Layer{{Path: top, Format: volume.FormatQcow2, Size: v.Size}}, v.Backing...)
	var out []node
	for i := len(layers) - 1; i >= 0; i-- {
		l := layers[i]
		f, fmtNode := "f"+strconv.Itoa(i), "n"+strconv.Itoa(i)
		out = append(out, node{"driver": protocol(l.Path), "node-name": f, "filename": l.Path, "read-only": true})
		fn := node{"driver": l.Format, "node-name": fmtNode, "file": f, "read-only": true}
		if l.Format == volume.FormatQcow2 {
			if i+1 < len(layers) {
				fn["backing"] = "n" + strconv.Itoa(i+1)
			} else {
				fn["backing"] = nil
			}
		}
		out = append(out, fn)
	}
	// The overlay is thrown away: its writes need no flushes.
	out = append(out,
		node{"driver": "file", "node-name": "fo", "filename": n.overlay, "cache": node{"no-flush": true}},
		node{"driver": "qcow2", "node-name": "ov", "file": "fo", "backing": "n0"})
	return out
}

// protocol is qemu's driver for the file at p: host_device for a block
// device (a backing file on an LV), file otherwise.
func protocol(p string) string {
	if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
		return "host_device"
	}
	return "file"
}

// createOverlay makes an empty qcow2 file of size at path; its backing is
// given when it is opened (graph), none is written into it.
func (s *Snapshotter) createOverlay(ctx context.Context, path string, size int64) error {
	tool := s.QemuImg
	if tool == "" {
		tool = "qemu-img"
	}
	cmd := exec.CommandContext(ctx, tool, "create", "-q", "-f", "qcow2", path, strconv.FormatInt(size, 10))
	out, err := cmd.CombinedOutput()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fail.Hint(fmt.Errorf("overlay %s: %w", path, err), "install qemu-utils (qemu-img) to back up qcow2 images")
		}
		return fmt.Errorf("overlay %s: qemu-img create: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// start runs the daemon exporting graph's last node on n.export.
func (s *Snapshotter) start(ctx context.Context, n names, graph []node) (*daemon, error) {
	return startDaemon(ctx, s.Daemon, s.Scope, n.export, graph)
}

// startDaemon runs qemu-storage-daemon (tool, "" for the one in PATH)
// with graph, exporting its last node writable on export (a file in a
// directory of its own, made here) with the export id of scope, and waits
// until the export is there (the daemon writes its pid file only after
// setting up its exports).
func startDaemon(ctx context.Context, tool, scope, export string, graph []node) (*daemon, error) {
	if tool == "" {
		tool = "qemu-storage-daemon"
	}
	dir := filepath.Dir(export)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("export directory: %w", err)
	}
	// FUSE mounts on a regular file only.
	f, err := os.OpenFile(export, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	pidfile := filepath.Join(dir, "pid")
	var args []string
	for _, nd := range graph {
		b, _ := json.Marshal(nd)
		args = append(args, "--blockdev", string(b))
	}
	top := graph[len(graph)-1]["node-name"]
	exp, _ := json.Marshal(node{"type": "fuse", "id": exportID(scope), "node-name": top, "mountpoint": export, "writable": true})
	args = append(args, "--export", string(exp), "--pidfile", pidfile)
	cmd := exec.Command(tool, args...)
	// Its output goes to a file next to the export, not a pipe: a daemon
	// that outlives a killed voltar must not die of SIGPIPE.
	logf, err := os.OpenFile(filepath.Join(dir, "daemon.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d := &daemon{cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C on the terminal reaches voltar,
	// which unmounts before it stops the daemon. No parent-death signal:
	// when voltar is killed with SIGKILL the daemon keeps serving its
	// export, so the next command's sweep can still read the loop devices
	// over it (a loop device over a dead FUSE file cannot even say whose
	// it is), detach them, and then stop the daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fail.Hint(err, "install qemu-system-common (qemu-storage-daemon) to back up qcow2 images")
		}
		return nil, err
	}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-d.done:
			return nil, d.failure()
		case <-ctx.Done():
			d.stop()
			return nil, ctx.Err()
		case <-deadline.C:
			d.stop()
			return nil, fmt.Errorf("qemu-storage-daemon did not set up its export within %s: %s", startTimeout, d.output())
		case <-tick.C:
			if _, err := os.Stat(pidfile); err == nil && isMounted(export) {
				return d, nil
			}
		}
	}
}

// failure explains a daemon that exited.
func (d *daemon) failure() error {
	msg := d.output()
	err := fmt.Errorf("qemu-storage-daemon: %v: %s", d.err, msg)
	if strings.Contains(msg, "Failed to get") && strings.Contains(msg, "lock") {
		return fail.Hint(err, "another process (a running VM?) has the image open for writing: stop it before an offline backup, or back it up live (without offline)")
	}
	return err
}

// exited returns an error once the daemon has exited.
func (d *daemon) exited() error {
	select {
	case <-d.done:
		return d.failure()
	default:
		return nil
	}
}

// stop ends the daemon: SIGTERM (it unmounts its export and exits), then
// SIGKILL after a while.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// proc is a qemu-storage-daemon found in /proc.
type proc struct {
	pid    int
	export string // its export's mount point
}

// daemons lists the running qemu-storage-daemons whose arguments match.
func daemons(match func(args []string) bool) []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if filepath.Base(args[0]) != "qemu-storage-daemon" || !match(args) {
			continue
		}
		out = append(out, proc{pid: pid, export: exportOf(args)})
	}
	return out
}

// exportOf is the mount point of the first FUSE export in args.
func exportOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "--export" {
			continue
		}
		var e struct {
			Mountpoint string `json:"mountpoint"`
		}
		if json.Unmarshal([]byte(args[i+1]), &e) == nil && e.Mountpoint != "" {
			return e.Mountpoint
		}
	}
	return ""
}

// readsFile reports whether the daemon's args open the file at path.
func readsFile(args []string, path string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "--blockdev" {
			continue
		}
		var n struct {
			Filename string `json:"filename"`
		}
		if json.Unmarshal([]byte(args[i+1]), &n) == nil && n.Filename == path {
			return true
		}
	}
	return false
}

func exportsTo(args []string, export string) bool { return exportOf(args) == export }

func hasExportID(args []string, id string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "--export" {
			continue
		}
		var e struct {
			ID string `json:"id"`
		}
		if json.Unmarshal([]byte(args[i+1]), &e) == nil && e.ID == id {
			return true
		}
	}
	return false
}

// killDaemon stops a daemon that is not this process's child: SIGTERM,
// then SIGKILL.
func killDaemon(p proc) error {
	if err := unix.Kill(p.pid, unix.SIGTERM); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("stop qemu-storage-daemon %d: %w", p.pid, err)
	}
	for range 100 {
		if unix.Kill(p.pid, 0) != nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	unix.Kill(p.pid, unix.SIGKILL)
	return nil
}

// unmountExport undoes an export's FUSE mount that its daemon left (a
// daemon killed with SIGKILL): a plain unmount, else a lazy one (a loop
// device may still hold the file).
func unmountExport(p string) error {
	if !isMounted(p) {
		return nil
	}
	if err := unix.Unmount(p, 0); err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount export %s: %w", p, err)
	}
	return nil
}

// isMounted reports whether p is a mount point (from /proc/self/mountinfo).
func isMounted(p string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMount(f[4]) == p {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Server is a qemu-storage-daemon serving one qcow2 image read-write as a
// raw view: restore --to-image --format qcow2 writes through it.
type Server struct {
	d      *daemon
	export string
}

// Serve exports the qcow2 image at path writable on export, a file in a
// directory of its own whose name ends in ".export" (the sweep of the
// installation with scope finds a dead run's by it and by the daemon's
// export id). The caller must Close it.
func Serve(ctx context.Context, path, export, scope string) (*Server, error) {
	if !strings.HasSuffix(filepath.Dir(export), ".export") {
		return nil, fmt.Errorf("export %s: its directory must end in .export", export)
	}
	graph := []node{
		{"driver": "file", "node-name": "f0", "filename": path},
		{"driver": "qcow2", "node-name": "n0", "file": "f0"},
	}
	d, err := startDaemon(ctx, "", scope, export, graph)
	if err != nil {
		removeExport(export)
		return nil, fmt.Errorf("export %s: %w", path, err)
	}
	return &Server{d: d, export: export}, nil
}

// Path is the exported raw view.
func (s *Server) Path() string { return s.export }

// Close stops the daemon, which flushes the image, and removes the export
// file and its directory. The error says if the daemon had died or did
// not exit cleanly: the image may then lack writes.
func (s *Server) Close() error {
	err := s.d.exited()
	s.d.stop()
	if err == nil && s.d.err != nil {
		err = fmt.Errorf("qemu-storage-daemon: %v: %s", s.d.err, s.d.output())
	}
	return errors.Join(err, removeExport(s.export))
}

// removeExport undoes what is left of an export: its mount, the file, the
// pid file, the directory.
func removeExport(export string) error {
	var errs []error
	if err := unmountExport(export); err != nil {
		errs = append(errs, err)
	}
	for _, f := range []string{export, filepath.Join(filepath.Dir(export), "pid"), filepath.Join(filepath.Dir(export), "daemon.log")} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(filepath.Dir(export)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
