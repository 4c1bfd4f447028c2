package nightly_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"voltar/internal/backup"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/fail"
	"voltar/internal/folder"
	"voltar/internal/nightly"
	"voltar/internal/objio"
	"voltar/internal/prune"
	"voltar/internal/report"
	"voltar/internal/retention"
	"voltar/internal/store"
	"voltar/internal/store/storetest"
	"voltar/internal/volume"
)

// These tests need no root: the fake snapshotter hands out the image file
// itself, whose one partition holds no filesystem, so the backup reads it
// raw from the file (no loop device, no mount).

// fakeSnapshotter snapshots image files in place and fails the volumes
// named in fail.
type fakeSnapshotter struct {
	fail map[string]error

	mu                sync.Mutex
	created, released []string
}

func (f *fakeSnapshotter) Create(ctx context.Context, v volume.Volume, runID string) (*volume.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, v.Name)
	if err := f.fail[v.Name]; err != nil {
		return nil, err
	}
	return &volume.Snapshot{Kind: volume.KindNone, Name: v.Path, Path: v.Path, Size: v.Size, ReadOnly: true}, nil
}

func (f *fakeSnapshotter) Release(ctx context.Context, s *volume.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, s.Name)
	return nil
}

func (f *fakeSnapshotter) Check(ctx context.Context, s *volume.Snapshot) (float64, error) {
	return 0, nil
}

// image writes a 4 MiB image with an MBR and one partition of plain data.
func image(t *testing.T, name string) volume.Volume {
	t.Helper()
	buf := make([]byte, 4<<20)
	e := buf[446:462] // partition entry 1
	e[4] = 0x83
	binary.LittleEndian.PutUint32(e[8:], 2048)  // first LBA
	binary.LittleEndian.PutUint32(e[12:], 4096) // sectors
	buf[510], buf[511] = 0x55, 0xaa
	copy(buf[1<<20:], bytes.Repeat([]byte(name+" holds data; "), 10000))
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	return volume.Volume{Kind: volume.KindImage, Group: "image", Name: name, Path: p, Size: int64(len(buf))}
}

const host = "h"

// options runs jobs for the named volumes, all snapshotted by snap.
func options(t *testing.T, st store.Store, snap volume.Snapshotter, names ...string) nightly.Options {
	var jobs []nightly.Job
	for _, n := range names {
		jobs = append(jobs, nightly.Job{Volume: image(t, n), Snapshotter: snap})
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return nightly.Options{
		Settings: folder.Settings{Store: st, Host: host, Encoding: objio.Encoding{Compression: "zstd"},
			CleanupTimeout: time.Minute, Version: "test", Logger: log},
		Jobs: jobs, Concurrency: 2,
		Backup:    backup.Options{RuntimeDir: t.TempDir(), RunID: "20261206T010000Z-test"},
		Prune:     prune.Options{Policy: retention.Policy{KeepLast: 1}, Loc: time.UTC, Logger: log},
		Retention: "keep_last 1",
	}
}

func statuses(r *report.Run) string {
	var s []string
	for _, v := range r.Volumes {
		s = append(s, v.ID+"="+v.Status)
	}
	return strings.Join(s, " ")
}

// One volume's failure does not stop the others, and the report says
// which failed and why.
func TestOneFailureDoesNotStopTheOthers(t *testing.T) {
	st := storetest.NewMemory()
	snap := &fakeSnapshotter{fail: map[string]error{"b.img": errors.New("no space for the snapshot")}}
	r := nightly.Run(context.Background(), options(t, st, snap, "a.img", "b.img", "c.img"))
	if got, want := statuses(r), "image/a.img=ok image/b.img=failed image/c.img=ok"; got != want {
		t.Fatalf("volumes: %s, want %s (errors %+v)", got, want, r.Volumes)
	}
	if e := r.Volumes[1].Err; e == nil || !strings.Contains(e.Message, "no space for the snapshot") {
		t.Errorf("b.img's error = %+v, want the snapshot's", e)
	}
	for _, i := range []int{0, 2} {
		v := r.Volumes[i]
		if v.BackupID == "" || v.StoredBytes <= 0 || len(v.Filesystems) != 1 || v.Filesystems[0].Mode != report.ModeRaw {
			t.Errorf("%s: %+v, want a stored raw backup", v.ID, v)
		}
		if _, err := st.Stat(context.Background(), host+"/"+v.BackupID+"/manifest.json"); err != nil {
			t.Errorf("%s: manifest not in the store: %v", v.ID, err)
		}
	}
	if len(snap.released) != 2 {
		t.Errorf("released %v, want the two snapshots made", snap.released)
	}
	if r.OK() || r.Finished.IsZero() {
		t.Errorf("report OK %v, finished %v; want a failed, finished run", r.OK(), r.Finished)
	}
}

// A volume is pruned only after its new backup succeeded: the failed
// volume keeps every old backup even where the policy would drop them.
func TestPruneOnlyAfterSuccess(t *testing.T) {
	st := storetest.NewMemory()
	for _, name := range []string{"a.img", "b.img"} {
		for day := 1; day <= 2; day++ {
			catalogtest.Write(t, st, catalogtest.Folder{Host: host, Group: "image", Volume: name,
				Time:     time.Date(2026, 11, day, 1, 30, 0, 0, time.UTC),
				Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("f", 0o644, "old")), "zstd")}}})
		}
	}
	snap := &fakeSnapshotter{fail: map[string]error{"b.img": errors.New("snapshot failed")}}
	r := nightly.Run(context.Background(), options(t, st, snap, "a.img", "b.img"))
	if got, want := statuses(r), "image/a.img=ok image/b.img=failed"; got != want {
		t.Fatalf("volumes: %s, want %s", got, want)
	}
	if got := len(r.Volumes[0].Removed); got != 2 {
		t.Errorf("a.img: %d backups removed, want its 2 old ones: %+v", got, r.Volumes[0].Removed)
	}
	if got := len(r.Volumes[1].Removed); got != 0 {
		t.Errorf("b.img: removed %+v after its backup failed", r.Volumes[1].Removed)
	}
	for _, c := range []struct {
		name string
		want int
	}{{"a.img", 1}, {"b.img", 2}} {
		objs, _ := st.List(context.Background(), host+"/image/"+c.name+"/")
		n := 0
		for _, o := range objs {
			if strings.HasSuffix(o.Key, "/manifest.json") {
				n++
			}
		}
		if n != c.want {
			t.Errorf("%s: %d backups in the store, want %d", c.name, n, c.want)
		}
	}
}

// failingPreflight is a store that is not usable tonight.
type failingPreflight struct{ *storetest.Memory }

func (failingPreflight) Preflight(context.Context, store.PreflightOptions) error {
	return errors.New("store /srv/backup is not mounted")
}

// A run stopped early, by its preflight or by an interrupt, still produces
// a complete report: every volume listed as not attempted, nothing
// snapshotted.
func TestAbortedRunStillReports(t *testing.T) {
	for _, tc := range []struct {
		name    string
		st      store.Store
		ctx     func() context.Context
		runErr  string
		volErr  string
		volumes int
	}{
		{
			// Wrapped, as a test or logging wrapper would: the preflight
			// is found through Unwrap.
			name: "preflight", st: storetest.NewFaulty(failingPreflight{storetest.NewMemory()}),
			ctx:    context.Background,
			runErr: "not mounted", volErr: "not attempted: the run's preflight failed",
		},
		{
			name: "interrupted", st: storetest.NewMemory(),
			ctx: func() context.Context {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx
			},
			volErr: "not attempted: context canceled",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := &fakeSnapshotter{}
			r := nightly.Run(tc.ctx(), options(t, tc.st, snap, "a.img", "b.img"))
			if got, want := statuses(r), "image/a.img=skipped image/b.img=skipped"; got != want {
				t.Errorf("volumes: %s, want %s", got, want)
			}
			for _, v := range r.Volumes {
				if v.Err == nil || v.Err.Message != tc.volErr {
					t.Errorf("%s: error %+v, want %q", v.ID, v.Err, tc.volErr)
				}
			}
			if tc.runErr != "" && (len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Message, tc.runErr)) {
				t.Errorf("run errors %+v, want one saying %q", r.Errors, tc.runErr)
			}
			if len(snap.created) != 0 {
				t.Errorf("snapshots made: %v", snap.created)
			}
			if r.Host != host || r.Started.IsZero() || r.Finished.IsZero() || r.Retention != "keep_last 1" {
				t.Errorf("report head %+v incomplete", r)
			}
			var text bytes.Buffer
			if err := report.Text(&text, r); err != nil || !strings.Contains(text.String(), "image/b.img") {
				t.Errorf("text report (%v):\n%s", err, text.String())
			}
		})
	}
}

// A run that could not even start (here: its store could not be opened)
// reports the error with its hints; what it could not measure is unknown,
// not zero, in every output.
func TestAbortedBeforeTheStart(t *testing.T) {
	started := time.Date(2026, 12, 6, 1, 30, 0, 0, time.UTC)
	err := fail.Hint(errors.New("store s3://b/p: connection refused"), "check store.s3.endpoint")
	r := nightly.Aborted(host, "s3://b/p", "keep_last 1", "test", started, started.Add(time.Second), err)
	if r.OK() || len(r.Errors) != 1 || r.Errors[0].Message != err.Error() || len(r.Errors[0].Hints) != 1 {
		t.Fatalf("report %+v, want one run error with its hint", r)
	}
	var js bytes.Buffer
	if err := report.JSON(&js, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ok": false`, `"store_total_bytes": null`, `"dest_used_bytes": null`, `"check store.s3.endpoint"`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON report lacks %s:\n%s", want, js.String())
		}
	}
	prom := filepath.Join(t.TempDir(), "voltar.prom")
	if err := report.WritePrometheus(prom, r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(prom)
	if !strings.Contains(string(b), "voltar_run_success 0") || strings.Contains(string(b), "voltar_store_size_bytes") {
		t.Errorf("metrics:\n%s", b)
	}
}

// A configured source that cannot be backed up is a failed volume of the
// run, with its reason and hint, and the other volumes are still backed
// up; even a run whose preflight failed lists it as failed.
func TestMissingSourcesFail(t *testing.T) {
	gone := nightly.Missing{ID: "image/gone.img", Err: fail.Hint(errors.New("volume /srv/gone.img: no such file"), "bring the file back")}
	vg := nightly.Missing{ID: "vg9/*", Err: errors.New(`volume group "vg9" not found`)}
	for _, tc := range []struct {
		name string
		st   store.Store
		want string
	}{
		{"run", storetest.NewMemory(), "image/a.img=ok image/gone.img=failed vg9/*=failed"},
		{"preflight failed", failingPreflight{storetest.NewMemory()}, "image/a.img=skipped image/gone.img=failed vg9/*=failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t, tc.st, &fakeSnapshotter{}, "a.img")
			o.Missing = []nightly.Missing{gone, vg}
			r := nightly.Run(context.Background(), o)
			if got := statuses(r); got != tc.want {
				t.Fatalf("volumes: %s, want %s", got, tc.want)
			}
			if r.OK() {
				t.Error("run OK with a missing source")
			}
			if ok, failed, total := r.Counts(); failed != 2 || total != 3 || (tc.name == "run") != (ok == 1) {
				t.Errorf("counts %d ok, %d failed of %d", ok, failed, total)
			}
			e := r.Volumes[1].Err
			if e == nil || e.Message != "volume /srv/gone.img: no such file" || len(e.Hints) != 1 || e.Hints[0] != "bring the file back" {
				t.Errorf("gone.img's error = %+v, want the reason and its hint", e)
			}
			if r.Volumes[1].StoredBytes != -1 || r.Volumes[1].BackupID != "" {
				t.Errorf("gone.img %+v: stored something", r.Volumes[1])
			}
		})
	}
}

// Volumes with backups of this host that the run did not select are
// listed once, with their newest backup, and fail nothing; a missing
// source's volumes and dumps are not among them.
func TestUnselectedListed(t *testing.T) {
	st := storetest.NewMemory()
	seed := func(host, group, volume string, day int) {
		catalogtest.Write(t, st, catalogtest.Folder{Host: host, Group: group, Volume: volume,
			Time:     time.Date(2026, 11, day, 1, 30, 0, 0, time.UTC),
			Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("f", 0o644, "old")), "zstd")}}})
	}
	seed(host, "image", "a.img", 1)
	seed(host, "image", "old.img", 1)
	seed(host, "image", "old.img", 3)
	seed(host, "image", "gone.img", 2) // missing tonight: it fails instead
	seed(host, "vg9", "volume-1", 2)   // its whole VG is missing
	seed(host, "vg0", "volume-2", 4)   // deleted LV
	seed("other", "image", "x.img", 2) // another host's
	o := options(t, st, &fakeSnapshotter{}, "a.img")
	o.Missing = []nightly.Missing{{ID: "image/gone.img", Err: errors.New("gone")}, {ID: "vg9/*", Err: errors.New("no vg9")}}
	r := nightly.Run(context.Background(), o)
	var got []string
	for _, u := range r.Unselected {
		got = append(got, fmt.Sprintf("%s %s %s %d", u.ID, u.LastBackup.Format(time.DateOnly), u.BackupID, u.Backups))
	}
	want := []string{
		"image/old.img 2026-11-03 image/old.img/2026-11-03T013000Z 2",
		"vg0/volume-2 2026-11-04 vg0/volume-2/2026-11-04T013000Z 1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("unselected:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(r.Errors) != 0 {
		t.Errorf("run errors %+v", r.Errors)
	}

	// Only unselected volumes: the run is OK, and says so.
	o = options(t, st, &fakeSnapshotter{}, "a.img")
	r = nightly.Run(context.Background(), o)
	if !r.OK() || len(r.Unselected) != 4 {
		t.Errorf("OK %v, unselected %+v; want an OK run listing 4", r.OK(), r.Unselected)
	}
}

// roomyStore is a store with a filesystem, so that the run's preflight
// estimates the space the backups need from the catalog.
type roomyStore struct{ *storetest.Memory }

func (roomyStore) Preflight(context.Context, store.PreflightOptions) error { return nil }

func (roomyStore) Usage(context.Context) (store.Usage, error) {
	return store.Usage{Size: 1 << 40, Used: 1 << 30, Avail: 1<<40 - 1<<30}, nil
}

// The free-space estimate and the unselected volumes share one reading of
// the catalog: a volume no job touches has its manifest read once.
func TestCatalogReadOncePerRun(t *testing.T) {
	mem := storetest.NewMemory()
	catalogtest.Write(t, mem, catalogtest.Folder{Host: host, Group: "image", Volume: "old.img",
		Time:     time.Date(2026, 11, 1, 1, 30, 0, 0, time.UTC),
		Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("f", 0o644, "old")), "zstd")}}})
	st := storetest.NewFaulty(roomyStore{mem})
	var mu sync.Mutex
	reads := 0
	st.Observe = func(c storetest.Call) {
		if c.Op == storetest.OpGet && strings.HasPrefix(c.Key, host+"/image/old.img/") && strings.HasSuffix(c.Key, "/manifest.json") {
			mu.Lock()
			reads++
			mu.Unlock()
		}
	}
	r := nightly.Run(context.Background(), options(t, st, &fakeSnapshotter{}, "a.img"))
	if !r.OK() || len(r.Unselected) != 1 || r.Unselected[0].ID != "image/old.img" {
		t.Fatalf("OK %v, unselected %+v, errors %+v", r.OK(), r.Unselected, r.Errors)
	}
	if reads != 1 {
		t.Errorf("old.img's manifest read %d times, want once (one catalog per run)", reads)
	}
}

// A backup that is stored but whose prune then fails is its own status:
// the row keeps the backup's ID and size, the backup is the volume's last
// success, and the run still fails.
func TestStoredButPruneFailed(t *testing.T) {
	ctx := context.Background()
	mem := storetest.NewMemory()
	old := time.Date(2026, 11, 1, 1, 30, 0, 0, time.UTC)
	catalogtest.Write(t, mem, catalogtest.Folder{Host: host, Group: "image", Volume: "a.img", Time: old,
		Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("f", 0o644, "old")), "zstd")}}})
	denied := &fs.PathError{Op: "remove", Path: "/srv/backup/h/image/a.img", Err: syscall.EACCES}
	st := storetest.NewFaulty(mem, &storetest.Fault{Op: storetest.OpDelete, Err: denied})

	r := nightly.Run(ctx, options(t, st, &fakeSnapshotter{}, "a.img", "b.img"))
	if got, want := statuses(r), "image/a.img=prune_failed image/b.img=ok"; got != want {
		t.Fatalf("volumes: %s, want %s (%+v)", got, want, r.Volumes)
	}
	v := r.Volumes[0]
	objs, err := mem.List(ctx, host+"/"+v.BackupID+"/")
	if err != nil || v.BackupID == "" {
		t.Fatalf("backup ID %q, list: %v", v.BackupID, err)
	}
	var folderBytes int64
	for _, o := range objs {
		folderBytes += o.Size
	}
	if _, err := mem.Stat(ctx, host+"/"+v.BackupID+"/manifest.json"); err != nil {
		t.Errorf("%s: manifest not in the store: %v", v.BackupID, err)
	}
	if v.StoredBytes != folderBytes {
		t.Errorf("stored bytes %d, want the backup's size, its folder's %d", v.StoredBytes, folderBytes)
	}
	if v.Err == nil || !strings.Contains(v.Err.Message, "pruning failed") || !strings.Contains(v.Err.Message, "permission denied") || len(v.Err.Hints) == 0 {
		t.Errorf("error %+v, want the prune's with a hint", v.Err)
	}
	if r.OK() {
		t.Error("run OK with a failed prune; want it to fail (exit 1)")
	}
	if vpf, _ := r.PruneFailed(); vpf != 1 {
		t.Errorf("PruneFailed() = %d volumes, want 1", vpf)
	}

	// Prometheus: the new backup is the last success; the backup did not
	// fail, the prune did.
	prom := filepath.Join(t.TempDir(), "voltar.prom")
	if err := os.WriteFile(prom, []byte(`voltar_volume_last_success_timestamp_seconds{volume="image/a.img"} `+
		strconv.FormatInt(old.Unix(), 10)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := report.WritePrometheus(prom, r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(prom)
	for _, want := range []string{
		`voltar_volume_last_success_timestamp_seconds{volume="image/a.img"} ` + promFloat(v.Finished),
		`voltar_volume_backup_failed{volume="image/a.img"} 0`,
		`voltar_volume_prune_failed{volume="image/a.img"} 1`,
		`voltar_volume_prune_failed{volume="image/b.img"} 0`,
		`voltar_volume_backup_stored_bytes{volume="image/a.img"} ` + strconv.FormatInt(v.StoredBytes, 10),
		"voltar_run_success 0",
	} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, b)
		}
	}
}

// promFloat is t as the textfile writes a timestamp.
func promFloat(t time.Time) string {
	return strconv.FormatFloat(float64(t.Unix())+float64(t.Nanosecond())/1e9, 'g', -1, 64)
}

// What a run reports as written is what the store grew by: every object,
// SHA256SUMS and the manifests too, not only the archives.
func TestWrittenIsTheStoresGrowth(t *testing.T) {
	st := storetest.NewMemory()
	r := nightly.Run(context.Background(), options(t, st, &fakeSnapshotter{}, "a.img", "b.img"))
	if !r.OK() {
		t.Fatalf("run failed: %s", statuses(r))
	}
	objs, err := st.List(context.Background(), host+"/")
	if err != nil {
		t.Fatal(err)
	}
	var grown, archives int64
	for _, o := range objs {
		grown += o.Size
	}
	for _, v := range r.Volumes {
		for _, f := range v.Filesystems {
			archives += f.StoredBytes
		}
	}
	if got := r.WrittenBytes(); got != grown || got <= archives {
		t.Errorf("written %d bytes, the store grew by %d (archives alone: %d)", got, grown, archives)
	}
	if r.StoreTotalBytes != grown {
		t.Errorf("store total %d, want %d", r.StoreTotalBytes, grown)
	}
}
