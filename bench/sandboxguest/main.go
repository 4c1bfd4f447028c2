// Command sandboxguest measures the sandbox's guest (internal/sandbox) from
// inside: it runs as init of a User-Mode Linux kernel, started by
// bench/sandbox-guest.sh, and prints "BENCH" lines on the console.
//
// Settings come from the kernel command line (KEY=VALUE, which the kernel
// hands to init as environment):
//
//	OPS=1        the cost of a system call, a page fault and a cached lstat
//	MODE=discard archive.Write of the filesystem on /dev/ubda to io.Discard
//	MODE=serial  ... to the raw serial line (the sandbox's transport when
//	             the guest has no mmapper device; else its ring, see
//	             MODE=mmapper)
//	MODE=none    no archive
//	MODE=line    1 GiB of zeros to the raw serial line: the transport alone
//	FSTYPE=ext4  the filesystem's type
//	PREFETCH=0   archive.Options.NoPrefetch, as the sandbox's guest runs
//	BATCH=1      archive.Options.Batch, as the sandbox's guest runs
//	PROCS=2      GOMAXPROCS, as the sandbox's guest sets it
//	MEMLIMIT=96  Go's soft memory limit in MiB (the guest's: 96; 24 and
//	             32 fault a quarter as often, and were not faster)
//	MODE=mmapper 1 GiB copied into the mmapper device (with
//	             iomem=mmapper,FILE on the command line)
//	PROF=1       a CPU profile of the archive, sent on the serial line
//	             at the end (use with MODE=discard)
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"voltar/internal/archive"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "sandboxguest runs as init of a UML kernel: see bench/sandbox-guest.sh")
		os.Exit(2)
	}
	defer func() {
		unix.Sync()
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}()
	for _, m := range []struct{ src, dir, typ string }{{"proc", "/proc", "proc"}, {"run", "/run", "tmpfs"}, {"tmp", "/tmp", "tmpfs"}} {
		if err := unix.Mount(m.src, m.dir, m.typ, 0, ""); err != nil {
			say("mount %s: %v", m.dir, err)
			return
		}
	}
	// As the sandbox's guest (internal/sandbox/guest.go).
	debug.SetMemoryLimit(96 << 20)
	debug.SetGCPercent(-1)
	if n, err := strconv.Atoi(os.Getenv("MEMLIMIT")); err == nil {
		debug.SetMemoryLimit(int64(n) << 20)
	}
	if n, err := strconv.Atoi(os.Getenv("PROCS")); err == nil {
		runtime.GOMAXPROCS(n)
	}
	if os.Getenv("OPS") == "1" {
		ops()
	}
	mode := os.Getenv("MODE")
	if mode == "" || mode == "none" {
		return
	}
	if mode == "mmapper" {
		b, _ := os.ReadFile("/proc/misc")
		var minor uint32
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[1] == "mmapper" {
				fmt.Sscan(f[0], &minor)
			}
		}
		if err := unix.Mknod("/run/mmapper", unix.S_IFCHR|0o600, int(unix.Mkdev(10, minor))); err != nil {
			say("mknod: %v", err)
			return
		}
		fd, err := unix.Open("/run/mmapper", unix.O_RDWR, 0)
		if err != nil {
			say("open: %v", err)
			return
		}
		const size = 16 << 20
		m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			say("mmap: %v", err)
			return
		}
		src := make([]byte, 256<<10)
		for i := range src {
			src[i] = byte(i)
		}
		start := time.Now()
		for i := range (1 << 30) / len(src) {
			off := (i * len(src)) % size
			copy(m[off:], src)
		}
		say("mmapper: 1 GiB copied in %.2f s", time.Since(start).Seconds())
		copy(m, "HELLO")
		return
	}
	if mode == "line" {
		line, err := openLine()
		if err != nil {
			say("%v", err)
			return
		}
		buf := make([]byte, 256<<10)
		before := procStat()
		start := time.Now()
		for range (1 << 30) / len(buf) {
			if _, err := line.Write(buf); err != nil {
				say("write: %v", err)
				return
			}
		}
		unix.IoctlSetInt(int(line.Fd()), unix.TCSBRK, 1)
		say("line: 1 GiB in %.2f s; guest's own counts: %s", time.Since(start).Seconds(), procStat().minus(before))
		return
	}
	fstype := os.Getenv("FSTYPE")
	if fstype == "" {
		fstype = "ext4"
	}
	os.MkdirAll("/run/fs", 0o700)
	if err := unix.Mount("/dev/ubda", "/run/fs", fstype, unix.MS_RDONLY, ""); err != nil {
		say("mount /dev/ubda: %v", err)
		return
	}
	var w io.Writer = io.Discard
	if mode == "serial" {
		line, err := openLine()
		if err != nil {
			say("%v", err)
			return
		}
		defer line.Close()
		w = line
	}
	var prof bytes.Buffer
	if os.Getenv("PROF") == "1" {
		pprof.StartCPUProfile(&prof)
	}
	before := procStat()
	start := time.Now()
	res, err := archive.Write(context.Background(), "/run/fs", w, archive.Options{NoPrefetch: os.Getenv("PREFETCH") == "0", Batch: os.Getenv("BATCH") == "1"})
	took := time.Since(start)
	say("archive: %.2f s, err %v, %d files, %d entries, %d tar bytes; guest's own counts: %s",
		took.Seconds(), err, res.Files, res.Entries, res.TarBytes, procStat().minus(before))
	if os.Getenv("PROF") == "1" {
		pprof.StopCPUProfile()
		line, err := openLine()
		if err != nil {
			say("%v", err)
			return
		}
		line.Write(prof.Bytes())
		unix.IoctlSetInt(int(line.Fd()), unix.TCSBRK, 1)
		line.Close()
	}
}

// ops measures single operations.
func ops() {
	const n = 50000
	t := time.Now()
	for range n {
		syscall.Getpid()
	}
	say("getpid: %.1f us", us(time.Since(t), n))
	t = time.Now()
	for range n {
		unix.Syscall(unix.SYS_GETPID, 0, 0, 0)
	}
	say("getpid through entersyscall: %.1f us", us(time.Since(t), n))
	var st0 unix.Stat_t
	t = time.Now()
	for range n {
		unix.RawSyscall6(unix.SYS_NEWFSTATAT, ^uintptr(99), uintptr(unsafe.Pointer(&[]byte("/proc\x00")[0])), uintptr(unsafe.Pointer(&st0)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
	}
	say("lstat raw: %.1f us", us(time.Since(t), n))
	t = time.Now()
	for range n {
		time.Now()
	}
	say("time.Now: %.1f us", us(time.Since(t), n))
	const size = 64 << 20
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err == nil {
		t = time.Now()
		for i := 0; i < size; i += 4096 {
			b[i] = 1
		}
		say("page fault: %.1f us", us(time.Since(t), size/4096))
		unix.Munmap(b)
	}
	var st unix.Stat_t
	t = time.Now()
	for range n {
		unix.Lstat("/proc", &st)
	}
	say("lstat (cached): %.1f us", us(time.Since(t), n))
}

func us(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "BENCH "+format+"\n", args...)
}

// stat is what the guest kernel counts for this process.
type stat struct{ minflt, majflt, utime, stime int64 }

func procStat() stat {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return stat{}
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var st stat
	fmt.Sscan(f[7], &st.minflt)
	fmt.Sscan(f[9], &st.majflt)
	fmt.Sscan(f[11], &st.utime)
	fmt.Sscan(f[12], &st.stime)
	return st
}

func (s stat) minus(o stat) string {
	return fmt.Sprintf("%d minor and %d major faults, user %.2f s, system %.2f s (USER_HZ 100)",
		s.minflt-o.minflt, s.majflt-o.majflt, float64(s.utime-o.utime)/100, float64(s.stime-o.stime)/100)
}

// openLine opens the first serial line raw, as the sandbox's guest does.
func openLine() (*os.File, error) {
	f, err := os.OpenFile("/dev/ttyS0", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		f.Close()
		return nil, err
	}
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Iflag &^= unix.ICRNL | unix.IXON
	t.Cflag = t.Cflag&^(unix.CSIZE|unix.PARENB) | unix.CS8
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
