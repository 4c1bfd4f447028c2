package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"voltar/internal/codec"
	"voltar/internal/config"
	"voltar/internal/crypt"
	"voltar/internal/index"
	"voltar/internal/mountfs"
	"voltar/internal/store"
	"voltar/internal/testutil"
)

// browseTree is what TestBrowse backs up: files at the start of the
// archive, one spanning several frames, files after it, a sparse file,
// hard links (one whose first name is not selected), a symlink, a name
// that is not UTF-8 and extended attributes.
func browseTree(t testing.TB, root string) {
	big := make([]byte, 20<<20) // incompressible: ~3 frames of 8 MiB
	rand.NewChaCha8([32]byte{9}).Read(big)
	files := map[string][]byte{
		"a-first/motd":        []byte("welcome\n"),
		"data/big.bin":        big,
		"data/z-after":        []byte("after the big file\n"),
		"data/caf\xe9.txt":    []byte("latin-1 name\n"),
		"etc/ssh/sshd_config": []byte("Port 22\n"),
		"etc/hosts":           []byte("127.0.0.1 localhost\n"),
	}
	for p, b := range files {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(filepath.Join(root, "etc/hosts"), 1234, 5678)
	if err := os.Link(filepath.Join(root, "a-first/motd"), filepath.Join(root, "etc/motd-link")); err != nil {
		t.Fatal(err)
	}
	os.Symlink("../a-first/motd", filepath.Join(root, "etc/motd-sym"))
	f, _ := os.Create(filepath.Join(root, "data/sparse"))
	f.WriteAt([]byte("middle"), 6<<20)
	f.Truncate(12 << 20)
	f.Close()
	if err := unix.Setxattr(filepath.Join(root, "etc/hosts"), "user.voltar", []byte("xattr value"), 0); err != nil {
		t.Fatal(err)
	}
}

// TestBrowse backs an image up and reads it back file by file: ls, find,
// cat, diff, restore --path and the FUSE mount, from a local store, an
// encrypted one and a real S3 server (versitygw). A flipped byte in one
// frame makes exactly the reads of that frame fail.
func TestBrowse(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "age-keygen", "getfattr", "fusermount3")
	for _, kind := range []string{"local", "encrypted", "s3"} {
		t.Run(kind, func(t *testing.T) { testBrowse(t, kind) })
	}
}

func testBrowse(t *testing.T, kind string) {
	dir := t.TempDir()
	img := testutil.MakeImage(t, dir, testutil.Image{Table: "gpt", Parts: []testutil.Part{
		{FS: "ext4", SizeMiB: 96, Label: "root", Fill: browseTree},
	}})
	src := testutil.MountRO(t, img, 1<<20, 96<<20)
	storeCfg := "store: " + filepath.Join(dir, "store")
	os.Mkdir(filepath.Join(dir, "store"), 0o700)
	if kind == "s3" {
		srv := testutil.S3(t)
		bucket := srv.Bucket(t)
		os.WriteFile(filepath.Join(dir, "s3-access"), []byte(srv.AccessKey+"\n"), 0o600)
		os.WriteFile(filepath.Join(dir, "s3-secret"), []byte(srv.SecretKey+"\n"), 0o600)
		storeCfg = fmt.Sprintf("store:\n  path: s3://%s/site\n  endpoint: http://%s\n  access_key_file: %s/s3-access\n  secret_key_file: %s/s3-secret\n",
			bucket, srv.Endpoint, dir, dir)
	}
	enc := ""
	if kind == "encrypted" {
		key := filepath.Join(dir, "key.txt")
		testutil.Run(t, "age-keygen", "-o", key)
		pub := strings.TrimSpace(testutil.Run(t, "age-keygen", "-y", key))
		enc = fmt.Sprintf("encryption:\n  recipients: [%s]\n  identity_file: %s\n", pub, key)
	}
	cfg := filepath.Join(dir, "voltar.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("%s\nhost: h1\nruntime_dir: %s/run\nstate_dir: %s/state\nthreads: 2\n%s", storeCfg, dir, dir, enc)), 0o600)
	voltar := func(want int, args ...string) (string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"--config", cfg, "--log-level", "warn"}, args...), &stdout, &stderr); code != want {
			t.Fatalf("voltar %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, &stdout, &stderr)
		}
		return stdout.String(), stderr.String()
	}
	voltar(0, "backup", img)
	id := "image/" + filepath.Base(img) + "/latest"

	// ls -R --json lists what find(1) finds, with the same metadata.
	out, _ := voltar(0, "ls", "-R", "--json", id)
	var listed []struct {
		Path  string    `json:"path"`
		B64   []byte    `json:"path_b64"`
		Type  string    `json:"type"`
		Size  int64     `json:"size"`
		Mode  string    `json:"mode"`
		UID   int       `json:"uid"`
		Mtime time.Time `json:"mtime"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range listed {
		if e.B64 != nil {
			e.Path = string(e.B64)
		}
		got[e.Path] = true
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(src, e.Path), &st); err != nil {
			t.Errorf("ls lists %q, the source has no such entry", e.Path)
			continue
		}
		if e.UID != int(st.Uid) || !e.Mtime.Equal(time.Unix(st.Mtim.Unix())) || st.Mode&unix.S_IFMT == unix.S_IFREG && e.Size != st.Size {
			t.Errorf("%q: ls says uid %d mtime %v size %d; source uid %d mtime %v size %d", e.Path, e.UID, e.Mtime, e.Size, st.Uid, time.Unix(st.Mtim.Unix()), st.Size)
		}
	}
	filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		rel, _ := filepath.Rel(src, p)
		if rel != "." && rel != "lost+found" && !strings.HasPrefix(rel, "lost+found/") && !got[rel] {
			t.Errorf("source has %q, ls -R does not list it", rel)
		}
		return nil
	})
	if out, _ := voltar(0, "ls", "-l", id, "etc"); !strings.Contains(out, "motd-sym -> ../a-first/motd") || !strings.Contains(out, "1234") {
		t.Errorf("ls -l etc:\n%s", out)
	}

	// cat: every file, byte for byte.
	for _, p := range []string{"a-first/motd", "data/big.bin", "data/z-after", "data/caf\xe9.txt", "data/sparse", "etc/motd-link", "etc/hosts"} {
		out, _ := voltar(0, "cat", id, p)
		want, _ := os.ReadFile(filepath.Join(src, p))
		if out != string(want) {
			t.Errorf("cat %q: %d bytes differ from the source's %d", p, len(out), len(want))
		}
	}
	voltar(2, "cat", id, "etc")
	voltar(1, "cat", id, "no/such/file")

	// find, in one backup and in every backup of the volume.
	if out, _ := voltar(0, "find", id, "*.bin"); !strings.Contains(out, "data/big.bin  20971520") {
		t.Errorf("find *.bin:\n%s", out)
	}
	if out, _ := voltar(0, "find", "image/"+filepath.Base(img), "etc/ssh/*"); !strings.Contains(out, "etc/ssh/sshd_config") {
		t.Errorf("find etc/ssh/*:\n%s", out)
	}

	// restore --path: a subtree and a hard link whose first name is not
	// selected, with their metadata.
	target := filepath.Join(dir, "out")
	voltar(0, "restore", id, "--path", "etc", "--to", target)
	testutil.CompareTrees(t, filepath.Join(src, "etc"), filepath.Join(target, "etc"), nil)
	if _, err := os.Stat(filepath.Join(target, "data")); err == nil {
		t.Error("restore --path etc restored data too")
	}
	if v, err := getxattr(filepath.Join(target, "etc/hosts"), "user.voltar"); err != nil || v != "xattr value" {
		t.Errorf("restored etc/hosts xattr %q, %v", v, err)
	}
	target2 := filepath.Join(dir, "out2")
	voltar(0, "restore", id, "--path", "data/big.bin", "--path", "/data/sparse", "--to", target2)
	for _, p := range []string{"data/big.bin", "data/sparse"} {
		testutil.Run(t, "cmp", filepath.Join(src, p), filepath.Join(target2, p))
	}
	voltar(2, "restore", id, "--path", "nothing/*", "--to", filepath.Join(dir, "out3"))

	// The FUSE mount serves the same tree.
	st := openTestStore(t, cfg)
	var ids *crypt.Identities
	if kind == "encrypted" {
		var err error
		if ids, err = crypt.LoadIdentities(filepath.Join(dir, "key.txt")); err != nil {
			t.Fatal(err)
		}
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	srv, err := mountfs.Mount(context.Background(), st, mnt, mountfs.Options{Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	backups, _ := filepath.Glob(filepath.Join(mnt, "h1/image", filepath.Base(img), "*"))
	if len(backups) != 1 {
		srv.Unmount()
		t.Fatalf("mount shows backups %v", backups)
	}
	testutil.CompareTrees(t, src, filepath.Join(backups[0], "p1"), func(rel string) bool { return rel == "lost+found" })
	if v := testutil.Run(t, "getfattr", "--absolute-names", "--only-values", "-n", "user.voltar", filepath.Join(backups[0], "p1/etc/hosts")); v != "xattr value" {
		t.Errorf("getfattr on the mount: %q", v)
	}
	ls := testutil.Run(t, "ls", "-lR", backups[0])
	if !strings.Contains(ls, "motd-sym -> ../a-first/motd") {
		t.Errorf("ls -lR of the mount:\n%s", ls)
	}
	if err := srv.Unmount(); err != nil {
		t.Fatal(err)
	}

	if kind != "local" {
		return
	}
	// One flipped byte in the frame holding the middle of big.bin: reads
	// of that frame fail, reads of other frames still work.
	folder, _ := filepath.Glob(filepath.Join(dir, "store/h1/image", filepath.Base(img), "2*"))
	ix := readIndexFile(t, filepath.Join(folder[0], "p1.index.zst"))
	big, _ := ix.Lookup("data/big.bin")
	after, _ := ix.Lookup("data/z-after")
	k := ix.FrameAt(big.Offset + 10<<20)
	if k < 0 || ix.FrameAt(after.Offset) == k || ix.FrameAt(0) == k {
		t.Fatalf("frames: big.bin's middle in %d, z-after in %d", k, ix.FrameAt(after.Offset))
	}
	fr := ix.Frames[k]
	arch := filepath.Join(folder[0], "p1.tar.zst")
	f, _ := os.OpenFile(arch, os.O_RDWR, 0)
	b := []byte{0}
	f.ReadAt(b, fr.COff+fr.CSize/2)
	b[0] ^= 0x40
	f.WriteAt(b, fr.COff+fr.CSize/2)
	f.Close()
	if _, errs := voltar(1, "cat", id, "data/big.bin"); !strings.Contains(errs, "does not hash") {
		t.Errorf("cat of the damaged file:\n%s", errs)
	}
	if out, _ := voltar(0, "cat", id, "data/z-after"); out != "after the big file\n" {
		t.Errorf("cat of a file in an intact frame: %q", out)
	}
	voltar(1, "restore", id, "--path", "data/big.bin", "--to", filepath.Join(dir, "out4"))
	// The mount reads the same frames: EIO for the damaged one only.
	srv, err = mountfs.Mount(context.Background(), st, mnt, mountfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, berr := os.ReadFile(filepath.Join(backups[0], "p1/data/big.bin"))
	after2, aerr := os.ReadFile(filepath.Join(backups[0], "p1/data/z-after"))
	if err := srv.Unmount(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(berr, syscall.EIO) {
		t.Errorf("read of the damaged file through the mount: %v, want EIO", berr)
	}
	if aerr != nil || string(after2) != "after the big file\n" {
		t.Errorf("read of an intact file through the mount: %q, %v", after2, aerr)
	}
	if out, _ := voltar(1, "verify", id); !strings.Contains(out, fmt.Sprintf("frame %d", k)) {
		t.Errorf("verify of the damaged archive does not name frame %d:\n%s", k, out)
	}
}

func getxattr(path, name string) (string, error) {
	b := make([]byte, 4096)
	n, err := unix.Lgetxattr(path, name, b)
	if err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

func readIndexFile(t *testing.T, path string) *index.Index {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := codec.NewReader(f, codec.Zstd)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := index.Read(r)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// openTestStore opens the store a config names, as the commands do.
func openTestStore(t *testing.T, cfgPath string) store.Store {
	t.Helper()
	cfg, err := config.Load(cfgPath, true)
	if err != nil {
		t.Fatal(err)
	}
	a := &app{cfg: cfg, stdout: io.Discard, stderr: io.Discard}
	st, err := a.openStore(context.Background(), cfg.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
