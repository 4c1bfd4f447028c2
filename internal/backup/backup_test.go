package backup_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/cleanup"
	"voltar/internal/disk"
	"voltar/internal/folder"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/restore"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
	"voltar/internal/verify"
	"voltar/internal/volume/image"
)

// env is one test's private store, runtime and state directories.
type env struct {
	t       *testing.T
	dir     string
	store   *local.Store
	runtime string
	state   string
	scratch string
}

func newEnv(t *testing.T) *env {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "tar", "zstd", "sha256sum")
	dir := t.TempDir()
	e := &env{t: t, dir: dir, runtime: filepath.Join(dir, "run"), state: filepath.Join(dir, "state"), scratch: filepath.Join(dir, "scratch")}
	os.Mkdir(filepath.Join(dir, "store"), 0o700)
	e.store = local.New(filepath.Join(dir, "store"))
	t.Cleanup(e.assertNothingLeft)
	return e
}

func (e *env) options(runID string, j *cleanup.Journal) backup.Options {
	return backup.Options{
		Settings: folder.Settings{Store: e.store, Host: "testhost", Encoding: objio.Encoding{Compression: "zstd"},
			Journal: j, CleanupTimeout: time.Minute, Version: "test",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		RuntimeDir: e.runtime, RunID: runID,
		Snapshotter: &image.Snapshotter{Scratch: e.scratch, Scope: backup.Scope(e.runtime)},
	}
}

// assertNothingLeft fails the test if a loop device, mount or clone of
// voltar's survived.
func (e *env) assertNothingLeft() {
	t := e.t
	loops, err := disk.ListLoops()
	if err != nil {
		t.Errorf("list loops: %v", err)
	}
	for _, l := range loops {
		if strings.HasPrefix(l.Tag, backup.LoopTag(e.runtime, "")) || strings.HasPrefix(l.Backing, e.dir) {
			t.Errorf("loop device left attached: %+v", l)
			exec.Command("losetup", "-d", l.Path).Run()
		}
	}
	mounts, _ := disk.MountsUnder(e.runtime)
	for _, m := range mounts {
		t.Errorf("mount left behind: %s", m)
		unix.Unmount(m, unix.MNT_DETACH)
	}
	// Clones go to scratch or next to their image, which tests make in
	// e.dir or in a directory of their own under the test's temp root.
	var clones []string
	for _, pat := range []string{"*", "*/*", "../*", "../*/*"} {
		cs, _ := filepath.Glob(filepath.Join(e.dir, pat, image.ClonePrefix+"*"))
		clones = append(clones, cs...)
	}
	for _, c := range clones {
		t.Errorf("clone left behind: %s", c)
	}
}

func fillRoot(t testing.TB, root string) {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("guest1\n"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "home/alice/.cache"), 0o700))
	must(os.WriteFile(filepath.Join(root, "home/alice/notes.txt"), []byte(strings.Repeat("note\n", 1000)), 0o600))
	must(os.WriteFile(filepath.Join(root, "home/alice/.cache/big.tmp"), make([]byte, 1<<20), 0o600))
	must(os.Link(filepath.Join(root, "home/alice/notes.txt"), filepath.Join(root, "home/alice/notes-link.txt")))
	must(os.Symlink("notes.txt", filepath.Join(root, "home/alice/latest")))
	must(os.Chown(filepath.Join(root, "home/alice/notes.txt"), 1000, 1000))
	must(unix.Setxattr(filepath.Join(root, "etc/hostname"), "user.origin", []byte("test"), 0))
	must(unix.Mkfifo(filepath.Join(root, "home/alice/pipe"), 0o640))
	f, err := os.Create(filepath.Join(root, "sparse.img"))
	must(err)
	must(f.Truncate(256 << 20))
	_, err = f.WriteAt([]byte("middle"), 128<<20)
	must(err)
	f.Close()
	old := time.Date(1999, 12, 31, 23, 59, 59, 123456789, time.UTC)
	must(os.Chtimes(filepath.Join(root, "etc/hostname"), old, old))
}

func fillData(t testing.TB, root string) {
	if err := os.MkdirAll(filepath.Join(root, "db"), 0o750); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 0; i < 50000; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	if err := os.WriteFile(filepath.Join(root, "db/rows.txt"), []byte(b.String()), 0o640); err != nil {
		t.Fatal(err)
	}
}

func fillFAT(t testing.TB, root string) {
	os.MkdirAll(filepath.Join(root, "EFI/BOOT"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "EFI/BOOT/BOOTX64.EFI"), []byte("not really a boot loader"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBackupImages(t *testing.T) {
	for _, tc := range []struct {
		name  string
		image testutil.Image
		want  []string // filesystem name:type:mode
	}{
		{"mbr-ext4-xfs", testutil.Image{Table: "mbr", Parts: []testutil.Part{
			{FS: "ext4", SizeMiB: 300, Label: "root", Fill: fillRoot},
			{FS: "xfs", SizeMiB: 300, Label: "data", Fill: fillData},
		}}, []string{"p1:ext4:files", "p2:xfs:files"}},
		{"gpt-ext4-vfat-swap", testutil.Image{Table: "gpt", Parts: []testutil.Part{
			{FS: "vfat", SizeMiB: 40, Label: "ESP", Fill: fillFAT},
			{FS: "swap", SizeMiB: 16},
			{FS: "ext4", SizeMiB: 300, Fill: fillRoot},
		}}, []string{"p1:vfat:" + map[bool]string{true: "files", false: "raw"}[testutil.KernelHas("vfat")], "p2:swap:skipped", "p3:ext4:files"}},
		{"mbr-ext4-unknown", testutil.Image{Table: "mbr", Parts: []testutil.Part{
			{FS: "ext4", SizeMiB: 64, Fill: fillData},
			{FS: "", SizeMiB: 8}, // filled with random bytes below: no known filesystem
		}}, []string{"p1:ext4:files", "p2::raw"}},
		{"whole-disk-ext4", testutil.Image{Table: "none", Parts: []testutil.Part{
			{FS: "ext4", SizeMiB: 300, Fill: fillRoot},
		}}, []string{"fs:ext4:files"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			img := testutil.MakeImage(t, t.TempDir(), tc.image)
			if tc.name == "mbr-ext4-unknown" {
				testutil.Run(t, "sh", "-c", fmt.Sprintf("head -c 4M /dev/urandom | dd of=%s bs=1M seek=66 conv=notrunc status=none", img))
			}
			v, err := image.Resolve(img, false)
			if err != nil {
				t.Fatal(err)
			}
			j, err := cleanup.Start(e.state, "run1")
			if err != nil {
				t.Fatal(err)
			}
			o := e.options("run1", j)
			o.Excludes = []string{"*.tmp"}
			m, err := backup.Volume(context.Background(), v, o)
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Finish(); err != nil {
				t.Fatalf("journal: %v", err)
			}
			var got []string
			for _, f := range m.Filesystems {
				got = append(got, f.Name+":"+f.Type+":"+f.Mode)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("filesystems %v, want %v", got, tc.want)
			}
			wantTable := map[string]string{"mbr": "mbr", "gpt": "gpt", "none": "none"}[tc.image.Table]
			if m.Table.Type != wantTable {
				t.Errorf("table %q, want %q", m.Table.Type, wantTable)
			}
			dir := filepath.Join(e.store.Root(), "testhost", m.ID)
			// Restorable by hand: sha256sum -c, zstd -d, tar -x.
			testutil.Run(t, "sh", "-c", "cd '"+dir+"' && sha256sum --quiet -c SHA256SUMS")
			for i, f := range m.Filesystems {
				if f.Mode == manifest.ModeRaw {
					// The raw archive is the partition's bytes, exactly.
					p := m.Table.Partitions[i]
					testutil.Run(t, "bash", "-c", fmt.Sprintf("zstd -d -q < '%s/%s' | cmp - <(dd if=%s bs=1M skip=%d count=%d status=none)",
						dir, f.Archive, img, p.Start>>20, p.Size>>20))
					if f.SourceBytes != p.Size || f.Reason == "" {
						t.Errorf("%s: raw manifest entry %+v", f.Name, f)
					}
					continue
				}
				if f.Mode != manifest.ModeFiles {
					continue
				}
				out := filepath.Join(t.TempDir(), f.Name)
				os.Mkdir(out, 0o755)
				testutil.Run(t, "sh", "-c", fmt.Sprintf("zstd -d -q < '%s/%s' | tar -x --xattrs --xattrs-include='*' --numeric-owner -p -C '%s'", dir, f.Archive, out))
				if f.Type == "vfat" {
					continue // no kernel driver here to mount the source for comparison
				}
				off, size := int64(0), v.Size
				if m.Table.Type != "none" {
					off, size = m.Table.Partitions[i].Start, m.Table.Partitions[i].Size
				}
				src := testutil.MountRO(t, img, off, size)
				testutil.CompareTrees(t, src, out, func(rel string) bool {
					return rel == "lost+found" || strings.HasSuffix(rel, ".tmp")
				})
				if c := f.Check; c == nil || c.Method != manifest.CheckInodes || c.Counted != c.Holds {
					t.Errorf("%s: completeness check %+v, want counted == holds", f.Name, c)
				}
				if f.Files == 0 || f.SourceBytes == 0 || f.StoredBytes == 0 || f.SHA256 == "" {
					t.Errorf("%s: manifest counts not filled in: %+v", f.Name, f)
				}
			}
			// voltar verify agrees with what the backup recorded.
			b, err := catalog.Resolve(context.Background(), e.store, "testhost", m.ID)
			if err != nil {
				t.Fatal(err)
			}
			res := verify.Backup(context.Background(), e.store, b, nil)
			if !res.OK {
				t.Errorf("verify: %+v", res.Problems)
			}
			for _, o := range res.Objects {
				for _, fs := range verify.Archives(m) {
					if o.Name == fs.Archive && fs.Mode == manifest.ModeRaw && o.SourceBytes != fs.SourceBytes {
						t.Errorf("verify counts %d source bytes in %s, the manifest %d", o.SourceBytes, o.Name, fs.SourceBytes)
					}
				}
			}
			assertModes(t, filepath.Join(e.store.Root(), "testhost"))
		})
	}
}

// assertModes checks that the store holds only 0600 files in 0700 dirs.
func assertModes(t *testing.T, root string) {
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = os.ModeDir | 0o700
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		return nil
	})
}

// A failure at any stage leaves no loop device, mount, clone or backup folder.
func TestCleanupAfterInjectedFailure(t *testing.T) {
	e0 := newEnv(t)
	img := testutil.MakeImage(t, e0.dir, testutil.Image{Table: "mbr", Parts: []testutil.Part{
		{FS: "ext4", SizeMiB: 64, Fill: fillData},
		{FS: "ext4", SizeMiB: 64, Fill: fillData},
	}})
	v, err := image.Resolve(img, false)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("injected failure")
	for _, stage := range []string{backup.StageSnapshot, backup.StageTable, backup.StageMap, backup.StageMount, backup.StageArchive, backup.StagePublish} {
		t.Run(stage, func(t *testing.T) {
			e := newEnv(t)
			j, _ := cleanup.Start(e.state, "run-"+stage)
			o := e.options("run-"+stage, j)
			calls := 0
			o.Inject = func(s string) error {
				if s != stage {
					return nil
				}
				// Fail on the second partition when there is one, so the
				// first one's archive exists and must be removed.
				calls++
				if (s == backup.StageMap || s == backup.StageMount || s == backup.StageArchive) && calls < 2 {
					return nil
				}
				return boom
			}
			_, err := backup.Volume(context.Background(), v, o)
			if !errors.Is(err, boom) {
				t.Fatalf("Volume = %v, want the injected failure", err)
			}
			if err := j.Finish(); err != nil {
				t.Errorf("journal after failure: %v", err)
			}
			objs, err := e.store.List(context.Background(), "")
			if err != nil || len(objs) != 0 {
				t.Errorf("store holds %v (err %v) after a failed backup, want nothing", objs, err)
			}
			if entries, _ := os.ReadDir(filepath.Join(e.runtime, "run-"+stage)); len(entries) > 0 {
				t.Errorf("runtime directory not emptied: %v", entries)
			}
		})
	}
}

// Cancelling (what SIGINT/SIGTERM do) mid-archive releases everything.
func TestCancelMidArchive(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, e.dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 300, Fill: fillRoot}}})
	v, _ := image.Resolve(img, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := e.options("run-cancel", nil)
	o.Inject = func(s string) error {
		if s == backup.StageArchive {
			cancel()
		}
		return nil
	}
	if _, err := backup.Volume(ctx, v, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("Volume after cancel = %v, want context.Canceled", err)
	}
	if objs, _ := e.store.List(context.Background(), ""); len(objs) != 0 {
		t.Errorf("store holds %v after a cancelled backup", objs)
	}
}

// A full destination fails with a hint and leaves no partial object.
func TestDestinationFull(t *testing.T) {
	e := newEnv(t)
	img := testutil.MakeImage(t, e.dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Fill: func(t testing.TB, root string) {
		testutil.Run(t, "dd", "if=/dev/urandom", "of="+filepath.Join(root, "random.bin"), "bs=1M", "count=8", "status=none")
	}}}})
	v, _ := image.Resolve(img, false)
	small := filepath.Join(e.dir, "small")
	os.Mkdir(small, 0o700)
	testutil.Run(t, "mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", small)
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	o := e.options("run-full", nil)
	st := local.New(small)
	o.Store = st
	_, err := backup.Volume(context.Background(), v, o)
	if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "p1") && !strings.Contains(err.Error(), "fs.tar") {
		t.Fatalf("Volume into a full store = %v, want ENOSPC naming the archive", err)
	}
	left, _ := filepath.Glob(filepath.Join(small, "*"))
	var files []string
	filepath.Walk(small, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("full store holds %v after the failure (dirs %v), want no files", files, left)
	}
}

// backupImage backs up the image at img (read in place when offline)
// with e's options, changed by adjust when it is not nil.
func (e *env) backupImage(img string, offline bool, adjust func(*backup.Options)) (*manifest.Manifest, error) {
	e.t.Helper()
	v, err := image.Resolve(img, offline)
	if err != nil {
		e.t.Fatal(err)
	}
	o := e.options(backup.NewRunID(time.Now()), nil)
	if adjust != nil {
		adjust(&o)
	}
	return backup.Volume(context.Background(), v, o)
}

// mustBackup is backupImage with e's options, failing the test on error.
func (e *env) mustBackup(img string, offline bool) *manifest.Manifest {
	e.t.Helper()
	m, err := e.backupImage(img, offline, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// restoreImage restores the backup m describes with --to-image into a new
// file and returns its path.
func (e *env) restoreImage(m *manifest.Manifest) string {
	e.t.Helper()
	b, err := catalog.Resolve(context.Background(), e.store, "testhost", m.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	out := filepath.Join(e.t.TempDir(), "restored.img")
	if res, err := restore.ToImage(context.Background(), e.store, b, out, restore.Options{MountDir: e.t.TempDir()}); err != nil {
		e.t.Fatalf("restore --to-image: %v\n%+v", err, res)
	}
	return out
}
