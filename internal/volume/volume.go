// Package volume defines the sources voltar backs up and how a point-in-time
// copy of each is made. Implementations live in volume/lvm, volume/image
// (raw image files) and volume/qcow2 (qcow2 image files).
package volume

import (
	"context"
	"errors"
)

// Kinds of volume.
const (
	KindLVM   = "lvm"
	KindImage = "image"
)

// Volume is one block volume to back up.
type Volume struct {
	Kind  string
	Group string // VG name for LVM, "image" for image files
	Name  string // LV name or the image file's base name
	Path  string // /dev/<vg>/<lv> or the image file path
	Size  int64
	UUID  string
	// Offline marks an image that nothing writes to: it is read in place,
	// without a clone.
	Offline bool
	// Format is the image's format: "" for LVs and raw images, FormatQcow2
	// for a qcow2 image, whose Size is then its virtual (guest-visible)
	// size.
	Format string
	// Backing is a qcow2 image's backing chain, nearest first, each file
	// resolved as qemu resolves it (relative to the image naming it).
	Backing []Layer
}

// FormatQcow2 is Volume.Format of a qcow2 image.
const FormatQcow2 = "qcow2"

// Layer is one backing file of an image.
type Layer struct {
	Path   string // absolute
	Format string // qcow2 or raw
	Size   int64  // its virtual size
}

// ID is the volume's place in the store, <group>/<name>.
func (v Volume) ID() string { return v.Group + "/" + v.Name }

// Snapshot is a frozen, disposable copy of a volume. It is writable so the
// kernel can replay filesystem journals into it, unless ReadOnly is set.
type Snapshot struct {
	// Consistency, when set, is what the snapshotter knows about the
	// state it holds (manifest.ConsistencyFrozen for a libvirt domain's
	// disk taken during a guest freeze); "" lets backup decide.
	Consistency string
	// Set, when not nil, names the disks snapshotted together with this
	// one (a libvirt domain's); backup records it in the manifest.
	Set *Set

	Kind     SnapshotKind
	Name     string // LV name or clone path
	Path     string // block device or file to map partitions from
	Size     int64  // snapshot allocation (thick: COW size)
	ReadOnly bool
	// Holds, when set, are the journal entries of everything the snapshot
	// consists of (a qcow2 image's reflink clone, its overlay and the
	// storage daemon's export), journaled and released with it; else the
	// snapshot is one entry of its Kind.
	Holds []Planned
}

// SnapshotKind says how a snapshot was made; the manifest records it and
// the journal files a leftover by it (an LV or a clone file).
type SnapshotKind string

// Kinds of snapshot.
const (
	KindThick   SnapshotKind = "thick"   // LVM snapshot with its own COW space
	KindThin    SnapshotKind = "thin"    // LVM thin snapshot, in the pool
	KindReflink SnapshotKind = "reflink" // FICLONE clone of an image file
	KindCopy    SnapshotKind = "copy"    // copy of an image file's data in the scratch directory
	KindNone    SnapshotKind = "none"    // an offline image, read in place
	// KindExport is a qemu-storage-daemon process exporting an image as
	// a raw view (a FUSE-mounted file); its journal ref is that file.
	KindExport SnapshotKind = "export"
	// KindExternal is a disk of a running libvirt domain whose image
	// cannot be cloned: libvirt's external snapshot moved the guest's
	// writes into an overlay, and the image itself is read in place
	// (through the image's own snapshotter, as an offline image) until
	// the overlay is committed back. The journal entry is the overlay's
	// (internal/domain), not backup's.
	KindExternal SnapshotKind = "external"
)

// Snapshotter makes and removes snapshots. Every snapshot it creates carries
// voltar's name or tag so that a later run can find it after a crash.
type Snapshotter interface {
	// Create makes a snapshot of v named for runID. The caller must call
	// Release with the returned snapshot, on every path.
	Create(ctx context.Context, v Volume, runID string) (*Snapshot, error)
	// Release removes the snapshot. It must be safe to call more than once.
	Release(ctx context.Context, s *Snapshot) error
	// Check reports whether the snapshot is still valid and how full it is
	// (0-100); an overflowed snapshot returns ErrOverflow.
	Check(ctx context.Context, s *Snapshot) (usedPct float64, err error)
}

// Replayer is implemented by snapshotters whose snapshots may be read-only
// (an offline image, read in place). A filesystem that needs journal
// recovery cannot be read faithfully from a read-only device, and its
// journal must never be replayed into the source.
type Replayer interface {
	// Writable makes a throwaway, writable copy of the size bytes at off
	// of s, for the filesystem named part (p1, fs): a reflink clone where
	// the filesystem shares extents, else a copy of that region's data.
	// It returns the copy (release it with the Snapshotter's Release, on
	// every path) and where the region starts in it.
	Writable(ctx context.Context, v Volume, s *Snapshot, runID, part string, off, size int64) (*Snapshot, int64, error)
}

// ErrOverflow means the snapshot filled up while voltar read it, so what was
// read is not a consistent image.
var ErrOverflow = errors.New("snapshot overflowed; archive discarded; raise snapshot_size")

// Preflighter is implemented by snapshotters that can tell, before creating
// anything, whether the snapshot will fit (e.g. LVM: VG or thin-pool space).
type Preflighter interface {
	// Preflight returns the bytes the snapshot needs, or an error saying
	// why it cannot be made.
	Preflight(ctx context.Context, v Volume) (need int64, err error)
}

// Planner is implemented by snapshotters that can name, before they make
// it, every snapshot they may make: the run journals those names first, so
// a kill between a snapshot's creation and its journal entry still leaves
// the entry for the next command's sweep (which removes what exists of
// them, and finds nothing to do for the rest).
type Planner interface {
	// Planned names what Create (part "") or Replayer.Writable (part: the
	// filesystem, p1, fs) may make for v in runID: every name it could
	// take, since which one is decided only while it is made (a reflink
	// next to the image, or a copy in the scratch directory).
	Planned(v Volume, runID, part string) []Planned
}

// Planned is a snapshot that may be made: its kind and its journal ref
// (as RemoveLeftover takes it).
type Planned struct {
	Kind SnapshotKind
	Ref  string
}

// Sweeper is implemented by snapshotters whose snapshots can outlive a run
// that was killed (kill -9, power loss): the next run's sweep hands it what
// the dead run's journal names and lets it search for the rest by the
// name or tag every such snapshot carries. A Sweeper touches only what
// this installation made (its scope), never another one's live snapshots.
type Sweeper interface {
	// Kinds are the snapshot kinds it makes; journal entries for
	// snapshots of these kinds go to RemoveLeftover.
	Kinds() []SnapshotKind
	// RemoveLeftover removes the snapshot a dead run's journal names by
	// ref (vg/lv for LVM, the clone's path for images). A snapshot already
	// gone is no error; one that is not voltar's is refused.
	RemoveLeftover(ctx context.Context, ref string) error
	// Sweep finds the snapshots dead runs of this installation left
	// without a journal entry and removes them, logging each. It returns
	// how many it removed.
	Sweep(ctx context.Context) (int, error)
}

// Set is a group of volumes snapshotted at one instant: the disks of one
// libvirt domain.
type Set struct {
	ID     string // the same for every snapshot of the set
	Domain string
	UUID   string
	Disk   string // this snapshot's disk (target name)
	Disks  []SetDisk
}

// SetDisk is one disk of a Set: its target in the domain and its volume.
type SetDisk struct {
	Target string
	Volume string // Volume.ID()
}
