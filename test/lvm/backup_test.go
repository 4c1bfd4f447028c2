//go:build uml

package lvm_test

import (
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"voltar/internal/testutil"
)

// A thick volume with an MBR table, ext4 and xfs partitions, mounted and
// written to throughout the backup: voltar snapshots it (a COW snapshot of
// 100%ORIGIN, named and tagged as voltar's), maps and mounts each partition
// of the snapshot, archives it, and removes the snapshot. The archives hold
// exactly what was written before the snapshot (and crash-consistent
// prefixes of what the writer added meanwhile).
func TestThickMBRInUse(t *testing.T) {
	v := newVoltar(t, config{})
	step := stepper(t)
	const lv = "volume-00000001"
	dev := lvcreate(t, v.vg, lv, "-L", "368M")
	parts := partition(t, dev, 64, 300)
	step("lvcreate, sfdisk")
	fsTypes := []string{"ext4", "xfs"}
	var mnts []string
	staging := t.TempDir()
	for i, p := range parts {
		l := loop(t, dev, p[0], p[1])
		mkfs(t, fsTypes[i], l, fsTypes[i]+"-data")
		mnts = append(mnts, mount(t, l))
		step("mkfs " + fsTypes[i])
		src := filepath.Join(staging, fsTypes[i])
		tree(t, src, "before", fsTypes[i])
		// Enough data that the archive takes a moment: the test inspects
		// the snapshot while voltar holds it.
		writeFile(t, filepath.Join(src, "before"), "bulk.bin", 12<<20)
		copyTree(t, src, mnts[i])
		step("fill " + fsTypes[i])
	}

	w := startWriter(mnts...)
	p := v.start("backup", v.vg+"/"+lv)
	mnt, runID := v.waitMount(p)
	p.signal(syscall.SIGSTOP)
	step("voltar mounted the snapshot")
	// While voltar holds the snapshot: one LV, a thick COW snapshot of the
	// volume, named <lv>-voltar-<run> and tagged voltar and voltar-run-<run>,
	// read through a loop device voltar tagged, mounted under runtime_dir.
	snaps := snapshotsOf(t, v.vg, lv)
	if len(snaps) != 1 {
		t.Fatalf("snapshots of %s while voltar runs: %+v, want 1", lv, snaps)
	}
	s := snaps[0]
	if s.Name != lv+"-voltar-"+runID || !s.hasTag("voltar") || !s.hasTag("voltar-run-"+runID) {
		t.Errorf("snapshot %s tags %q; want %s-voltar-%s tagged voltar,voltar-run-%s", s.Name, s.Tags, lv, runID, runID)
	}
	// s: thick snapshot, a: active (I would be invalid).
	if attr(s, 0) != 's' || attr(s, 4) != 'a' {
		t.Errorf("snapshot attr %q, want an active thick snapshot (swi-aos---)", s.Attr)
	}
	// 100%ORIGIN of 368 MiB: the data plus LVM's exception tables, in extents.
	if s.size() != 372*mib {
		t.Errorf("snapshot size %d, want 372 MiB (100%%ORIGIN of 368 MiB)", s.size())
	}
	// The mounted partition is a loop device over the snapshot's device
	// at the partition's offset and size, tagged voltar:<hash>:<run>.
	// (Earlier partitions' loops stay attached until the end of the run.)
	part := filepath.Base(mnt) // p1 or p2
	n := int(part[1] - '1')
	snapDev, err := filepath.EvalSymlinks("/dev/" + v.vg + "/" + s.Name)
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, l := range voltarLoops(t) {
		if !strings.HasSuffix(l.Tag, ":"+runID) || l.Backing != snapDev {
			t.Errorf("loop device %s: tag %q, backing %s; want run %s over %s", l.Path, l.Tag, l.Backing, runID, snapDev)
		}
		if l.Offset == parts[n][0] && l.SizeLimit == parts[n][1] {
			ours = append(ours, l.Path)
		}
	}
	if len(ours) != 1 {
		t.Errorf("no voltar loop device maps %s (offset %d, size %d): %+v", part, parts[n][0], parts[n][1], voltarLoops(t))
	}
	t.Logf("run %s: snapshot %s (%s, %d bytes), loop %v, mount %s", runID, s.Name, s.Attr, s.size(), ours, mnt)
	p.signal(syscall.SIGCONT)

	r := p.wait()
	during := w.halt(t)
	step("backup")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	v.assertClean()

	folder, m := v.onlyBackup(lv)
	if got, want := files(t, folder), []string{"SHA256SUMS", "manifest.json", "manifest.json.sha256", "outside.runs.zst", "p1.index.zst", "p1.tar.zst", "p2.index.zst", "p2.tar.zst"}; !slices.Equal(got, want) {
		t.Errorf("backup folder holds %v, want %v", got, want)
	}
	if m.Snapshot.Kind != "thick" || m.Snapshot.Name != s.Name || m.Snapshot.Size != s.size() {
		t.Errorf("manifest snapshot %+v, want thick %s of %d bytes", m.Snapshot, s.Name, s.size())
	}
	if m.Volume.Path != dev || m.Volume.Size != 368*mib {
		t.Errorf("manifest volume %+v, want %s of 368 MiB", m.Volume, dev)
	}
	if m.Table.Type != "mbr" || len(m.Table.Partitions) != 2 || len(m.Filesystems) != 2 {
		t.Fatalf("manifest table %+v, filesystems %+v", m.Table, m.Filesystems)
	}
	inArchive := 0
	for i, fs := range m.Filesystems {
		if fs.Type != fsTypes[i] || fs.Label != fsTypes[i]+"-data" || fs.Mode != "files" {
			t.Errorf("filesystem %d: %+v", i+1, fs)
		}
		if got := m.Table.Partitions[i]; got.Start != parts[i][0] || got.Size != parts[i][1] {
			t.Errorf("partition %d at %d+%d, want %d+%d", i+1, got.Start, got.Size, parts[i][0], parts[i][1])
		}
		x := extract(t, folder, fs.Archive)
		testutil.CompareTrees(t, filepath.Join(staging, fsTypes[i], "before"), filepath.Join(x, "before"), nil)
		inArchive += w.checkDuring(t, x)
		for _, name := range files(t, x) {
			if name != "before" && name != "during" {
				t.Errorf("%s: unexpected %s in the archive (lost+found is left out)", fs.Archive, name)
			}
		}
	}
	t.Logf("peak COW %.2f%%; the writer wrote %d files per filesystem during the test, %d per filesystem before the snapshot",
		m.Snapshot.PeakCOWPct, during, inArchive/2)
	if during == 0 {
		t.Errorf("the writer wrote nothing while voltar ran; the volume was not in use")
	}
}

// A filesystem written directly on the volume, no partition table: one
// archive named fs.
func TestWholeVolumeFilesystem(t *testing.T) {
	v := newVoltar(t, config{})
	const lv = "volume-00000002"
	dev := lvcreate(t, v.vg, lv, "-L", "64M")
	mkfs(t, "ext4", dev, "whole")
	staging := t.TempDir()
	tree(t, staging, "before", "whole")
	copyTree(t, staging, mount(t, dev))

	v.mustRun(0, "backup", "/dev/"+v.vg+"/"+lv)
	v.assertClean()
	folder, m := v.onlyBackup(lv)
	if got, want := files(t, folder), []string{"SHA256SUMS", "fs.index.zst", "fs.tar.zst", "manifest.json", "manifest.json.sha256"}; !slices.Equal(got, want) {
		t.Errorf("backup folder holds %v, want %v", got, want)
	}
	if m.Table.Type != "none" || len(m.Filesystems) != 1 || m.Filesystems[0].Name != "fs" || m.Filesystems[0].Type != "ext4" {
		t.Fatalf("manifest table %+v, filesystems %+v; want one ext4 named fs", m.Table, m.Filesystems)
	}
	x := extract(t, folder, "fs.tar.zst")
	testutil.CompareTrees(t, staging, x, nil)
}

// A thin volume: voltar makes a thin snapshot (no size), which LVM creates
// with the activation-skip flag, activates it with -K, backs it up and
// removes it.
func TestThinVolume(t *testing.T) {
	v := newVoltar(t, config{Level: 19})
	const lv = "volume-00000003"
	lvcreate(t, v.vg, "pool3", "-L", "128M", "-T")
	dev := lvcreate(t, v.vg, lv, "-V", "256M", "--thinpool", "pool3")
	mkfs(t, "ext4", dev, "thin")
	staging := t.TempDir()
	tree(t, staging, "before", "thin")
	writeFile(t, filepath.Join(staging, "before"), "bulk.bin", 12<<20)
	mnt := mount(t, dev)
	copyTree(t, staging, mnt)

	w := startWriter(mnt)
	p := v.start("backup", v.vg+"/"+lv)
	_, runID := v.waitMount(p)
	p.signal(syscall.SIGSTOP)
	snaps := snapshotsOf(t, v.vg, lv)
	if len(snaps) != 1 {
		t.Fatalf("snapshots of %s while voltar runs: %+v, want 1", lv, snaps)
	}
	s := snaps[0]
	// V: thin volume, a: active, k: LVM's activation-skip flag, which only
	// `lvchange -ay -K` overrides.
	if s.Name != lv+"-voltar-"+runID || !s.hasTag("voltar") || !s.hasTag("voltar-run-"+runID) ||
		attr(s, 0) != 'V' || attr(s, 4) != 'a' || attr(s, 9) != 'k' || s.Pool != "pool3" {
		t.Errorf("snapshot %+v; want %s-voltar-%s in pool3, tagged voltar,voltar-run-%s, attr Vwi-aotz-k", s, lv, runID, runID)
	}
	p.signal(syscall.SIGCONT)
	r := p.wait()
	w.halt(t)
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	v.assertClean()
	folder, m := v.onlyBackup(lv)
	if m.Snapshot.Kind != "thin" || m.Snapshot.Name != s.Name {
		t.Errorf("manifest snapshot %+v, want thin %s", m.Snapshot, s.Name)
	}
	x := extract(t, folder, "fs.tar.zst")
	testutil.CompareTrees(t, filepath.Join(staging, "before"), filepath.Join(x, "before"), nil)
	w.checkDuring(t, x)
}
