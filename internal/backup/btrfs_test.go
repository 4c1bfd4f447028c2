package backup_test

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"voltar/internal/backup"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/testutil"
)

// tarList lists the entries of a stored archive with zstd and GNU tar.
func (e *env) tarList(m *manifest.Manifest, fs manifest.Filesystem) []string {
	e.t.Helper()
	out := testutil.Run(e.t, "sh", "-c", "zstd -dc '"+filepath.Join(e.store.Root(), "testhost", m.ID, fs.Archive)+"' | tar -t")
	return strings.Fields(out)
}

func TestBtrfsSubvolumes(t *testing.T) {
	testutil.RequireTools(t, "mkfs.btrfs", "btrfs")
	if !testutil.KernelHas("btrfs") {
		testutil.Unavailable(t, "the kernel has no btrfs")
	}
	e := newEnv(t)
	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "none", Parts: []testutil.Part{
		{FS: "btrfs", SizeMiB: 128, Fill: testutil.FillBtrfsLayout},
	}})

	m, err := e.backupImage(img, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := m.Filesystems[0]
	if m.Schema != 3 {
		t.Errorf("schema %d, want 3 (subvolumes)", m.Schema)
	}
	names := e.tarList(m, fs)
	for _, want := range []string{
		"./top.txt", "./@/", "./@/etc/hostname", "./@/etc-file", "./@/nested/", "./@/nested/data.txt",
		"./@home/", "./@home/alice/notes.txt", "./@home/alice/notes-link.txt", "./@home/alice/after-snap.txt", "./@home-snap/",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("archive lacks %s; it has %v", want, names)
		}
	}
	for _, n := range names {
		if strings.HasPrefix(n, "./@home-snap/") && n != "./@home-snap/" {
			t.Errorf("archive holds %s of the read-only snapshot, skipped by default", n)
		}
	}
	type sv struct {
		path                       string
		def, ro, skipped, hasUUIDs bool
	}
	var got []sv
	for _, s := range fs.Subvolumes {
		got = append(got, sv{s.Path, s.Default, s.ReadOnly, s.Skipped, s.UUID != "" && (s.ParentUUID != "") == (s.Path == "@home-snap")})
		if s.Skipped && s.Reason == "" {
			t.Errorf("%s skipped without a reason", s.Path)
		}
	}
	want := []sv{{"@", true, false, false, true}, {"@home", false, false, false, true}, {"@home-snap", false, true, true, true}, {"@/nested", false, false, false, true}}
	if !slices.Equal(got, want) {
		t.Errorf("subvolumes\n got %+v\nwant %+v", got, want)
	}
	if len(fs.NotEntered) != 1 || fs.NotEntered[0].Path != "@home-snap" {
		t.Errorf("not_entered %+v, want @home-snap", fs.NotEntered)
	}
	if c := fs.Check; c == nil || c.Method != manifest.CheckSubvolumes || c.Counted != 4 || c.Holds != 4 {
		t.Errorf("check %+v, want 4 of 4 subvolumes", fs.Check)
	}

	// btrfs_snapshots: include archives the snapshot's contents too.
	m, err = e.backupImage(img, false, func(o *backup.Options) { o.BtrfsSnapshots = true })
	if err != nil {
		t.Fatal(err)
	}
	names = e.tarList(m, m.Filesystems[0])
	if !slices.Contains(names, "./@home-snap/alice/notes.txt") || slices.Contains(names, "./@home-snap/alice/after-snap.txt") {
		t.Errorf("with snapshots included, the archive holds %v", names)
	}
	if len(m.Filesystems[0].NotEntered) != 0 || m.Filesystems[0].SkippedSubvolumes() != 0 {
		t.Errorf("with snapshots included: not_entered %+v, subvolumes %+v", m.Filesystems[0].NotEntered, m.Filesystems[0].Subvolumes)
	}
}

// fillNet holds what the completeness check must account for: hard links
// (one name excluded), excluded files and directories, lost+found, a
// socket (skipped), a fifo, a symlink.
func fillNet(t testing.TB, root string) {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "a/b"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "cache/deep/er"), 0o755))
	for _, f := range []string{"a/one", "a/b/two", "cache/deep/er/x", "cache/y", "a/skip.tmp"} {
		must(os.WriteFile(filepath.Join(root, f), []byte(f), 0o644))
	}
	must(os.Link(filepath.Join(root, "a/one"), filepath.Join(root, "a/b/one-link")))
	must(os.Link(filepath.Join(root, "a/one"), filepath.Join(root, "a/one-link.tmp")))
	must(os.Link(filepath.Join(root, "cache/y"), filepath.Join(root, "a/y-link")))
	must(os.Symlink("one", filepath.Join(root, "a/sym")))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(root, "a/sock"), Net: "unix"})
	must(err)
	l.SetUnlinkOnClose(false)
	l.Close()
}

// The net under every archive: a backup whose walk silently missed
// entries fails instead of being called complete.
func TestCompletenessCheck(t *testing.T) {
	testutil.RequireTools(t, "mkfs.btrfs", "btrfs")
	for _, tc := range []struct {
		fs   string
		fill func(testing.TB, string)
		drop string // an entry to leave out silently
	}{
		{"ext4", fillNet, "a/b/two"},
		{"xfs", fillNet, "a/b/two"},
		{"btrfs", testutil.FillBtrfsLayout, "@home"},
		{"btrfs", testutil.FillBtrfsLayout, "@/nested"},
	} {
		t.Run(tc.fs+"-"+tc.drop, func(t *testing.T) {
			if !testutil.KernelHas(tc.fs) {
				testutil.Unavailable(t, "the kernel has no %s", tc.fs)
			}
			e := newEnv(t)
			img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "mbr", Parts: []testutil.Part{
				{FS: tc.fs, SizeMiB: 300, Fill: tc.fill},
			}})
			m, err := e.backupImage(img, false, func(o *backup.Options) { o.Excludes = []string{"*.tmp", "cache/"} })
			if err != nil {
				t.Fatalf("complete backup failed: %v", err)
			}
			c := m.Filesystems[0].Check
			if c == nil || c.Counted != c.Holds {
				t.Errorf("check %+v: want counted == holds, exactly", c)
			}
			t.Logf("%s: %+v", tc.fs, *c)

			_, err = e.backupImage(img, false, func(o *backup.Options) {
				o.Excludes = []string{"*.tmp", "cache/"}
				o.Drop = func(rel string) bool { return rel == tc.drop }
			})
			if err == nil || !strings.Contains(err.Error(), "but the filesystem holds") {
				t.Fatalf("backup that dropped %s: err %v, want the completeness check to fail it", tc.drop, err)
			}
			t.Logf("%v", err)
			// Only the first backup is in the store.
			out := testutil.Run(t, "find", e.store.Root(), "-name", layout.Manifest)
			if n := strings.Count(out, layout.Manifest); n != 1 {
				t.Errorf("%d manifests in the store, want 1:\n%s", n, out)
			}
		})
	}
}
