package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"voltar/internal/cleanup"
	"voltar/internal/testutil"
)

// voltar backs up to a real S3 server (versitygw) and everything else works
// from there: list, verify, restore, run and prune; a dead run's unfinished
// upload is aborted; and the bucket holds exactly the documented layout,
// which any S3 client plus sha256sum restores.
func TestS3EndToEnd(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "sha256sum", "zstd", "tar")
	srv := testutil.S3(t)
	bucket := srv.Bucket(t)
	cli := srv.Client(t)
	core := minio.Core{Client: cli}
	ctx := context.Background()
	dir := t.TempDir()

	big := make([]byte, 12<<20) // incompressible: its archive needs 3 parts of 5 MiB
	rng := rand.NewChaCha8([32]byte{7})
	rng.Read(big)
	img := testutil.MakeImage(t, dir, testutil.Image{Table: "gpt", Parts: []testutil.Part{
		{FS: "ext4", SizeMiB: 64, Label: "root", Fill: func(t testing.TB, root string) {
			os.MkdirAll(filepath.Join(root, "etc/voltar"), 0o755)
			os.WriteFile(filepath.Join(root, "etc/motd"), []byte("welcome to guest1\n"), 0o644)
			os.WriteFile(filepath.Join(root, "etc/voltar/secret"), []byte("0600 content\n"), 0o600)
			os.Symlink("../etc/motd", filepath.Join(root, "etc/voltar/motd"))
		}},
		{FS: "ext4", SizeMiB: 32, Label: "data", Fill: func(t testing.TB, root string) {
			if err := os.WriteFile(filepath.Join(root, "random.bin"), big, 0o640); err != nil {
				t.Fatal(err)
			}
		}},
	}})

	// Keys from files, as the README recommends.
	os.WriteFile(filepath.Join(dir, "s3-access"), []byte(srv.AccessKey+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "s3-secret"), []byte(srv.SecretKey+"\n"), 0o600)
	storeURL := "s3://" + bucket + "/site1"
	cfg := filepath.Join(dir, "voltar.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`store:
  path: %[1]s
  endpoint: http://%[2]s
  access_key_file: %[3]s/s3-access
  secret_key_file: %[3]s/s3-secret
  part_size: 5M
host: h1
runtime_dir: %[3]s/run
state_dir: %[3]s/state
images: [{path: %[4]s}]
retention: {keep_last: 1}
`, storeURL, srv.Endpoint, dir, img)), 0o600)
	voltar := func(want int, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"--config", cfg, "--log-level", "warn"}, args...), &stdout, &stderr); code != want {
			t.Fatalf("voltar %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, &stdout, &stderr)
		}
		return stdout.String()
	}

	// A run killed while uploading left a journal, an archive of a backup
	// without manifest, and an unfinished multipart upload: invisible in
	// listings, but stored and billed.
	dead := "h1/image/disk.img/2026-01-01T000000Z/"
	if _, err := cli.PutObject(ctx, bucket, "site1/"+dead+"p1.tar.zst", strings.NewReader("half"), 4, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	id, err := core.NewMultipartUpload(ctx, bucket, "site1/"+dead+"p2.tar.zst", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte("x"), 5<<20)
	if _, err := core.PutObjectPart(ctx, bucket, "site1/"+dead+"p2.tar.zst", id, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
		t.Fatal(err)
	}
	j, err := cleanup.Start(filepath.Join(dir, "state"), "dead1")
	if err != nil {
		t.Fatal(err)
	}
	j.Add(cleanup.Partial, storeURL+"\t"+dead)

	out := voltar(0, "backup", "--to", storeURL, img)
	m := regexp.MustCompile(`image/disk\.img/(\d{4}-\d\d-\d\dT\d{6}Z)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("backup printed no backup ID:\n%s", out)
	}
	ts := m[1]
	folder := "site1/h1/image/disk.img/" + ts + "/"
	// outside.runs.zst: the MBR, the only bytes outside the partitions;
	// pN.index.zst: the file index of each archive.
	want := []string{folder + "SHA256SUMS", folder + "manifest.json", folder + "manifest.json.sha256", folder + "outside.runs.zst", folder + "p1.index.zst", folder + "p1.tar.zst", folder + "p2.index.zst", folder + "p2.tar.zst"}
	if got := bucketKeys(t, cli, bucket); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("bucket holds\n%s\nwant exactly\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if u := bucketUploads(t, cli, bucket); len(u) != 0 {
		t.Errorf("unfinished uploads after the backup's sweep: %v", u)
	}
	if _, err := os.Stat(filepath.Join(dir, "state/runs/dead1.journal")); err == nil {
		t.Error("the dead run's journal is still there")
	}

	out = voltar(0, "list")
	if !strings.Contains(out, "image/disk.img/"+ts) || strings.Contains(out, "INCOMPLETE") {
		t.Errorf("list:\n%s", out)
	}
	out = voltar(0, "verify")
	if !strings.Contains(out, "verified 1 backups: 1 ok, 0 failed") {
		t.Errorf("verify:\n%s", out)
	}
	restored := filepath.Join(dir, "restored")
	voltar(0, "restore", "image/disk.img/latest", "--to", restored)
	for i, area := range [][2]int64{{1 << 20, 64 << 20}, {65 << 20, 32 << 20}} {
		src := testutil.MountRO(t, img, area[0], area[1])
		testutil.CompareTrees(t, src, filepath.Join(restored, fmt.Sprintf("p%d", i+1)), func(rel string) bool { return rel == "lost+found" })
	}

	// By hand, with any S3 client: fetch the folder, check, extract.
	byHand := filepath.Join(dir, "by-hand")
	for _, k := range want {
		if err := cli.FGetObject(ctx, bucket, k, filepath.Join(byHand, filepath.Base(k)), minio.GetObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Run(t, "sh", "-c", "cd "+byHand+" && sha256sum --quiet -c SHA256SUMS && mkdir p2 && zstd -dc p2.tar.zst | tar -x -C p2")
	if got, err := os.ReadFile(filepath.Join(byHand, "p2/random.bin")); err != nil || !bytes.Equal(got, big) {
		t.Errorf("random.bin extracted by hand: %d bytes, %v; want the original %d", len(got), err, len(big))
	}

	// The nightly job: a new backup (in a new second), then keep_last 1
	// prunes the first. An object store reports no free space.
	for time.Now().UTC().Format("2006-01-02T150405Z") <= ts {
		time.Sleep(100 * time.Millisecond)
	}
	out = voltar(0, "run")
	if !strings.Contains(out, "Destination   unknown") || !strings.Contains(out, storeURL) {
		t.Errorf("run report:\n%s", out)
	}
	keys := bucketKeys(t, cli, bucket)
	if len(keys) != len(want) || strings.HasPrefix(keys[0], folder) {
		t.Errorf("after run with keep_last 1 the bucket holds %v, want only the new backup's %d objects", keys, len(want))
	}
	out = voltar(0, "prune", "--dry-run")
	if !strings.Contains(out, "1 kept, would remove 0") {
		t.Errorf("prune --dry-run after run wants to remove:\n%s", out)
	}
}

func bucketKeys(t *testing.T, c *minio.Client, bucket string) []string {
	t.Helper()
	var keys []string
	for o := range c.ListObjectsIter(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

func bucketUploads(t *testing.T, c *minio.Client, bucket string) []string {
	t.Helper()
	var out []string
	for u := range c.ListIncompleteUploads(context.Background(), bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		out = append(out, u.Key)
	}
	return out
}

// What goes wrong with an S3 store is said plainly, with a hint, and is a
// usage error (exit 2): missing settings, keys, bucket.
func TestS3StoreErrors(t *testing.T) {
	srv := testutil.S3(t)
	bucket := srv.Bucket(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "s3-access"), []byte(srv.AccessKey), 0o644)
	os.WriteFile(filepath.Join(dir, "s3-secret"), []byte("not-the-secret"), 0o600)
	write := func(name, store string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(fmt.Sprintf("%s\nruntime_dir: %s/run\nstate_dir: %s/state\n", store, dir, dir)), 0o600)
		return p
	}
	empty := write("empty.yaml", "")
	wrongKey := write("wrong-key.yaml", fmt.Sprintf("store:\n  path: s3://%s/p\n  endpoint: %s\n  tls: false\n  access_key_file: %s/s3-access\n  secret_key_file: %s/s3-secret", bucket, srv.Endpoint, dir, dir))
	noBucket := write("no-bucket.yaml", fmt.Sprintf("store:\n  path: s3://%s-gone/p\n  endpoint: http://%s", bucket, srv.Endpoint))
	mount := write("mount.yaml", fmt.Sprintf("store:\n  path: s3://%s/p\n  endpoint: https://s3.example.org\n  require_mount: /srv", bucket))
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--config", empty, "backup", "--to", "s3://" + bucket + "/p", "disk.img"},
			[]string{"voltar: store s3://" + bucket + "/p: store.endpoint is not set", "hint: an s3:// store takes its S3 settings"}},
		{[]string{"--config", wrongKey, "list"},
			[]string{"voltar: store s3://" + bucket + "/p: " + srv.Endpoint + " rejected the keys", "hint: check the keys", "readable by others"}},
		{[]string{"--config", noBucket, "verify"},
			[]string{"voltar: store s3://" + bucket + "-gone/p: bucket \"" + bucket + "-gone\" does not exist", "hint: create the bucket"}},
		{[]string{"--config", mount, "list"},
			[]string{"store.require_mount makes no sense for an s3:// store", "hint: remove require_mount"}},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != 2 {
			t.Errorf("voltar %s: exit %d, want 2\n%s", strings.Join(tc.args, " "), code, &stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("voltar %s: stderr lacks %q:\n%s", strings.Join(tc.args, " "), w, &stderr)
			}
		}
		if strings.Contains(stderr.String(), "not-the-secret") || strings.Contains(stderr.String(), srv.SecretKey) {
			t.Errorf("voltar %s: stderr shows a secret:\n%s", strings.Join(tc.args, " "), &stderr)
		}
	}
}
