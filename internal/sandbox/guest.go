package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"voltar/internal/archive"
	"voltar/internal/btrfs"
	"voltar/internal/disk"
	"voltar/internal/index"
	"voltar/internal/sysexec"
)

// guestDevice is the ubd device of the filesystem, guestLine the serial
// line the stream goes out on.
const (
	guestDevice = "/dev/ubda"
	guestLine   = "/dev/ttyS0"
)

// logRecord is a guest warning.
type logRecord struct {
	Msg   string `json:"msg"`
	Attrs string `json:"attrs"`
}

// guest is PID 1 of the UML kernel: it never returns (PID 1 must not exit:
// the kernel would panic), it powers the guest off.
func guest() {
	os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	// The guest has 256 MiB by default, shared with its page cache. The
	// collector runs only near this limit: every page fault and madvise
	// of a UML process is a round trip through the host's ptrace, and a
	// collector that kept the heap small cost a quarter of the time of a
	// backup of the benchmark corpus (144 s -> 109 s).
	debug.SetMemoryLimit(96 << 20)
	debug.SetGCPercent(-1)
	// UML gives the guest one CPU, and every system call takes longer
	// than the 20 us after which Go's sysmon takes the P of a thread in a
	// system call when no other P is idle, and then keeps waking every
	// 20 us itself: each wake a round trip through the host on the one
	// CPU. With a second P idle it leaves the P alone and sleeps longer.
	// Measured: the guest's archive of the benchmark corpus in 12 s
	// instead of 16.5-17.4 s (docs/performance.md).
	runtime.GOMAXPROCS(2)
	defer poweroff()
	line, err := openLine()
	if err != nil {
		fmt.Fprintf(os.Stderr, "voltar sandbox guest: %v\n", err)
		return
	}
	// The stream goes through the ring (ring.go) where the kernel has
	// the mmapper device, else on the line.
	var out io.Writer = line
	gr, err := openGuestRing()
	if err == nil {
		_, err = line.Write([]byte(ringHello))
	}
	ring := err == nil
	if ring {
		out = gr
	}
	fw := newFrameWriter(out)
	res := guestRun(fw)
	raw, err := json.Marshal(res)
	var cfg guestConfig
	if b, rerr := os.ReadFile(sbConfig); rerr == nil && json.Unmarshal(b, &cfg) == nil && cfg.Lose {
		raw = nil // tests: the result is lost
	}
	if err == nil && raw != nil {
		err = fw.record(RecResult, raw)
	}
	if err == nil {
		err = fw.flush()
	}
	if ring {
		gr.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "voltar sandbox guest: send: %v\n", err)
	}
	// tcdrain: the line's output has left the guest before power-off.
	unix.IoctlSetInt(int(line.Fd()), unix.TCSBRK, 1)
	line.Close()
}

func poweroff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

// openLine opens the serial line in raw mode: every byte passes unchanged.
func openLine() (*os.File, error) {
	f, err := os.OpenFile(guestLine, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", guestLine, err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s raw: %w", guestLine, err)
	}
	return f, nil
}

func guestErr(kind string, err error) Result {
	return Result{Error: &GuestError{Kind: kind, Message: err.Error()}}
}

// guestRun mounts and archives; what went wrong is in the result.
func guestRun(fw *frameWriter) (res Result) {
	defer func() {
		if v := recover(); v != nil {
			res = guestErr(KindArchive, fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
		}
	}()
	ctx := context.Background()
	for _, m := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"}, {"run", "/run", "tmpfs"}, {"tmp", "/tmp", "tmpfs"},
	} {
		if err := unix.Mount(m.src, m.dir, m.typ, unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return guestErr(KindSetup, fmt.Errorf("mount %s: %w", m.dir, err))
		}
	}
	raw, err := os.ReadFile(sbConfig)
	if err != nil {
		return guestErr(KindSetup, err)
	}
	var cfg guestConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return guestErr(KindSetup, fmt.Errorf("config: %w", err))
	}
	kt, data := disk.MountSpec(cfg.FSType)
	if cfg.FSType == "vfat" {
		// UML's fat is a module; names as the Debian kernel's
		// defaults give them (utf8=1).
		if err := loadModules("vfat", "nls_cp437", "nls_iso8859-1", "nls_utf8"); err != nil {
			return guestErr(KindSetup, err)
		}
		data = "utf8"
	}
	if err := os.MkdirAll(guestMount, 0o700); err != nil {
		return guestErr(KindSetup, err)
	}
	// As disk.Mount mounts on the host: read-only, nothing usable. The
	// device is writable (UML's copy-on-write file), so a journal is
	// replayed into the copy.
	const flags = unix.MS_RDONLY | unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC
	if err := unix.Mount(guestDevice, guestMount, kt, flags, data); err != nil {
		merr := &disk.MountError{Dev: guestDevice, Dir: guestMount, Type: kt, Data: data, Err: err}
		if errors.Is(merr, disk.ErrUnsupportedFS) {
			return guestErr(KindUnsupported, merr)
		}
		return guestErr(KindMount, merr)
	}
	defer unix.Unmount(guestMount, 0)

	if cfg.Stall {
		fw.flush()
		select {}
	}
	sys, err := disk.FindSyslinux(guestMount)
	if err != nil {
		return guestErr(KindArchive, fmt.Errorf("look for a bootloader: %w", err))
	}
	if sys != "" && cfg.BootRaw {
		return Result{Syslinux: sys}
	}
	var mu sync.Mutex // archive.Write may log and report from its goroutines
	tw := &countingTar{tarWriter: tarWriter{fw}, mu: &mu}
	log := slog.New(&lineHandler{fw: fw, mu: &mu, level: slog.LevelWarn, sent: new(int)})
	opts := archive.Options{
		Excludes: cfg.Excludes, BtrfsSnapshots: cfg.BtrfsSnapshots, NoProjectIDs: cfg.NoProjectIDs, Logger: log,
		// Each of the prefetcher's system calls is a round trip through
		// the host here: without it the guest needed less host CPU
		// (23-33 s against 32-36 s for the benchmark corpus) and was no
		// slower, with a cold host cache too (docs/performance.md).
		NoPrefetch: true,
		// The lstat, open, first read and close of each entry go through
		// io_uring in batches, one round trip for many (20 s against 27-32 s
		// for the guest's archive of the benchmark corpus).
		Batch: true,
		Progress: func(p archive.Progress) {
			var b [16]byte
			binary.BigEndian.PutUint64(b[:], uint64(p.Bytes))
			binary.BigEndian.PutUint64(b[8:], uint64(p.Files))
			mu.Lock()
			fw.record(RecProgress, b[:])
			mu.Unlock()
		},
	}
	// Index entries go back as lines, batched into records of at most
	// indexBatch bytes (one line is at most ~12 KiB).
	var ixbuf []byte
	sendIndex := func() error {
		if len(ixbuf) == 0 {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		err := fw.record(RecIndex, ixbuf)
		ixbuf = ixbuf[:0]
		return err
	}
	if cfg.Index {
		opts.Index = func(e *index.Entry) error {
			ixbuf = index.AppendEntry(ixbuf, e)
			if len(ixbuf) >= indexBatch {
				return sendIndex()
			}
			return nil
		}
	}
	ares, err := archive.Write(ctx, guestMount, tw, opts)
	if err == nil {
		err = sendIndex()
	}
	if errors.Is(err, archive.ErrEncrypted) {
		return guestErr(KindEncrypted, err)
	}
	if err != nil {
		return guestErr(KindArchive, err)
	}
	res = Result{Archive: ares, Syslinux: sys, TarBytes: tw.n}
	var st unix.Statfs_t
	if err := unix.Statfs(guestMount, &st); err != nil {
		return guestErr(KindCheck, fmt.Errorf("statfs: %w", err))
	}
	res.Statfs = &Statfs{Blocks: st.Blocks, Bfree: st.Bfree, Bsize: uint64(st.Bsize), Files: st.Files, Ffree: st.Ffree}
	if cfg.FSType == "btrfs" {
		if res.Subvolumes, err = btrfs.List(ctx, sysexec.Exec{}, guestMount); err != nil {
			return guestErr(KindCheck, err)
		}
		if res.DefaultSubvolume, err = btrfs.Default(ctx, sysexec.Exec{}, guestMount); err != nil {
			return guestErr(KindCheck, err)
		}
	}
	return res
}

// indexBatch is the size of index records the guest sends.
const indexBatch = 64 << 10

// loadModules loads UML modules from the host's /usr/lib/uml/modules.
func loadModules(names ...string) error {
	if err := os.MkdirAll("/run/modroot/lib", 0o755); err != nil {
		return err
	}
	if err := os.Symlink("/usr/lib/uml/modules", "/run/modroot/lib/modules"); err != nil {
		return err
	}
	for _, n := range names {
		if out, err := exec.Command("modprobe", "-d", "/run/modroot", n).CombinedOutput(); err != nil {
			return fmt.Errorf("modprobe %s: %v: %s", n, err, out)
		}
	}
	return nil
}

// countingTar sends tar records and counts their bytes.
type countingTar struct {
	tarWriter
	mu *sync.Mutex
	n  int64
}

func (c *countingTar) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.tarWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// lineHandler sends the archive walk's warnings as log records.
type lineHandler struct {
	fw    *frameWriter
	mu    *sync.Mutex
	level slog.Level
	attrs []slog.Attr
	sent  *int
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	add := func(a slog.Attr) bool { fmt.Fprintf(&b, "%s=%v ", a.Key, a.Value); return true }
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	raw, err := json.Marshal(logRecord{Msg: trunc(r.Message, 1000), Attrs: trunc(strings.TrimSpace(b.String()), 8000)})
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// The host takes maxLogs; the archive's result counts the rest.
	if *h.sent++; *h.sent > maxLogs-1 {
		return nil
	}
	return h.fw.record(RecLog, raw)
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return &c
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
