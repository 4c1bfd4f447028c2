package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/disk"
	"voltar/internal/fail"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store"
	"voltar/internal/sysexec"
	"voltar/internal/units"
	"voltar/internal/verify"
)

// ToImage recreates the backed-up volume in file: the partition table from
// the manifest, the bytes outside the partitions (boot code, gaps) around
// it, each filesystem re-made with its type, UUID and label and its
// archive restored into it, raw partitions written back.
//
// The image is raw, or qcow2 with opts.Format (toQcow2). file must not
// exist (it is created sparse, with the volume's size) or be an empty
// regular file; anything else is refused, so a restore never
// overwrites an image that holds data. If the restore fails, a file it
// created is removed and an empty one truncated back to empty.
func ToImage(ctx context.Context, st store.Store, b *catalog.Backup, file string, opts Options) (res Result, err error) {
	res = Result{ID: b.ID, Target: file, Filesystems: []FSResult{}, Warnings: []string{}}
	defer func() { res.stopped(err) }()
	switch opts.Format {
	case "", FormatRaw:
	case FormatQcow2:
		return res, toQcow2(ctx, st, b, file, opts, &res)
	default:
		return res, fail.Usage(fmt.Errorf("image format %q: want raw or qcow2", opts.Format))
	}
	plan, sums, err := prepareVolume(ctx, st, b, opts, &res)
	if err != nil {
		return res, err
	}
	f, created, err := createImage(file, plan.size)
	if err != nil {
		return res, err
	}
	defer func() {
		f.Close()
		// An image with entries refused is kept: everything else is in it.
		if err != nil && !errors.Is(err, ErrSkippedEntries) {
			if created {
				os.Remove(file)
			} else {
				os.Truncate(file, 0)
			}
			err = fmt.Errorf("restore to image %s failed, image removed: %w", file, err)
		}
	}()
	t := &volTarget{path: file, f: f, sector: tableSector(plan.table), fresh: true}
	return res, restoreVolume(ctx, st, b, t, plan, sums, &res, opts)
}

// ToDevice recreates the backed-up volume on the block device dev, like
// ToImage. dev is refused, before anything is written, when it or any of
// its partitions is mounted, used as swap, held by device-mapper or md,
// backs a loop device or is open exclusively, and when it is smaller than
// the volume. It stays open exclusively during the restore.
func ToDevice(ctx context.Context, st store.Store, b *catalog.Backup, dev string, opts Options) (res Result, err error) {
	res = Result{ID: b.ID, Target: dev, Filesystems: []FSResult{}, Warnings: []string{}}
	defer func() { res.stopped(err) }()
	plan, sums, err := prepareVolume(ctx, st, b, opts, &res)
	if err != nil {
		return res, err
	}
	d, err := claimDevice(dev)
	if err != nil {
		return res, err
	}
	// What the device itself decides (its size, its sector size for the
	// table) is checked before the first byte is written to it.
	if err := fits(plan, dev, d.size, d.sectorSize); err != nil {
		d.f.Close()
		return res, err
	}
	if (plan.table.Type == "gpt" || plan.table.Type == "mbr") && d.sectorSize != tableSector(plan.table) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the backed-up disk had %d-byte sectors, %s has %d-byte ones: the partition table is written for %s's (same byte offsets), so a guest must see it with %d-byte sectors",
			tableSector(plan.table), dev, d.sectorSize, dev, d.sectorSize))
	}
	defer func() {
		d.f.Close()
		// Let the kernel see the new table, where it reads tables.
		if f, oerr := os.Open(dev); oerr == nil {
			unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
			f.Close()
		}
		if err != nil && !errors.Is(err, ErrSkippedEntries) {
			err = fmt.Errorf("restore to %s failed, the device holds a partial restore: %w", dev, err)
		}
	}()
	t := &volTarget{path: dev, f: d.f, sector: d.sectorSize}
	return res, restoreVolume(ctx, st, b, t, plan, sums, &res, opts)
}

// fits checks that a device of size bytes and sector-byte sectors can take
// the plan: large enough, and the table expressible in its sectors.
func fits(p *volPlan, dev string, size, sector int64) error {
	if size < p.size {
		return fail.Usage(fmt.Errorf("restore target %s has %d bytes, the volume needs %d", dev, size, p.size))
	}
	if p.table.Type == "mbr" || p.table.Type == "gpt" {
		if _, err := sfdiskScript(p.table, sector); err != nil {
			return fail.Usage(fmt.Errorf("restore target %s (%d-byte sectors): %w", dev, sector, err))
		}
	}
	return nil
}

// volTarget is an image file or device being written.
type volTarget struct {
	path   string
	name   string // what messages call it, when not path (a qcow2 image's export)
	f      *os.File
	sector int64
	fresh  bool // all zero: a new image
}

// String names the target in messages.
func (t *volTarget) String() string {
	if t.name != "" {
		return t.name
	}
	return t.path
}

// tableSector is the logical sector size a table was read with: an image
// is restored with it, so a 4Kn GPT stays one.
func tableSector(t manifest.Table) int64 {
	if t.SectorSize > 0 {
		return int64(t.SectorSize)
	}
	return 512
}

type volPlan struct {
	size  int64
	table manifest.Table
	steps []volStep
}

// volStep is one filesystem and where it goes.
type volStep struct {
	fs        manifest.Filesystem
	off, size int64
}

// prepareVolume checks everything that can be checked before the target
// is touched: the layout, the tools and kernel support for each
// filesystem, and that SHA256SUMS and the manifest agree.
func prepareVolume(ctx context.Context, st store.Store, b *catalog.Backup, opts Options, res *Result) (*volPlan, catalog.Sums, error) {
	if opts.Partition != "" {
		return nil, nil, fail.Usage(errors.New("--partition restores one filesystem into a directory (--to DIR), not a volume"))
	}
	if err := validManifest(b); err != nil {
		return nil, nil, err
	}
	m := b.Manifest
	p := &volPlan{size: m.Volume.Size, table: m.Table}
	res.Table = m.Table.Type
	if p.size <= 0 {
		return nil, nil, fmt.Errorf("backup %s records no volume size; restore its filesystems with --to DIR", b.ID)
	}
	if m.Table.Type == "mbr" || m.Table.Type == "gpt" {
		if _, err := exec.LookPath("sfdisk"); err != nil {
			return nil, nil, fmt.Errorf("re-making the %s partition table needs sfdisk: %w", m.Table.Type, err)
		}
		if _, err := sfdiskScript(m.Table, tableSector(m.Table)); err != nil {
			return nil, nil, err
		}
	} else if m.Table.Type != "none" && m.Table.Type != "" {
		return nil, nil, fmt.Errorf("backup %s: partition table type %q cannot be re-made", b.ID, m.Table.Type)
	}
	var archives []manifest.Filesystem
	for _, fs := range m.Filesystems {
		s := volStep{fs: fs, off: 0, size: p.size}
		if m.Table.Type == "mbr" || m.Table.Type == "gpt" {
			i := -1
			for j, part := range m.Table.Partitions {
				if part.Number == fs.Partition {
					i = j
				}
			}
			if i < 0 {
				return nil, nil, fmt.Errorf("backup %s: %s names partition %d, which the table lacks", b.ID, fs.Name, fs.Partition)
			}
			s.off, s.size = m.Table.Partitions[i].Start, m.Table.Partitions[i].Size
		}
		if s.off+s.size > p.size {
			return nil, nil, fmt.Errorf("backup %s: %s ends at byte %d, past the volume's %d", b.ID, fs.Name, s.off+s.size, p.size)
		}
		switch {
		case fs.Mode == manifest.ModeFiles:
			if err := canMake(fs, true); err != nil {
				return nil, nil, err
			}
			if err := roomFor(fs); err != nil {
				return nil, nil, err
			}
			if len(fs.Subvolumes) > 0 {
				if _, err := exec.LookPath("btrfs"); err != nil {
					return nil, nil, fmt.Errorf("%s: re-making its btrfs subvolumes needs btrfs (btrfs-progs): %w", fs.Name, err)
				}
				for _, sv := range fs.Subvolumes {
					if _, err := subvolPath("/", sv.Path); err != nil {
						return nil, nil, fmt.Errorf("backup %s %s: %w", b.ID, fs.Name, err)
					}
				}
				res.Warnings = append(res.Warnings, subvolumeWarnings(fs, false)...)
			}
			archives = append(archives, fs)
		case fs.Mode == manifest.ModeRaw:
			archives = append(archives, fs)
		case fs.Type == "swap":
			if err := canMake(fs, false); err != nil {
				return nil, nil, err
			}
		default:
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s (%s) was not backed up (%s); left empty", fs.Name, fs.What(), fs.Reason))
			continue
		}
		p.steps = append(p.steps, s)
	}
	if m.Outside != nil {
		archives = append(archives, m.Outside.Entry())
	}
	sums, err := readSums(ctx, st, b, archives, res)
	if err != nil {
		return nil, nil, err
	}
	if err := checkKeys(ctx, st, b, archives, opts.Identities); err != nil {
		return nil, nil, err
	}
	return p, sums, nil
}

// ErrNoRoom is matched when a re-made filesystem could not hold what the
// backup holds: checked before anything is written.
var ErrNoRoom = errors.New("would not fit")

// roomFor checks that fs, re-made with its recorded size and mkfs
// parameters, holds what its archive holds: its inodes (ext: a fixed
// count), and its data once the data its files shared (reflinks,
// snapshots) is written once per file, as a restore of files does. The
// source's free space is what the re-made filesystem has for that growth.
func roomFor(fs manifest.Filesystem) error {
	if mp, c := fs.Mkfs, fs.Check; mp != nil && c != nil && mp.Inodes > 0 && c.Holds > mp.Inodes {
		return fmt.Errorf("%s (%s): %w: it held %d inodes, its recorded inode count is %d", fs.Name, fs.Type, ErrNoRoom, c.Holds, mp.Inodes)
	}
	sp := fs.Space
	grow := sp.Unshared()
	if grow <= 0 {
		return nil
	}
	// Headroom for the metadata of the extents written anew.
	if room := sp.Avail - sp.Size/50; grow > room {
		return fail.Hint(fmt.Errorf("%s (%s): %w: its files share %s of data (reflinks, snapshots, deduplication), which a restore writes once per file: that needs %s more than the %s the source used, and the source had %s free",
			fs.Name, fs.Type, ErrNoRoom, units.Bytes(sp.Shared), units.Bytes(grow), units.Bytes(sp.Used), units.Bytes(sp.Avail)),
			"restore its files with --partition %s --to DIR onto a filesystem with %s free; this restore wrote nothing", fs.Name, units.Bytes(sp.Used+grow))
	}
	return nil
}

// grown says how much more a restored filesystem uses than its source did,
// when that is more than a little, and why if the backup knows: data the
// source shared between files is written once per file.
func grown(fs manifest.Filesystem, dir string) string {
	sp := fs.Space
	if sp == nil {
		return ""
	}
	// What was written is counted once it is on disk (btrfs allocates at
	// commit).
	if fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		unix.Syncfs(fd)
		unix.Close(fd)
	}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return ""
	}
	used := int64(st.Blocks-st.Bfree) * st.Bsize
	grow := used - sp.Used
	if grow <= max(sp.Size/100, 1<<20) {
		return ""
	}
	msg := fmt.Sprintf("uses %s where the source used %s (%s more)", units.Bytes(used), units.Bytes(sp.Used), units.Bytes(grow))
	if u := sp.Unshared(); u > 0 {
		msg += fmt.Sprintf(": %s of data the source shared between files (reflinks, snapshots) is written once per file", units.Bytes(u))
	}
	return msg
}

// canMake checks the mkfs tool and, to restore files, kernel support.
func canMake(fs manifest.Filesystem, mount bool) error {
	args, err := mkfsCommand(fs, "DEV")
	if err != nil {
		return err
	}
	if _, err := exec.LookPath(args[0]); err != nil {
		return fmt.Errorf("%s: re-making %s needs %s: %w", fs.Name, fs.Type, args[0], err)
	}
	if kt, _ := disk.MountSpec(fs.Type); mount && !kernelHas(kt) {
		return fmt.Errorf("%s: the kernel cannot mount %s (not in /proc/filesystems), so its files cannot be restored here", fs.Name, kt)
	}
	return nil
}

func kernelHas(fsType string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return true // let mount tell
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == fsType {
			return true
		}
	}
	return false
}

// createImage creates file sparse with size bytes, or takes an existing
// empty regular file.
func createImage(file string, size int64) (f *os.File, created bool, err error) {
	f, err = os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	created = err == nil
	if errors.Is(err, os.ErrExist) {
		f, err = os.OpenFile(file, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			fi, serr := f.Stat()
			switch {
			case serr != nil:
				err = serr
			case fi.Mode()&os.ModeDevice != 0:
				err = fail.Hint(fail.Usage(fmt.Errorf("restore target %s is a device", file)), "use --to-device %s", file)
			case !fi.Mode().IsRegular() || fi.Size() != 0:
				err = fail.Hint(fail.Usage(fmt.Errorf("restore target %s exists and is not empty; refusing to overwrite it", file)),
					"remove it or choose a new file name")
			}
			if err != nil {
				f.Close()
			}
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("create image: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		if created {
			os.Remove(file)
		}
		return nil, false, fmt.Errorf("size image %s: %w", file, err)
	}
	return f, created, nil
}

// restoreVolume writes the table, then each filesystem.
func restoreVolume(ctx context.Context, st store.Store, b *catalog.Backup, t *volTarget, p *volPlan, sums catalog.Sums, res *Result, opts Options) error {
	log := opts.logger().With("backup", b.ID, "target", t.String())
	if !t.fresh {
		// Old signatures at either end (a previous table, a filesystem at
		// offset 0, a GPT backup header) must not survive to confuse blkid.
		if err := zero(t, 0, min(1<<20, p.size)); err != nil {
			return err
		}
		if err := zero(t, max(0, p.size-1<<20), min(1<<20, p.size)); err != nil {
			return err
		}
	}
	if p.table.Type == "mbr" || p.table.Type == "gpt" {
		if err := writeTable(ctx, t, p.table, opts); err != nil {
			return err
		}
		log.Info("restore: partition table written", "type", p.table.Type)
	}
	if b.Manifest.Outside != nil {
		fr, err := writeOutside(ctx, st, b, t, p, sums, opts.Identities)
		res.Filesystems = append(res.Filesystems, fr)
		if err != nil {
			return err
		}
		log.Info("restore: bytes outside the partitions written", "runs", len(b.Manifest.Outside.Runs), "bytes", fr.Bytes)
	}
	for _, s := range p.steps {
		if !t.fresh {
			if err := zero(t, s.off, min(1<<20, s.size)); err != nil {
				return err
			}
		}
		var fr FSResult
		var err error
		switch s.fs.Mode {
		case manifest.ModeFiles:
			fr, err = restoreFS(ctx, st, b, t, s, sums, opts, log)
		case manifest.ModeRaw:
			fr, err = writeRaw(ctx, st, b, t, s, sums, opts.Identities)
		default: // swap
			fr, err = makeOnly(ctx, t, s, opts)
		}
		// Name where it went, not the temporary mount point it was
		// written through (gone by now).
		where := s.fs.Name + " of " + t.String()
		if fr.Dir != "" {
			fr.Dir = where
		}
		var pe *PartialError
		if errors.As(err, &pe) {
			pe.Dir = where
		}
		res.Filesystems = append(res.Filesystems, fr)
		if err != nil {
			return err
		}
		log.Info("restore: filesystem restored", "fs", s.fs.Name, "type", s.fs.Type, "files", fr.Files)
	}
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.path, err)
	}
	return skippedError(res)
}

func zero(t *volTarget, off, n int64) error {
	buf := make([]byte, n)
	if _, err := t.f.WriteAt(buf, off); err != nil {
		return fmt.Errorf("wipe %s at %d: %w", t.path, off, err)
	}
	return nil
}

func writeTable(ctx context.Context, t *volTarget, table manifest.Table, opts Options) error {
	script, err := sfdiskScript(table, t.sector)
	if err != nil {
		return err
	}
	// An image file has no sector size of its own: sfdisk takes 512
	// unless it writes through a loop device with the table's.
	target := t.path
	if t.fresh && t.sector != 512 {
		loop, err := disk.AttachLoopSectors(ctx, t.path, 0, 0, false, loopTag(opts), int(t.sector))
		if err != nil {
			return fmt.Errorf("write a table for %d-byte sectors: %w", t.sector, err)
		}
		defer loop.Detach()
		target = loop.Path
	}
	cmd := exec.CommandContext(ctx, "sfdisk", "--quiet", "--wipe", "always", "--no-reread", "--no-tell-kernel", target)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("write partition table with sfdisk: %w: %s\nscript:\n%s", err, strings.TrimSpace(string(out)), script)
	}
	for _, part := range table.Partitions {
		if table.Type != "gpt" || part.Name == "" {
			continue
		}
		// "--": a name from the manifest that starts with "-" is a name,
		// not an option.
		_, err := sysexec.Exec{}.Run(ctx, "sfdisk", "--quiet", "--no-reread", "--no-tell-kernel",
			"--part-label", "--", target, strconv.Itoa(part.Number), part.Name)
		if err != nil {
			return fmt.Errorf("name partition %d: %w", part.Number, err)
		}
	}
	return nil
}

// loopTag marks the loop devices a restore attaches.
func loopTag(opts Options) string {
	if opts.LoopTag != "" {
		return opts.LoopTag
	}
	return "voltar:restore-" + strconv.Itoa(os.Getpid())
}

// attach maps a step's region of the target to a loop device and makes its
// filesystem; release detaches it.
func attach(ctx context.Context, t *volTarget, s volStep, opts Options) (*disk.Loop, error) {
	loop, err := disk.AttachLoop(ctx, t.path, s.off, s.size, false, loopTag(opts))
	if err != nil {
		return nil, err
	}
	args, err := mkfsCommand(s.fs, loop.Path)
	if err == nil {
		_, err = sysexec.Exec{}.Run(ctx, args[0], args[1:]...)
	}
	if err != nil {
		loop.Detach()
		return nil, fmt.Errorf("make %s filesystem for %s: %w", s.fs.Type, s.fs.Name, err)
	}
	return loop, nil
}

func made(s volStep) *Made {
	return &Made{Type: s.fs.Type, UUID: s.fs.UUID, Label: s.fs.Label, Offset: s.off, Size: s.size, Raw: s.fs.Mode == manifest.ModeRaw}
}

// restoreFS re-makes one filesystem, mounts it writable in a private
// directory and restores its archive into it. Everything it sets up is
// released on every path.
func restoreFS(ctx context.Context, st store.Store, b *catalog.Backup, t *volTarget, s volStep, sums catalog.Sums, opts Options, log *slog.Logger) (fr FSResult, err error) {
	fr = FSResult{Name: s.fs.Name, Archive: s.fs.Archive, Made: made(s)}
	loop, err := attach(ctx, t, s, opts)
	if err != nil {
		return fr, err
	}
	defer func() {
		if derr := loop.Detach(); derr != nil && err == nil {
			err = fmt.Errorf("release %s: %w", loop.Path, derr)
		}
	}()
	dir, err := os.MkdirTemp(opts.MountDir, "voltar-restore-")
	if err != nil {
		return fr, err
	}
	defer os.Remove(dir)
	kt, data := disk.MountSpec(s.fs.Type)
	if c := btrfsCompression(s.fs.Mkfs); s.fs.Type == "btrfs" && c != "" {
		// Data written now is compressed like the source's was.
		data = strings.TrimPrefix(data+","+c, ",")
	}
	if err := unix.Mount(loop.Path, dir, kt, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return fr, &disk.MountError{Dev: loop.Path, Dir: dir, Type: kt, Data: data, Err: err}
	}
	defer func() {
		if uerr := disk.Unmount(dir); uerr != nil && err == nil {
			err = uerr
		}
	}()
	if len(s.fs.Subvolumes) > 0 {
		if err := makeSubvolumes(ctx, s.fs, dir); err != nil {
			return fr, err
		}
	}
	root, err := openTarget(dir)
	if err != nil {
		return fr, err
	}
	defer unix.Close(root)
	got, err := restoreArchive(ctx, st, b, s.fs, sums, dir, root, opts, log)
	got.Made = fr.Made
	if err == nil && len(s.fs.Subvolumes) > 0 {
		err = finishSubvolumes(ctx, s.fs, dir)
	}
	if err == nil {
		if msg := grown(s.fs, dir); msg != "" {
			got.Warnings = append(got.Warnings, msg)
		}
	}
	return got, err
}

// makeOnly re-makes a filesystem that was not archived (swap).
func makeOnly(ctx context.Context, t *volTarget, s volStep, opts Options) (FSResult, error) {
	fr := FSResult{Name: s.fs.Name, Made: made(s)}
	loop, err := attach(ctx, t, s, opts)
	if err != nil {
		return fr, err
	}
	return fr, loop.Detach()
}

// writeRaw writes a raw archive (the partition's bytes, compressed) back
// to its region, verifying it as it streams. On a new image all-zero
// blocks are skipped.
func writeRaw(ctx context.Context, st store.Store, b *catalog.Backup, t *volTarget, s volStep, sums catalog.Sums, ids *crypt.Identities) (FSResult, error) {
	fr := FSResult{Name: s.fs.Name, Archive: s.fs.Archive, Made: made(s)}
	partial := func(err error) error {
		return &PartialError{Archive: s.fs.Archive, Files: 0, Bytes: fr.Bytes, Err: err}
	}
	stream, err := objio.Open(ctx, st, b.Key(s.fs.Archive), ids)
	if err != nil {
		return fr, fmt.Errorf("%s: %w", s.fs.Archive, err)
	}
	defer stream.Close()
	buf := make([]byte, 1<<20)
	zeros := make([]byte, blockSize)
	for {
		n, rerr := io.ReadFull(stream.Data, buf)
		if fr.Bytes+int64(n) > s.size {
			return fr, partial(fmt.Errorf("raw archive is larger than the partition (%d bytes)", s.size))
		}
		// A fresh image holds zeros already: leave them holes.
		if t.fresh {
			_, err = writeSparse(int(t.f.Fd()), buf[:n], s.off+fr.Bytes, zeros)
		} else {
			_, err = t.f.WriteAt(buf[:n], s.off+fr.Bytes)
		}
		if err != nil {
			return fr, partial(err)
		}
		fr.Bytes += int64(n)
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			d, _ := stream.Finish()
			if msg := verify.DigestMismatch(d, s.fs, sums); msg != "" {
				rerr = fmt.Errorf("%w: %s (%v)", ErrChecksum, msg, rerr)
			}
			return fr, partial(rerr)
		}
	}
	d, err := stream.Finish()
	fr.SHA256 = d.SHA256
	if msg := verify.DigestMismatch(d, s.fs, sums); msg != "" {
		return fr, partial(fmt.Errorf("%w: %s", ErrChecksum, msg))
	}
	if err != nil {
		return fr, partial(err)
	}
	fr.Verified = true
	return fr, nil
}
