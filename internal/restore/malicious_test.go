package restore_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/catalog"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/codec"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/store/local"
)

var t0 = time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC)

// storeTar puts a hand-made tar stream into a new store as a one-filesystem
// backup and returns it.
func storeTar(t *testing.T, data []byte) (*local.Store, *catalog.Backup) {
	t.Helper()
	st := local.New(t.TempDir())
	f := catalogtest.Folder{Host: "h", Group: "vg", Volume: "v", Time: t0, Archives: []catalogtest.Archive{{
		FS: manifest.Filesystem{Type: "ext4"}, Data: catalogtest.Compress(t, data, codec.Zstd),
	}}}
	catalogtest.Write(t, st, f)
	return st, catalogtest.Resolve(t, st, f)
}

// snapshot lists every path under dir with its content, to prove nothing
// changed there.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		line := strings.TrimPrefix(p, dir) + " " + d.Type().String()
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		}
		out = append(out, line)
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestMaliciousArchiveStaysInside(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	target := filepath.Join(base, "target")
	if err := os.MkdirAll(filepath.Join(outside, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "etc", "shadow"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, outside)

	F, D, S, L := catalogtest.File, catalogtest.Dir, catalogtest.Symlink, catalogtest.Link
	data := catalogtest.Tar(t,
		D("./", 0o755),
		F("./ok.txt", 0o644, "fine"),
		F("../evil", 0o644, "x"),
		F("./a/../../evil2", 0o644, "x"),
		F("/abs/evil", 0o644, "x"),
		F("/"+outside+"/etc/evil3", 0o644, "x"),
		S("./link", outside),
		F("./link/evil", 0o644, "x"),
		D("./link/evildir", 0o755),
		S("./up", ".."),
		F("./up/outside/evil4", 0o644, "x"),
		S("./inner", "sub"),
		D("./sub", 0o755),
		F("./inner/file", 0o644, "x"),
		L("./hl", "../../etc/shadow"),
		L("./hl-abs", filepath.Join(outside, "etc/shadow")),
		L("./hl-through", "link/etc/shadow"),
		// A later entry of the same name replaces a symlink instead of
		// writing through it.
		S("./victim", filepath.Join(outside, "etc/shadow")),
		F("./victim", 0o600, "replaced"),
		S("./victimdir", filepath.Join(outside, "etc")),
		D("./victimdir", 0o755),
		F("./victimdir/new", 0o644, "inside"),
		// A hard link to a symlink links the symlink, not its target.
		S("./tolink", filepath.Join(outside, "etc/shadow")),
		L("./hl-to-symlink", "./tolink"),
	)
	st, b := storeTar(t, data)
	res, err := restore.ToDir(context.Background(), st, b, target, restore.Options{})
	if !errors.Is(err, restore.ErrSkippedEntries) {
		t.Fatalf("err = %v, want ErrSkippedEntries", err)
	}
	if after := snapshot(t, outside); after != before {
		t.Errorf("outside changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Lstat(filepath.Join(base, "evil")); err == nil {
		t.Error("../evil created")
	}
	if _, err := os.Lstat("/abs"); err == nil {
		t.Error("/abs created")
	}
	fr := res.Filesystems[0]
	refused := map[string]string{}
	for _, r := range fr.Refused {
		refused[r.Name] = r.Reason
	}
	for _, name := range []string{"../evil", "./a/../../evil2", "/abs/evil", "/" + outside + "/etc/evil3", "./link/evil",
		"./link/evildir", "./up/outside/evil4", "./inner/file", "./hl", "./hl-abs", "./hl-through"} {
		if _, ok := refused[name]; !ok {
			t.Errorf("%s not refused", name)
		}
	}
	if len(fr.Refused) != 11 || fr.RefusedCount != 11 {
		t.Errorf("refused %d (%d listed), want 11: %v", fr.RefusedCount, len(fr.Refused), fr.Refused)
	}
	if fr.FailedCount != 0 {
		t.Errorf("failed: %v", fr.Failed)
	}
	if !strings.Contains(refused["./inner/file"], "symlink") || !strings.Contains(refused["../evil"], "..") ||
		!strings.Contains(refused["/abs/evil"], "absolute") {
		t.Errorf("reasons: %v", refused)
	}
	for name, want := range map[string]string{"ok.txt": "fine", "victim": "replaced", "victimdir/new": "inside"} {
		got, err := os.ReadFile(filepath.Join(target, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if fi, err := os.Lstat(filepath.Join(target, "hl-to-symlink")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("hl-to-symlink: %v %v", fi, err)
	}
	if !fr.Verified {
		t.Error("archive not verified")
	}
	var text strings.Builder
	if err := restore.WriteText(&text, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"restored vg/v/2026-11-25T013000Z to " + target, "fs -> " + target + ": 3 files",
		"fs: refused ../evil: path contains \"..\"", "sha256 verified"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
}

func TestRefusesNonEmptyTarget(t *testing.T) {
	st, b := storeTar(t, catalogtest.Tar(t, catalogtest.File("./a", 0o644, "a")))
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, "precious"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.ToDir(context.Background(), st, b, target, restore.Options{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("err = %v, want not empty", err)
	}
	if _, err := os.Stat(filepath.Join(target, "a")); err == nil {
		t.Error("wrote into a non-empty target")
	}
	if _, err := restore.ToDir(context.Background(), st, b, target, restore.Options{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(target, "a")); string(got) != "a" {
		t.Errorf("a = %q", got)
	}
}

// Paths longer than PATH_MAX are created one directory at a time, and a
// PAX global header (git archive writes one) is no entry to restore.
func TestLongPathsAndGlobalHeader(t *testing.T) {
	deep := "."
	for len(deep) < 5000 {
		deep += "/" + strings.Repeat("x", 200)
	}
	global := catalogtest.Entry{Header: tar.Header{Typeflag: tar.TypeXGlobalHeader,
		PAXRecords: map[string]string{"comment": "made by hand"}}}
	st, b := storeTar(t, catalogtest.Tar(t, global, catalogtest.Dir("./", 0o755), catalogtest.File(deep+"/leaf", 0o600, "deep")))
	target := t.TempDir()
	res, err := restore.ToDir(context.Background(), st, b, target, restore.Options{})
	if err != nil {
		t.Fatalf("%v\n%+v", err, res)
	}
	// Read it back relative to each directory, as PATH_MAX applies.
	dir, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimPrefix(deep, "./"), "/")
	for _, p := range parts {
		fd, err := unix.Openat(int(dir.Fd()), p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		dir.Close()
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		dir = os.NewFile(uintptr(fd), p)
	}
	fd, err := unix.Openat(int(dir.Fd()), "leaf", unix.O_RDONLY, 0)
	dir.Close()
	if err != nil {
		t.Fatal(err)
	}
	leaf := os.NewFile(uintptr(fd), "leaf")
	defer leaf.Close()
	got, _ := io.ReadAll(leaf)
	if string(got) != "deep" {
		t.Errorf("leaf = %q", got)
	}
	fr := res.Filesystems[0]
	if fr.Files != 1 || fr.FailedCount != 0 || len(fr.Warnings) != 1 || !strings.Contains(fr.Warnings[0], "created directories the archive lacks") {
		t.Errorf("result: %+v", fr)
	}
}
