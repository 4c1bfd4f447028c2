package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	envRole    = "VOLTAR_SANDBOX"
	envSpec    = "VOLTAR_SANDBOX_SPEC"
	roleLaunch = "launch"
	roleGuest  = "guest"
)

// Paths inside the sandbox's root (the launcher's tmpfs, which is also
// the guest's hostfs root).
const (
	sbDir      = "/sb"
	sbDisk     = sbDir + "/disk"   // block device node of Config.Device, owned by the sandbox user
	sbCOW      = sbDir + "/cow"    // UML's copy-on-write file over it
	sbBinary   = sbDir + "/voltar" // the binary, bind-mounted read-only
	sbConfig   = sbDir + "/config.json"
	sbTmp      = sbDir + "/tmp" // TMPDIR of UML: its RAM file
	sbUMLDir   = sbDir + "/uml"
	dataFD     = 3 // the stream's pipe, in the launcher and UML
	guestMount = "/run/fs"
)

// brkRandom is how far the host kernel may move a 64-bit process's heap
// from the end of its binary (arch_randomize_brk: 1 GiB).
const brkRandom = 1 << 30

// spec is what the host tells the launcher.
type spec struct {
	Dir      string
	Binary   string
	Kernel   string
	UID, GID int
	DevMajor uint32
	DevMinor uint32
	Memory   int64
	Scratch  int64
	FSize    int64
	CPU      int64 // seconds
	Pin      int   // the host CPU the sandbox runs on, -1 for any (cpu.go)
	Guest    guestConfig
}

// guestConfig is what the guest is told (sb/config.json).
type guestConfig struct {
	FSType         string   `json:"fs_type"`
	Excludes       []string `json:"excludes"`
	BtrfsSnapshots bool     `json:"btrfs_snapshots"`
	NoProjectIDs   bool     `json:"no_project_ids,omitempty"`
	BootRaw        bool     `json:"boot_raw"`
	Index          bool     `json:"index,omitempty"` // send index-entry records
	Stall          bool     `json:"stall,omitempty"`
	Lose           bool     `json:"lose,omitempty"`
}

func newSpec(cfg Config, lim Limits) (*spec, error) {
	if cfg.Device == "" || cfg.Dir == "" || cfg.FSType == "" {
		return nil, errors.New("sandbox: device, dir and filesystem type are required")
	}
	s := &spec{Dir: cfg.Dir, Binary: cfg.Binary, Kernel: cfg.Kernel, Memory: lim.Memory, Scratch: lim.Scratch,
		CPU: int64(lim.CPU.Seconds()), Pin: pickCPU(),
		Guest: guestConfig{FSType: cfg.FSType, Excludes: cfg.Excludes, BtrfsSnapshots: cfg.BtrfsSnapshots, NoProjectIDs: cfg.NoProjectIDs, BootRaw: cfg.BootRaw, Index: cfg.Index != nil, Stall: lim.TestStall, Lose: lim.TestLose}}
	var err error
	if s.Binary == "" {
		if s.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("sandbox: own binary: %w", err)
		}
	}
	if s.Kernel == "" {
		if s.Kernel, err = exec.LookPath("linux.uml"); err != nil {
			return nil, ErrNoKernel
		}
	}
	if s.Kernel, err = filepath.EvalSymlinks(s.Kernel); err != nil {
		return nil, fmt.Errorf("sandbox: kernel: %w", err)
	}
	if !strings.HasPrefix(s.Kernel, "/usr/") {
		// The sandbox's root holds the host's /usr only.
		return nil, fmt.Errorf("sandbox: kernel %s is not under /usr", s.Kernel)
	}
	name := cfg.User
	if name == "" {
		name = DefaultUser
	}
	if s.UID, s.GID, err = User(name); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(cfg.Device, &st); err != nil {
		return nil, fmt.Errorf("sandbox: %w", &os.PathError{Op: "stat", Path: cfg.Device, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, fmt.Errorf("sandbox: %s is not a block device", cfg.Device)
	}
	s.DevMajor, s.DevMinor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	size, err := deviceSize(cfg.Device)
	if err != nil {
		return nil, err
	}
	// The COW file is sparse but as long as the device (plus its
	// header and bitmap). UML's RAM file is sparse too, and longer than
	// mem= by the distance between the end of its binary and its heap,
	// which the host's ASLR randomizes by up to 1 GiB (a 64-bit brk).
	// RLIMIT_FSIZE bounds their length, the tmpfs's size what they take.
	s.FSize = max(size+size/4096, lim.Memory+brkRandom) + 64<<20
	return s, nil
}

func deviceSize(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, fmt.Errorf("sandbox: %w", err)
	}
	defer f.Close()
	n, err := f.Seek(0, 2)
	if err != nil {
		return 0, fmt.Errorf("sandbox: size of %s: %w", dev, err)
	}
	return n, nil
}

// ErrNoKernel: linux.uml is not installed.
var ErrNoKernel = errors.New("sandbox: linux.uml not found (apt-get install user-mode-linux)")

// Main runs the launcher or the guest when this process is one (see the
// package doc), and never returns then. Otherwise it returns at once.
func Main() {
	switch os.Getenv(envRole) {
	case roleLaunch:
		err := launch()
		fmt.Fprintf(os.Stderr, "voltar sandbox launcher: %v\n", err)
		os.Exit(111)
	case roleGuest:
		if os.Getpid() == 1 {
			guest()
		}
	}
}

// launch runs as root, as PID 1 of new mount, PID, network, IPC and UTS
// namespaces (Archive's clone flags), and ends in exec of UML as the
// sandbox user.
func launch() error {
	// Bounding set, no_new_privs and the parent-death signal belong to
	// the thread that calls execve.
	runtime.LockOSThread()
	var s spec
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &s); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	// Before UML starts: its processes and threads inherit it.
	pin(s.Pin)
	raisePriority()
	if err := buildRoot(&s); err != nil {
		return err
	}
	if err := enterRoot(filepath.Join(s.Dir, "root")); err != nil {
		return err
	}
	lims := []struct {
		res int
		v   uint64
	}{
		// UML maps its RAM file (see FSize) and its helpers share
		// that map: the address space needs that plus room for the
		// binary, stacks and libraries. What the guest really uses
		// is bounded by the tmpfs that holds the RAM file.
		{unix.RLIMIT_AS, uint64(s.Memory) + brkRandom + 1<<30},
		{unix.RLIMIT_CPU, uint64(s.CPU)},
		{unix.RLIMIT_FSIZE, uint64(s.FSize)},
		{unix.RLIMIT_NOFILE, 256},
		// Counted per uid, over every sandbox running at once: UML
		// makes a host process per guest address space (a handful).
		{unix.RLIMIT_NPROC, 512},
		{unix.RLIMIT_CORE, 0},
		{unix.RLIMIT_MEMLOCK, 0},
		{unix.RLIMIT_MSGQUEUE, 0},
	}
	for _, l := range lims {
		if err := unix.Setrlimit(l.res, &unix.Rlimit{Cur: l.v, Max: l.v}); err != nil {
			return fmt.Errorf("setrlimit %d: %w", l.res, err)
		}
	}
	for c := 0; c <= 63; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // past the last capability
			}
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(s.GID, s.GID, s.GID); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(s.UID, s.UID, s.UID); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	// A credential change clears the parent-death signal: set it again.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("pdeathsig: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &caps[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, c := range caps {
		if c.Effective|c.Permitted|c.Inheritable != 0 {
			return errors.New("capabilities left after dropping to the sandbox user")
		}
	}
	// Only stdio and the stream's pipe go on.
	for fd := dataFD + 1; fd < 1024; fd++ {
		unix.CloseOnExec(fd)
	}
	null, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err == nil {
		unix.Dup2(null, 0)
		unix.Close(null)
	}
	args := []string{"linux.uml",
		"mem=" + strconv.FormatInt(s.Memory>>20, 10) + "M",
		"root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
		"ubd0=" + sbCOW + "," + sbDisk, ringArg(),
		"init=" + sbBinary, envRole + "=" + roleGuest,
		"uml_dir=" + sbUMLDir, "umid=sandbox",
		// Console (kernel messages, the guest's stderr) on our stderr;
		// the stream on the first serial line; no network device.
		"con=null", "con0=null,fd:2", "ssl=null", "ssl0=null,fd:" + strconv.Itoa(dataFD),
		"quiet", "loglevel=" + loglevel(), "zswap.enabled=0", "pty.legacy_count=0",
	}
	env := []string{"TMPDIR=" + sbTmp, "PATH=/usr/bin"}
	return syscall.Exec(s.Kernel, args, env)
}

// buildRoot mounts the sandbox's private root on a tmpfs over s.Dir: the
// host's /usr read-only (binaries and libraries for UML and for the
// guest, which sees this root through hostfs), a few character devices,
// and sb/ with the one block device, the binary and the guest's config.
// No other host path is visible to the sandbox.
func buildRoot(s *spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	size := s.Memory + s.Scratch + ringSize + 16<<20
	if err := unix.Mount("voltar-sandbox", s.Dir, "tmpfs", unix.MS_NOSUID,
		fmt.Sprintf("size=%d,mode=0755,nr_inodes=4096", size)); err != nil {
		return fmt.Errorf("tmpfs on %s: %w", s.Dir, err)
	}
	root := filepath.Join(s.Dir, "root")
	p := func(rel string) string { return filepath.Join(root, rel) }
	for _, d := range []string{"", "usr", "etc", "dev", "proc", "run", "mnt", "tmp", "sb"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			return err
		}
	}
	if err := bindRO("/usr", p("usr")); err != nil {
		return err
	}
	// /bin, /lib, ... are symlinks into /usr on Debian 12; elsewhere
	// bind them too.
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		fi, err := os.Lstat("/" + d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink("/" + d)
			if err != nil {
				return err
			}
			if err := os.Symlink(t, p(d)); err != nil {
				return err
			}
		default:
			if err := os.Mkdir(p(d), 0o755); err != nil {
				return err
			}
			if err := bindRO("/"+d, p(d)); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		if err := os.WriteFile(p("etc/ld.so.cache"), nil, 0o644); err != nil {
			return err
		}
		if err := bindRO("/etc/ld.so.cache", p("etc/ld.so.cache")); err != nil {
			return err
		}
	}
	for _, n := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"urandom", 1, 9}} {
		if err := unix.Mknod(p("dev/"+n.name), unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", n.name, err)
		}
		unix.Chmod(p("dev/"+n.name), 0o666)
	}
	// The device node needs a tmpfs without nodev. (Not noexec either:
	// UML maps its RAM file executable.)
	if err := unix.Mknod(p(sbDisk), unix.S_IFBLK|0o600, int(unix.Mkdev(s.DevMajor, s.DevMinor))); err != nil {
		return fmt.Errorf("mknod %s: %w", sbDisk, err)
	}
	if err := os.Chown(p(sbDisk), s.UID, s.GID); err != nil {
		return err
	}
	for _, d := range []string{sbTmp, sbUMLDir} {
		if err := os.Mkdir(p(d), 0o700); err != nil {
			return err
		}
		if err := os.Chown(p(d), s.UID, s.GID); err != nil {
			return err
		}
	}
	// UML creates the COW file next to the device node.
	if err := os.Chown(p(sbDir), s.UID, s.GID); err != nil {
		return err
	}
	if err := makeRing(p(sbRing), s.UID, s.GID); err != nil {
		return fmt.Errorf("ring: %w", err)
	}
	raw, err := json.Marshal(s.Guest)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p(sbConfig), raw, 0o444); err != nil {
		return err
	}
	if err := os.WriteFile(p(sbBinary), nil, 0o555); err != nil {
		return err
	}
	if err := bindRO(s.Binary, p(sbBinary)); err != nil {
		return err
	}
	return nil
}

// enterRoot makes root the root of the sandbox's mount namespace and
// detaches everything else. A new mount namespace starts as a copy of
// every mount of the host's; under a mere chroot those copies would stay
// for the sandbox's whole life, and a filesystem the host unmounted
// meanwhile would not be released: its last writes unflushed to its
// device, the device still busy (a loop device not freed, a snapshot not
// removable). After pivot_root the old root is stacked on the new one at
// "/" and is detached from there.
func enterRoot(root string) error {
	// pivot_root wants the new root to be a mount point.
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind the sandbox's root: %w", err)
	}
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("chdir: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's mounts: %w", err)
	}
	return unix.Chdir("/")
}

// sandboxNice is how many nice levels the sandbox runs above voltar (the
// operator's nice: `nice -n 10 voltar run` still leaves the sandbox below
// everything at 0). UML runs the guest on one CPU, and that CPU's work
// sets the pace of the backup; the host's compressors can move to the
// other CPUs, and did not: they took a third of the sandbox's CPU, and
// the backup of the benchmark corpus took 22.7 s instead of 20.5-21.1 s
// (docs/performance.md).
const sandboxNice = 5

// raisePriority gives the launcher (and UML after it) sandboxNice levels
// more than its parent has, as root before the privileges are dropped.
func raisePriority() {
	// The system call returns 20 - nice (x/sys/unix does not convert).
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		return
	}
	nice := max(20-prio-sandboxNice, -20)
	_ = unix.Setpriority(unix.PRIO_PROCESS, 0, nice)
}

func bindRO(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("bind %s read-only: %w", src, err)
	}
	return nil
}

func loglevel() string {
	if os.Getenv("VOLTAR_SANDBOX_CONSOLE") == "1" {
		return "7"
	}
	return "3"
}
