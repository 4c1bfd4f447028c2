package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/archive"
	"voltar/internal/btrfs"
	"voltar/internal/cleanup"
	"voltar/internal/disk"
	"voltar/internal/fail"
	"voltar/internal/index"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store"
	"voltar/internal/units"
	"voltar/internal/volume"
)

// part is one filesystem area of the snapshot.
type part struct {
	name   string // p1.. or fs
	number int
	start  int64
	size   int64
	fs     disk.FS
	// What the partition's first sectors say, read with the table:
	lilo     bool             // LILO in its boot sector
	mkfs     *disk.MkfsParams // how its filesystem was made (ext, xfs)
	recovery disk.Recovery    // whether its journal needs replaying
}

// probe reads what p's first sectors say besides its type: a boot sector
// with LILO, the mkfs parameters, the journal state.
func probe(f *os.File, p *part) error {
	var err error
	if p.lilo, err = bootSector(f, p.start); err != nil {
		return err
	}
	if p.mkfs, err = disk.ReadMkfsParams(f, p.start, p.size, p.fs.Type); err != nil {
		return fmt.Errorf("%s: superblock: %w", p.name, err)
	}
	if p.recovery, err = disk.NeedsRecovery(f, p.start, p.size, p.fs.Type); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	return nil
}

// filesystems voltar can mount and archive file by file.
var mountable = map[string]bool{"ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true, "vfat": true}

// layout reads the snapshot's partition table, or finds a filesystem on the
// whole volume, and records both in the manifest.
func (r *run) layout(ctx context.Context) ([]part, error) {
	if err := r.inject(StageTable); err != nil {
		return nil, err
	}
	f, err := os.Open(r.snap.Path)
	if err != nil {
		return nil, fmt.Errorf("open snapshot %s: %w", r.snap.Path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("size of %s: %w", r.snap.Path, err)
	}
	tbl, err := disk.ReadTable(f, size)
	if errors.Is(err, disk.ErrNoTable) {
		fs, derr := disk.DetectFS(f, 0, size)
		if derr != nil {
			return nil, fmt.Errorf("%s: %w", r.v.ID(), derr)
		}
		if fs.Type == "" {
			return nil, fail.Hint(fmt.Errorf("%s: no partition table and no known filesystem on the volume", r.v.ID()),
				"voltar reads MBR and GPT tables and ext2/3/4, xfs, btrfs and vfat; check the volume with `blkid -p` and `sfdisk -d`")
		}
		r.m.Table = manifest.Table{Type: "none"}
		p := part{name: layout.WholeDisk, start: 0, size: size, fs: fs}
		if err := probe(f, &p); err != nil {
			return nil, err
		}
		return []part{p}, nil
	}
	if err != nil {
		return nil, fail.Hint(fmt.Errorf("%s: partition table: %w", r.v.ID(), err),
			"the volume's partition table is damaged or not MBR/GPT; inspect it with `sfdisk -d %s`", r.v.Path)
	}
	r.m.Table = manifest.Table{Type: tbl.Type, SectorSize: tbl.SectorSize, DiskID: tbl.DiskID, Warnings: tbl.Warnings,
		FirstLBA: tbl.FirstLBA, LastLBA: tbl.LastLBA}
	if lilo, err := bootSector(f, 0); err != nil {
		return nil, err
	} else if lilo {
		w := "LILO in the MBR: its map points at blocks inside a filesystem, which a restore places anew; " + disk.ReinstallAdvice
		r.m.Warnings = append(r.m.Warnings, w)
		r.log.Warn("bootloader found", "where", "MBR", "advice", disk.ReinstallAdvice)
	}
	for _, w := range tbl.Warnings {
		r.log.Warn("partition table needs repair", "problem", w)
	}
	for _, e := range tbl.Extended {
		r.m.Table.Extended = append(r.m.Table.Extended, manifest.Partition{Number: e.Number, Start: e.Start, Size: e.Size, Type: e.Type})
	}
	var parts []part
	for _, p := range tbl.Partitions {
		r.m.Table.Partitions = append(r.m.Table.Partitions, manifest.Partition{
			Number: p.Number, Start: p.Start, Size: p.Size, Type: p.Type, UUID: p.UUID,
			Name: p.Name, Bootable: p.Bootable, Logical: p.Logical, Attrs: p.Attrs,
		})
		fs, err := disk.DetectFS(f, p.Start, p.Size)
		if err != nil {
			return nil, fmt.Errorf("%s partition %d: %w", r.v.ID(), p.Number, err)
		}
		// ReadTable returns the partitions sorted by number.
		pt := part{name: layout.Partition(p.Number), number: p.Number, start: p.Start, size: p.Size, fs: fs}
		if err := probe(f, &pt); err != nil {
			return nil, err
		}
		parts = append(parts, pt)
	}
	if len(parts) == 0 {
		return nil, fail.Hint(fmt.Errorf("%s: the %s partition table has no partitions", r.v.ID(), tbl.Type),
			"exclude this volume in the config if it is meant to be empty")
	}
	return parts, nil
}

// filesystem maps, mounts and archives one partition, or records why not.
func (r *run) filesystem(ctx context.Context, p part) (manifest.Filesystem, error) {
	fs := manifest.Filesystem{Name: p.name, Partition: p.number, Type: p.fs.Type, UUID: p.fs.UUID, Label: p.fs.Label}
	fs.Started = time.Now().UTC()
	log := r.log.With("fs", p.name, "type", p.fs.Type)
	if p.fs.Ambiguous != "" {
		// Neither skipped nor read as files: what it holds is not
		// certain, and its bytes restore exactly.
		return r.raw(ctx, p, fs, "content not identified with certainty ("+p.fs.Ambiguous+"), stored raw")
	}
	if p.fs.Type == "swap" {
		fs.Mode, fs.Reason = manifest.ModeSkipped, "swap space holds no data worth keeping"
		log.Info("filesystem skipped", "reason", fs.Reason)
		fs.Finished = fs.Started
		return fs, nil
	}
	if !mountable[p.fs.Type] {
		what := p.fs.Type
		if what == "" {
			what = "unknown content"
		}
		return r.raw(ctx, p, fs, what+": not readable as files, stored raw")
	}
	if p.lilo {
		if r.o.BootRaw {
			return r.raw(ctx, p, fs, "LILO in its boot sector points at its blocks (boot_partitions: raw), stored raw")
		}
		fs.Warnings = append(fs.Warnings, "LILO in its boot sector points at its blocks, which a restore places anew; "+disk.ReinstallAdvice)
		log.Warn("bootloader found", "bootloader", "LILO", "advice", disk.ReinstallAdvice)
	}

	if mp := p.mkfs; mp != nil {
		fs.Mkfs = &manifest.MkfsParams{BlockSize: mp.BlockSize, InodeSize: mp.InodeSize, Inodes: mp.Inodes,
			SectorSize: mp.SectorSize, Features: mp.Features, NodeSize: mp.NodeSize, Compression: mp.Compression}
	}
	if r.o.Isolation == IsolationSandbox {
		return r.sandboxed(ctx, p, fs, log)
	}
	if err := r.inject(StageMap); err != nil {
		return fs, err
	}
	// A snapshot read in place (an offline image) is read-only: the kernel
	// cannot replay a journal into it. A filesystem whose superblock says
	// it needs recovery is read from a throwaway writable copy instead.
	src, off := r.snap, p.start
	if r.v.Format == volume.FormatQcow2 && p.recovery == disk.RecoveryNeeded {
		// The export is writable: the kernel replays into its overlay.
		fs.Recovery = "journal replayed into the throwaway qcow2 overlay; the image and its backing files were only read"
		log.Info("the filesystem needs journal recovery: the kernel replays it into the qcow2 overlay")
	}
	if r.snap.ReadOnly && p.recovery == disk.RecoveryNeeded {
		var err error
		if src, off, err = r.writable(ctx, p, "its superblock says it needs journal recovery"); err != nil {
			return fs, err
		}
		fs.Recovery = recoveryNote(src)
	}
	loop, err := r.attach(ctx, src, off, p.size)
	if err != nil {
		return fs, err
	}

	if err := r.inject(StageMount); err != nil {
		return fs, err
	}
	dir, err := r.makeMountDir(p.name)
	if err != nil {
		return fs, err
	}
	err = disk.Mount(ctx, loop.Path, dir, p.fs.Type)
	if errors.Is(err, unix.EROFS) && src.ReadOnly {
		// The kernel refuses to mount a filesystem that needs recovery
		// from a read-only device (an xfs log is dirty; its superblock
		// does not say so): replay into a throwaway copy.
		log.Warn("the filesystem needs journal recovery, which cannot happen on a read-only image", "err", err)
		if src, off, err = r.writable(ctx, p, "the kernel refused to mount it read-only (a dirty log)"); err == nil {
			if loop, err = r.attach(ctx, src, off, p.size); err == nil {
				err = disk.Mount(ctx, loop.Path, dir, p.fs.Type)
				fs.Recovery = recoveryNote(src)
			}
		}
	}
	if err != nil {
		r.done(cleanup.Mount, dir)
		os.Remove(dir)
		if errors.Is(err, disk.ErrUnsupportedFS) {
			// Not the data's fault: this host's kernel cannot read the type.
			return r.raw(ctx, p, fs, p.fs.Type+": this kernel cannot mount it, stored raw")
		}
		return fs, fail.Hint(fmt.Errorf("mount: %w", err), "check the filesystem with fsck on a copy; the kernel log (dmesg) says why it refused")
	}
	mounted := true
	unmount := func(context.Context) error {
		if !mounted {
			return nil
		}
		if err := disk.Unmount(dir); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		mounted = false
		r.done(cleanup.Mount, dir)
		os.Remove(dir)
		return nil
	}
	r.onRelease(unmount)
	log.Info("mounted", "device", loop.Path, "dir", dir)
	if p.fs.Type == "btrfs" && fs.Mkfs != nil {
		// Not in the superblock: the block groups say.
		if fs.Mkfs.DataProfile, fs.Mkfs.MetadataProfile, err = btrfs.Profiles(dir); err != nil {
			return fs, err
		}
	}

	// Looked for before archiving: with boot_partitions: raw the
	// filesystem goes raw instead.
	sys, err := disk.FindSyslinux(dir)
	if err != nil {
		return fs, fmt.Errorf("look for a bootloader: %w", err)
	}
	if sys != "" {
		where := path.Join("/", sys, "ldlinux.sys")
		if r.o.BootRaw {
			log.Warn("syslinux/extlinux found: storing the filesystem raw (boot_partitions: raw)", "file", where)
			if err := unmount(ctx); err != nil {
				return fs, err
			}
			return r.raw(ctx, p, fs, "syslinux/extlinux ("+where+") points at its blocks (boot_partitions: raw), stored raw")
		}
		fs.Warnings = append(fs.Warnings, "syslinux/extlinux ("+where+") points at the blocks of ldlinux.sys, which a restore places anew; "+disk.ReinstallAdvice)
		log.Warn("bootloader found", "bootloader", "syslinux/extlinux", "file", where, "advice", disk.ReinstallAdvice)
	}
	if err := r.inject(StageArchive); err != nil {
		return fs, err
	}
	fs.Mode = manifest.ModeFiles
	fs.Archive = r.o.Encoding.Object(p.name, layout.Tar)
	fs.Excludes = r.o.Excludes
	res, sum, err := r.archive(ctx, dir, &fs)
	if errors.Is(err, archive.ErrEncrypted) {
		// Its bytes, not no-key names: the guest's key still opens
		// them after a restore.
		log.Warn("fscrypt-encrypted files found: storing the filesystem raw", "err", err)
		if err := unmount(ctx); err != nil {
			return fs, err
		}
		fs.Excludes, fs.Index, fs.Incremental = nil, nil, false
		return r.raw(ctx, p, fs, "it holds fscrypt-encrypted directories ("+err.Error()+"), stored raw so the key still opens them")
	}
	if err != nil {
		return fs, err
	}
	fs.StoredBytes, fs.SHA256 = sum.Bytes, sum.SHA256
	fs.SourceBytes, fs.DataBytes, fs.Files, fs.Entries = res.SourceBytes, res.DataBytes, res.Files, res.Entries
	fs.Unchanged = res.Inherited
	var sf unix.Statfs_t
	if err := unix.Statfs(dir, &sf); err == nil {
		fs.Space = &manifest.Space{Size: int64(sf.Blocks) * sf.Bsize, Used: int64(sf.Blocks-sf.Bfree) * sf.Bsize,
			Avail: int64(sf.Bavail) * sf.Bsize, Shared: res.Shared, SharedOnce: res.SharedOnce}
	}
	for _, ne := range res.NotEntered {
		fs.NotEntered = append(fs.NotEntered, manifest.NotEntered{Path: ne.Path, Reason: ne.Reason})
	}
	if err := r.check(ctx, p, dir, res, &fs); err != nil {
		return fs, err
	}
	fs.Finished = time.Now().UTC()
	log.Info("archived", "incremental", fs.Incremental, "unchanged", res.Inherited, "files", res.Files, "source_bytes", res.SourceBytes, "stored_bytes", sum.Bytes, "excluded", res.Excluded,
		"not_entered", len(fs.NotEntered), "subvolumes", len(fs.Subvolumes), "subvolumes_skipped", fs.SkippedSubvolumes())
	// Unmount now rather than at the end, so a volume with many partitions
	// holds one mount at a time.
	return fs, unmount(ctx)
}

// bootSector reads the sector at off of the snapshot f and reports whether
// LILO's first stage is in it.
func bootSector(f *os.File, off int64) (bool, error) {
	sec := make([]byte, 512)
	if _, err := f.ReadAt(sec, off); err != nil {
		return false, fmt.Errorf("read boot sector at %d: %w", off, err)
	}
	return disk.HasLILO(sec), nil
}

// attach maps size bytes at off of snapshot s as a loop device, journaled
// and released with the run.
func (r *run) attach(ctx context.Context, s *volume.Snapshot, off, size int64) (*disk.Loop, error) {
	loop, err := disk.AttachLoop(ctx, s.Path, off, size, s.ReadOnly, LoopTag(r.o.RuntimeDir, r.o.RunID))
	if err != nil {
		return nil, orHint(fmt.Errorf("map partition: %w", err),
			"voltar needs a free loop device: `losetup -f` finds one, `losetup -l` lists those in use")
	}
	r.onRelease(func(context.Context) error {
		if err := loop.Detach(); err != nil {
			return fmt.Errorf("detach %s: %w", loop.Path, err)
		}
		r.done(cleanup.Loop, loop.Path)
		return nil
	})
	if err := r.hold(cleanup.Loop, loop.Path); err != nil {
		return nil, err
	}
	return loop, nil
}

// writable makes a throwaway writable copy of p's region of a read-only
// snapshot, so the kernel can replay the filesystem's journal into the
// copy and never into the source. It returns the copy and where p starts
// in it; the copy is journaled and released with the run.
func (r *run) writable(ctx context.Context, p part, why string) (*volume.Snapshot, int64, error) {
	rp, ok := r.o.Snapshotter.(volume.Replayer)
	if !ok {
		return nil, 0, fail.Hint(fmt.Errorf("%s: %w (%s), and voltar cannot make a writable copy of this read-only snapshot",
			p.name, disk.ErrNeedsRecovery, why),
			"back the volume up while it is in use (a writable snapshot), or replay the journal by mounting the filesystem once")
	}
	r.log.Warn("journal recovery needed on a read-only image: replaying it into a throwaway copy", "fs", p.name, "why", why)
	planned, err := r.plan(p.name)
	if err != nil {
		return nil, 0, err
	}
	c, off, err := rp.Writable(ctx, r.v, r.snap, r.o.RunID, p.name, p.start, p.size)
	r.unplan(planned, c)
	if err != nil {
		return nil, 0, fmt.Errorf("%s needs journal recovery (%s): writable copy: %w", p.name, why, err)
	}
	r.onRelease(func(ctx context.Context) error {
		if err := r.o.Snapshotter.Release(ctx, c); err != nil {
			return fmt.Errorf("remove copy %s: %w", c.Name, err)
		}
		r.done(cleanup.Clone, c.Name)
		return nil
	})
	if err := r.inject(StageCopied); err != nil {
		return nil, 0, err
	}
	if !isPlanned(planned, volume.Planned{Kind: c.Kind, Ref: c.Name}) {
		if err := r.hold(cleanup.Clone, c.Name); err != nil {
			return nil, 0, err
		}
	}
	return c, off, nil
}

// recoveryNote says in the manifest how a journal was replayed.
func recoveryNote(c *volume.Snapshot) string {
	if c.Kind == volume.KindReflink {
		return "journal replayed into a reflink clone of the image"
	}
	return fmt.Sprintf("journal replayed into a copy of the partition's data (%s)", units.Bytes(c.Size))
}

// noProjectIDs says fs is ext2/3/4 made without the project feature, which
// holds no project ids (archive.Options.NoProjectIDs).
func noProjectIDs(fs *manifest.Filesystem) bool {
	switch fs.Type {
	case "ext2", "ext3", "ext4":
		return fs.Mkfs != nil && !slices.Contains(fs.Mkfs.Features, "project")
	}
	return false
}

// archive streams the tree at dir into the store as fs.Archive, with its
// file index (fs.Index, see internal/index) written beside it at the same
// time: the walk hands every entry to the index as it writes it.
func (r *run) archive(ctx context.Context, dir string, fs *manifest.Filesystem) (archive.Result, objio.Sum, error) {
	var used, size int64
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil {
		used = int64(st.Blocks-st.Bfree) * st.Bsize
		size = int64(st.Blocks) * st.Bsize
	}
	// The archive of a filesystem is bounded by its size (sparse files
	// are stored sparse), give or take tar headers: a store that cuts
	// objects into parts sizes them from this.
	var opts store.PutOptions
	if size > 0 {
		opts.SizeHint = size + size/4 + 64<<20
	}
	out, err := r.createArchive(ctx, fs, opts)
	if err != nil {
		return archive.Result{}, objio.Sum{}, err
	}
	bar := r.o.Progress.Start(r.v.ID()+" "+fs.Name, used)
	res, err := archive.Write(ctx, dir, out, archive.Options{
		Excludes: r.o.Excludes, Logger: r.log, BtrfsSnapshots: r.o.BtrfsSnapshots, Drop: r.o.Drop,
		Progress:     func(p archive.Progress) { bar.Update(p.Bytes, p.Files) },
		Index:        out.ix.Add,
		Parent:       r.archiveParent(fs.Name),
		NoProjectIDs: noProjectIDs(fs),
	})
	fs.Incremental = res.Incremental
	if err != nil {
		bar.Done(false)
		// A failed read reaches the store through the pipe too: blame the
		// source, unless the store had failed first.
		if serr := out.abort(err); serr != nil {
			return res, objio.Sum{}, serr
		}
		return res, objio.Sum{}, fmt.Errorf("archive: %w", err)
	}
	sum, err := out.commit(fs, res.TarBytes)
	bar.Done(err == nil)
	return res, sum, err
}

// archiveOut is a filesystem's archive being written, with its file index
// (internal/index) beside it: the walk, on the host or in a sandbox,
// writes the tar stream into it and hands it every entry (ix.Add).
type archiveOut struct {
	*objio.Writer               // the archive
	iw            *objio.Writer // the index
	ix            *index.Writer
	ixName        string
}

// createArchive starts fs.Archive and its index.
func (r *run) createArchive(ctx context.Context, fs *manifest.Filesystem, opts store.PutOptions) (*archiveOut, error) {
	w, err := objio.Create(ctx, r.o.Store, r.prefix+fs.Archive, r.o.Encoding, opts)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	name := r.o.Encoding.Object(fs.Name, layout.Index)
	iw, err := objio.Create(ctx, r.o.Store, r.prefix+name, r.o.Encoding.Small(), store.PutOptions{})
	if err != nil {
		w.Abort(err)
		return nil, fmt.Errorf("file index: %w", err)
	}
	return &archiveOut{Writer: w, iw: iw, ix: index.NewWriter(iw, index.Header{FS: fs.Name, Archive: fs.Archive}), ixName: name}, nil
}

// abort gives both objects up because of cause; see objio.Writer.Abort.
func (a *archiveOut) abort(cause error) error {
	ierr := a.iw.Abort(cause)
	if err := a.Writer.Abort(cause); err != nil {
		return err
	}
	return ierr
}

// commit completes the archive, then the index with the archive's frames
// and the tar stream's length, and records the index in fs.
func (a *archiveOut) commit(fs *manifest.Filesystem, tarBytes int64) (objio.Sum, error) {
	sum, err := a.Writer.Commit()
	if err == nil {
		err = a.ix.Finish(a.Writer.Frames(), tarBytes)
	}
	if err != nil {
		a.iw.Abort(err)
		return sum, err
	}
	isum, err := a.iw.Commit()
	if err != nil {
		return sum, fmt.Errorf("file index: %w", err)
	}
	fs.Index = &manifest.Object{Name: a.ixName, SHA256: isum.SHA256, StoredBytes: isum.Bytes}
	return sum, nil
}

// raw stores the partition's bytes, compressed: for what voltar cannot read
// file by file (LUKS, NTFS, a guest's LVM, unknown). Runs of zeros cost next
// to nothing once compressed. Restore with `zstd -d < pN.raw.zst | dd of=...`
// or voltar restore --to-image.
func (r *run) raw(ctx context.Context, p part, fs manifest.Filesystem, reason string) (manifest.Filesystem, error) {
	r.log.Warn("storing partition raw", "fs", p.name, "reason", reason)
	if err := r.inject(StageArchive); err != nil {
		return fs, err
	}
	f, err := os.Open(r.snap.Path)
	if err != nil {
		return fs, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	fs.Mode, fs.Reason = manifest.ModeRaw, reason
	fs.Archive = r.o.Encoding.Object(p.name, layout.Raw)
	// Compressed (and encrypted) bytes of the partition: at most its
	// size plus the codec's framing.
	w, err := objio.Create(ctx, r.o.Store, r.prefix+fs.Archive, r.o.Encoding, store.PutOptions{SizeHint: p.size + p.size/64 + 1<<20})
	if err != nil {
		return fs, fmt.Errorf("raw copy of %s: %w", p.name, err)
	}
	bar := r.o.Progress.Start(r.v.ID()+" "+p.name+" (raw)", p.size)
	src := io.NewSectionReader(f, p.start, p.size)
	buf := make([]byte, 1<<20)
	var done int64
	for err == nil && done < p.size {
		if err = ctx.Err(); err != nil {
			break
		}
		var n int
		n, err = io.ReadFull(src, buf[:min(int64(len(buf)), p.size-done)])
		if n > 0 {
			_, werr := w.Write(buf[:n])
			done += int64(n)
			bar.Update(done, 0)
			if werr != nil && err == nil {
				err = werr
			}
		}
	}
	if err == io.EOF && done == p.size {
		err = nil
	}
	if err != nil {
		bar.Done(false)
		if serr := w.Abort(err); serr != nil {
			return fs, serr
		}
		return fs, fmt.Errorf("raw copy of %s: %w", p.name, err)
	}
	sum, err := w.Commit()
	bar.Done(err == nil)
	if err != nil {
		return fs, err
	}
	fs.StoredBytes, fs.SourceBytes, fs.SHA256 = sum.Bytes, p.size, sum.SHA256
	fs.Finished = time.Now().UTC()
	return fs, nil
}
