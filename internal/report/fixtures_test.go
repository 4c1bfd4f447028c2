package report_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"voltar/internal/report"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	KiB = int64(1) << 10
	MiB = KiB << 10
	GiB = MiB << 10
)

// cet keeps golden files independent of the machine's zone.
var cet = time.FixedZone("CET", 3600)

// at is 2026-11-25 at hh:mm:ss CET, plus a day offset.
func at(day, hh, mm, ss int) time.Time {
	return time.Date(2026, 11, 25+day, hh, mm, ss, 0, cet)
}

func vol(id string, start time.Time, d time.Duration) report.Volume {
	return report.Volume{
		ID: id, Status: report.StatusOK,
		BackupID:    id + "/" + start.UTC().Format("2006-01-02T150405Z"),
		Started:     start,
		Finished:    start.Add(d),
		StoredBytes: 3*GiB + GiB/2, SourceBytes: 4*GiB + 300*MiB, Files: 48213,
		PeakCOWPct:  3.4,
		Filesystems: []report.FS{{Name: "p1", Type: "ext4", Mode: report.ModeFiles, StoredBytes: 3*GiB + GiB/2}},
	}
}

func base() *report.Run {
	return &report.Run{
		Host:            "nova-vol1",
		Started:         at(0, 1, 0, 1),
		Finished:        at(0, 1, 5, 37),
		Store:           "/BACKUPS/voltar",
		Retention:       "keep_days 7, keep_last 3",
		StoreTotalBytes: 267 * GiB,
		DestUsedBytes:   350 * GiB,
		DestAvailBytes:  650 * GiB,
		DestTotalBytes:  1000 * GiB,
		Version:         "1.0.0",
	}
}

// runs are the cases of the golden-file tests, by file name.
var runs = map[string]func() *report.Run{
	"all-ok-pruned": func() *report.Run {
		r := base()
		a := vol("nova-volumes/volume-00000019", at(0, 1, 0, 2), 81*time.Second)
		a.Removed = []report.Removed{{ID: "nova-volumes/volume-00000019/2026-11-17T000002Z", Reason: "older than keep_days 7, beyond keep_last 3"}}
		b := vol("nova-volumes/volume-0000001a", a.Finished, 4*time.Minute+15*time.Second)
		b.StoredBytes, b.SourceBytes, b.Files, b.PeakCOWPct = 6*GiB+900*MiB, 7*GiB, 1203344, 11.5
		b.Filesystems = append(b.Filesystems, report.FS{Name: "p5", Type: "swap", Mode: report.ModeSkipped, Reason: "swap"})
		b.Removed = []report.Removed{
			{ID: "nova-volumes/volume-0000001a/2026-11-16T000241Z", Reason: "older than keep_days 7"},
			{ID: "nova-volumes/volume-0000001a/2026-11-17T000241Z", Reason: "older than keep_days 7"},
		}
		r.Volumes = []report.Volume{a, b}
		return r
	},
	"one-failed-hints": func() *report.Run {
		r := base()
		a := vol("nova-volumes/volume-00000019", at(0, 1, 0, 2), 81*time.Second)
		b := vol("nova-volumes/volume-0000001a", a.Finished, 2*time.Minute+3*time.Second)
		b.Status, b.BackupID, b.StoredBytes, b.Files, b.PeakCOWPct = report.StatusFailed, "", 0, 0, 100
		b.Filesystems = nil
		b.Err = &report.Problem{
			Message: "backup nova-volumes/volume-0000001a: snapshot overflowed (COW 100%); archive discarded",
			Hints: []string{
				"raise snapshot_size (now 10%ORIGIN) for this volume",
				"or back it up when it is written to less",
			},
		}
		c := vol("nova-volumes/volume-0000001b", b.Finished, 59*time.Second)
		r.Volumes = []report.Volume{a, b, c}
		return r
	},
	"partial-skipped-fs": func() *report.Run {
		r := base()
		a := vol("pve/vm-101-disk-0", at(0, 1, 0, 2), 3*time.Minute)
		a.Status = report.StatusPartial
		a.Filesystems = []report.FS{
			{Name: "p1", Type: "vfat", Mode: report.ModeFiles, StoredBytes: 30 * MiB},
			{Name: "p2", Type: "ntfs", Mode: report.ModeRaw, Reason: "no file-level support for ntfs", StoredBytes: 12 * GiB},
			{Name: "p3", Type: "ext4", Mode: report.ModeSkipped, Reason: "mount failed: bad superblock\nsee dmesg"},
			{Name: "p5", Type: "swap", Mode: report.ModeSkipped, Reason: "swap"},
		}
		a.Err = &report.Problem{Message: "p3: mount failed; the backup lacks p3", Hints: []string{"run fsck on the volume inside the instance"}}
		r.Volumes = []report.Volume{a}
		return r
	},
	"btrfs-subvolumes": func() *report.Run {
		r := base()
		a := vol("image/desktop.img", at(0, 1, 0, 2), 2*time.Minute)
		a.Filesystems = []report.FS{
			{Name: "p1", Type: "vfat", Mode: report.ModeFiles, StoredBytes: 30 * MiB},
			{Name: "p2", Type: "btrfs", Mode: report.ModeFiles, StoredBytes: 3 * GiB, Subvolumes: 4, SkippedSubvolumes: 2, NotEntered: 2},
			{Name: "p3", Type: "ext4", Mode: report.ModeFiles, StoredBytes: GiB, NotEntered: 1},
		}
		r.Volumes = []report.Volume{a}
		return r
	},
	"with-dumps": func() *report.Run {
		r := base()
		a := vol("nova-volumes/volume-00000019", at(0, 1, 0, 2), 81*time.Second)
		r.Volumes = []report.Volume{a}
		r.Dumps = []report.Dump{
			{Name: "db1", Status: report.StatusOK, BackupID: "dumps/db1/2026-11-25T000325Z", Started: at(0, 1, 3, 25), Finished: at(0, 1, 3, 40), StoredBytes: 150 * MiB},
			{Name: "wiki-mysql", Status: report.StatusFailed, Started: at(0, 1, 3, 40), Finished: at(0, 1, 3, 50),
				Err: &report.Problem{Message: "ssh wiki.example.net: host key mismatch", Hints: []string{"check the instance's host key and update dumps.known_hosts"}}},
		}
		return r
	},
	"stored-prune-failed": func() *report.Run {
		// The backups are stored; deleting the old ones was refused.
		r := base()
		a := vol("nova-volumes/volume-00000019", at(0, 1, 0, 2), 81*time.Second)
		a.Status = report.StatusPruneFailed
		a.Err = &report.Problem{
			Message: "backup nova-volumes/volume-00000019/2026-11-25T000002Z succeeded, but pruning failed: " +
				"delete nova-vol1/nova-volumes/volume-00000019/2026-11-17T000002Z/p1.tar.zst: permission denied",
			Hints: []string{"check the store's permissions; `voltar prune --dry-run` shows what is due"},
		}
		b := vol("nova-volumes/volume-0000001a", a.Finished, 2*time.Minute+3*time.Second)
		r.Volumes = []report.Volume{a, b}
		r.Dumps = []report.Dump{
			{Name: "db1", Status: report.StatusPruneFailed, BackupID: "dumps/db1/2026-11-25T000325Z", Started: at(0, 1, 3, 25), Finished: at(0, 1, 3, 40), StoredBytes: 150 * MiB,
				Err: &report.Problem{Message: "dump db1 succeeded, but pruning failed: list nova-vol1/dumps/db1/: connection reset by peer",
					Hints: []string{"check the store's permissions; `voltar prune --dry-run` shows what is due"}}},
		}
		return r
	},
	"over-an-hour": func() *report.Run {
		// The classic script's report said "1 h 75 m and 35 seconds".
		r := base()
		r.Finished = r.Started.Add(time.Hour + 15*time.Minute + 35*time.Second)
		a := vol("vg0/volume-big", at(0, 1, 0, 2), time.Hour+2*time.Minute+3*time.Second)
		a.StoredBytes, a.SourceBytes, a.Files = 812*GiB, 1500*GiB, 23456789
		b := vol("vg0/volume-small", a.Finished, 13*time.Minute+30*time.Second)
		r.Volumes = []report.Volume{a, b}
		return r
	},
	"unknown-sizes": func() *report.Run {
		r := base()
		r.Store = "s3://backups/voltar"
		r.StoreTotalBytes, r.DestUsedBytes, r.DestAvailBytes, r.DestTotalBytes = -1, -1, -1, -1
		r.Retention = ""
		r.Version = ""
		a := vol("image/web1.img", at(0, 1, 0, 2), 12*time.Second+340*time.Millisecond)
		a.SourceBytes, a.Files, a.PeakCOWPct = -1, -1, -1
		// A tiny volume takes less than a second: tenths, not "0s".
		b := vol("image/tiny.img", a.Finished, 380*time.Millisecond)
		b.StoredBytes, b.SourceBytes, b.Files, b.PeakCOWPct = 9728, -1, -1, -1
		r.Volumes = []report.Volume{a, b}
		return r
	},
	"missing-and-unselected": func() *report.Run {
		// A configured image whose file is gone and a configured VG that
		// does not exist fail; volumes with backups that were not
		// selected are listed, but do not fail the run.
		r := base()
		a := vol("nova-volumes/volume-00000019", at(0, 1, 0, 2), 81*time.Second)
		missing := func(id, msg, hint string) report.Volume {
			return report.Volume{ID: id, Status: report.StatusFailed, StoredBytes: -1, SourceBytes: -1, Files: -1, PeakCOWPct: -1,
				Err: &report.Problem{Message: msg, Hints: []string{hint}}}
		}
		r.Volumes = []report.Volume{a,
			missing("image/web2.img", "volume /srv/images/web2.img: no such file",
				"images: lists /srv/images/web2.img: bring the file back (a deleted VM, a typo, an unmounted share?) or remove it from images:"),
			missing("cinder-volumes/*", `volume group "cinder-volumes" not found (volume groups here: nova-volumes)`,
				"lvm.volume_groups lists cinder-volumes: activate it (vgchange -ay cinder-volumes) or remove it from lvm.volume_groups"),
		}
		r.Unselected = []report.Unselected{
			{ID: "image/web1.img", LastBackup: at(-3, 1, 0, 4).UTC(), BackupID: "image/web1.img/2026-11-22T000004Z", Backups: 3},
			{ID: "nova-volumes/volume-00000011", LastBackup: at(-1, 1, 2, 0).UTC(), BackupID: "nova-volumes/volume-00000011/2026-11-24T000200Z", Backups: 7},
		}
		return r
	},
	"run-error-utc": func() *report.Run {
		r := base()
		r.Started, r.Finished = at(0, 0, 0, 1).UTC(), at(0, 0, 0, 2).UTC()
		r.Errors = []report.Problem{{
			Message: "preflight: /BACKUPS is not a mount point",
			Hints:   []string{"mount the backup disk, or unset store.require_mount"},
		}}
		r.Volumes = []report.Volume{
			{ID: "nova-volumes/volume-00000019", Status: report.StatusSkipped},
			{ID: "nova-volumes/volume-0000001a", Status: report.StatusSkipped},
		}
		return r
	},
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
