package backup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/backup"
	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/restore"
	"voltar/internal/testutil"
	"voltar/internal/verify"
	"voltar/internal/volume/image"
)

// ageKey makes an identity file with the real age-keygen and returns its
// path and public key.
func ageKey(t *testing.T, dir, name string) (path, recipient string) {
	t.Helper()
	path = filepath.Join(dir, name)
	testutil.Run(t, "age-keygen", "-o", path)
	return path, strings.TrimSpace(testutil.Run(t, "age-keygen", "-y", path))
}

// An encrypted backup of a real ext4 partition and a raw one: stored as
// *.age, checkable with sha256sum alone, restorable by hand with the real
// age, zstd and tar, and by voltar with the right key only.
func TestBackupEncrypted(t *testing.T) {
	e := newEnv(t)
	testutil.RequireTools(t, "age", "age-keygen", "cmp")
	ctx := context.Background()
	keys := t.TempDir()
	key, pub := ageKey(t, keys, "key.txt")
	otherKey, _ := ageKey(t, keys, "other.txt")
	rcpt, err := crypt.NewRecipients([]string{pub}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := crypt.LoadIdentities(key)
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := crypt.LoadIdentities(otherKey)
	if err != nil {
		t.Fatal(err)
	}

	img := testutil.MakeImage(t, t.TempDir(), testutil.Image{Table: "mbr", Parts: []testutil.Part{
		{FS: "ext4", SizeMiB: 300, Label: "root", Fill: fillRoot},
		{FS: "", SizeMiB: 8}, // random bytes below: stored raw
	}})
	const p2Start = 301 // MiB
	testutil.Run(t, "sh", "-c", fmt.Sprintf("head -c 4M /dev/urandom | dd of=%s bs=1M seek=%d conv=notrunc status=none", img, p2Start+2))
	v, err := image.Resolve(img, false)
	if err != nil {
		t.Fatal(err)
	}
	o := e.options("run-age", nil)
	o.Recipients = rcpt
	o.Excludes = []string{"*.tmp"}
	m, err := backup.Volume(ctx, v, o)
	if err != nil {
		t.Fatal(err)
	}

	// Names, and what the manifest records.
	var names []string
	for _, f := range m.Filesystems {
		names = append(names, f.Archive)
	}
	if got := strings.Join(names, " "); got != "p1.tar.zst.age p2.raw.zst.age" {
		t.Fatalf("archives %q, want p1.tar.zst.age p2.raw.zst.age", got)
	}
	if m.Schema != 2 || m.Encryption == nil || m.Encryption.Method != "age" || len(m.Encryption.Recipients) != 1 || m.Encryption.Recipients[0] != pub {
		t.Errorf("manifest schema %d, encryption %+v; want schema 2, age to %s", m.Schema, m.Encryption, pub)
	}
	dir := filepath.Join(e.store.Root(), "testhost", m.ID)
	mj, _ := os.ReadFile(filepath.Join(dir, layout.Manifest))
	if !bytes.Contains(mj, []byte(pub)) || bytes.Contains(mj, []byte("AGE-SECRET-KEY")) {
		t.Errorf("manifest.json does not name the recipient, or holds a secret:\n%s", mj)
	}
	assertModes(t, filepath.Join(e.store.Root(), "testhost"))

	// sha256sum -c works without the key: the sums are of the stored bytes.
	out := testutil.Run(t, "sh", "-c", "cd '"+dir+"' && sha256sum -c SHA256SUMS")
	if !strings.Contains(out, "p1.tar.zst.age: OK") || !strings.Contains(out, "p2.raw.zst.age: OK") {
		t.Errorf("sha256sum -c:\n%s", out)
	}
	// The stored bytes are age, not zstd.
	for _, name := range names {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		if !bytes.HasPrefix(data, []byte("age-encryption.org/v1\n")) {
			t.Errorf("%s does not start with an age header", name)
		}
		if err := exec.Command("sh", "-c", "zstd -t -q < '"+filepath.Join(dir, name)+"'").Run(); err == nil {
			t.Errorf("%s is a valid zstd stream: not encrypted", name)
		}
		// Neither is any of the tree's text in it.
		if bytes.Contains(data, []byte("guest1")) || bytes.Contains(data, []byte("note\nnote\n")) {
			t.Errorf("%s holds plaintext", name)
		}
	}

	// By hand, with the real age: age -d | zstd -d | tar -x, and the raw
	// partition byte for byte.
	byHand := filepath.Join(t.TempDir(), "by-hand")
	os.Mkdir(byHand, 0o755)
	testutil.Run(t, "sh", "-c", fmt.Sprintf("age -d -i '%s' '%s/p1.tar.zst.age' | zstd -d -q | tar -x --xattrs --xattrs-include='*' --numeric-owner -p -C '%s'", key, dir, byHand))
	p1 := m.Table.Partitions[0]
	src := testutil.MountRO(t, img, p1.Start, p1.Size)
	skip := func(rel string) bool { return rel == "lost+found" || strings.HasSuffix(rel, ".tmp") }
	testutil.CompareTrees(t, src, byHand, skip)
	testutil.Run(t, "bash", "-c", fmt.Sprintf("age -d -i '%s' '%s/p2.raw.zst.age' | zstd -d -q | cmp - <(dd if=%s bs=1M skip=%d count=8 status=none)", key, dir, img, p2Start))
	if err := exec.Command("sh", "-c", fmt.Sprintf("age -d -i '%s' '%s/p1.tar.zst.age' > /dev/null", otherKey, dir)).Run(); err == nil {
		t.Errorf("age -d with another key succeeded")
	}

	b, err := catalog.Resolve(ctx, e.store, "testhost", m.ID)
	if err != nil {
		t.Fatal(err)
	}

	// verify with the key reads everything; without it, hashes only and
	// says so; with another key, fails naming the archive and the key.
	res := verify.Backup(ctx, e.store, b, ids)
	if !res.OK || res.ContentNotChecked() {
		t.Errorf("verify with the key: %+v", res)
	}
	for _, obj := range res.Objects {
		if !obj.Encrypted || !obj.ContentChecked || !obj.Complete {
			t.Errorf("verify with the key: object %+v", obj)
		}
	}
	if res.Objects[0].Files != m.Filesystems[0].Files || res.Objects[0].Files == 0 {
		t.Errorf("verify counted %d files, manifest says %d", res.Objects[0].Files, m.Filesystems[0].Files)
	}
	res = verify.Backup(ctx, e.store, b, nil)
	// p1 and its file index, p2 and the bytes outside the partitions (the MBR).
	if !res.OK || len(res.Notes) != 4 || !strings.Contains(res.Notes[0], "p1.tar.zst.age: content not checked") ||
		!strings.Contains(res.Notes[1], "p1.index.zst.age: content not checked") {
		t.Errorf("verify without a key: ok %v, notes %q, problems %v", res.OK, res.Notes, res.Problems)
	}
	stored := map[string]manifest.Filesystem{}
	for _, fs := range verify.Archives(m) {
		stored[fs.Archive] = fs
		if fs.Index != nil {
			stored[fs.Index.Name] = verify.IndexEntry(fs)
		}
	}
	if len(res.Objects) != len(stored) {
		t.Errorf("verify without a key read %d objects, the manifest names %d", len(res.Objects), len(stored))
	}
	for _, obj := range res.Objects {
		if want := stored[obj.Name]; obj.ContentChecked || obj.SHA256 != want.SHA256 || obj.StoredBytes != want.StoredBytes {
			t.Errorf("verify without a key: object %+v", obj)
		}
	}
	var text strings.Builder
	verify.WriteText(&text, []verify.Result{res})
	if !strings.Contains(text.String(), "content not checked") {
		t.Errorf("verify text without a key says nothing about content:\n%s", text.String())
	}
	res = verify.Backup(ctx, e.store, b, wrong)
	if res.OK || len(res.Problems) != 4 || res.Problems[1].Object != "p1.tar.zst.age" ||
		!strings.Contains(res.Problems[1].Message, "no configured identity matches") || !strings.Contains(res.Problems[1].Hint, pub) ||
		res.Problems[0].Object != "p1.index.zst.age" || !strings.Contains(res.Problems[0].Hint, pub) {
		t.Errorf("verify with another key: %+v", res.Problems)
	}

	// restore --to DIR: with the key; refused before writing anything
	// without one (usage) or with another (a failure naming the archive).
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.ToDir(ctx, e.store, b, target, restore.Options{Partition: "p1"}); !fail.IsUsage(err) || !errors.Is(err, crypt.ErrNoIdentity) || !hintsMention(err, pub) {
		t.Errorf("restore without a key: %v (hints %q), want a usage error with a hint naming %s", err, fail.Hints(err), pub)
	}
	if _, err := restore.ToDir(ctx, e.store, b, target, restore.Options{Partition: "p1", Identities: wrong}); fail.IsUsage(err) || !errors.Is(err, crypt.ErrWrongIdentity) ||
		!strings.Contains(err.Error(), "p1.tar.zst.age") || !hintsMention(err, pub) {
		t.Errorf("restore with another key: %v (hints %q)", err, fail.Hints(err))
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused restore created %s", target)
	}
	r, err := restore.ToDir(ctx, e.store, b, target, restore.Options{Partition: "p1", Identities: ids})
	if err != nil {
		t.Fatalf("restore with the key: %v", err)
	}
	if !r.Filesystems[0].Verified {
		t.Errorf("restore did not verify: %+v", r.Filesystems[0])
	}
	testutil.CompareTrees(t, src, target, skip)

	// The whole volume into an image: the ext4 re-made, the raw partition
	// decrypted back byte for byte.
	copyImg := filepath.Join(e.dir, "copy.img")
	if _, err := restore.ToImage(ctx, e.store, b, copyImg, restore.Options{}); !fail.IsUsage(err) {
		t.Errorf("restore to image without a key: %v, want a usage error", err)
	}
	if _, err := os.Stat(copyImg); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused restore to image created %s", copyImg)
	}
	if _, err := restore.ToImage(ctx, e.store, b, copyImg, restore.Options{Identities: ids}); err != nil {
		t.Fatalf("restore to image: %v", err)
	}
	testutil.Run(t, "bash", "-c", fmt.Sprintf("cmp <(dd if=%s bs=1M skip=%d count=8 status=none) <(dd if=%s bs=1M skip=%d count=8 status=none)", copyImg, p2Start, img, p2Start))
	copied := testutil.MountRO(t, copyImg, p1.Start, p1.Size)
	for _, f := range []string{"etc/hostname", "home/alice/notes.txt"} {
		testutil.Run(t, "cmp", filepath.Join(src, f), filepath.Join(copied, f))
	}

	// A flipped byte: the age chunk fails to authenticate, and the hash.
	obj := filepath.Join(dir, "p1.tar.zst.age")
	data, _ := os.ReadFile(obj)
	data[len(data)/2] ^= 0x40
	os.WriteFile(obj, data, 0o600)
	for _, k := range []*crypt.Identities{ids, nil} {
		if res := verify.Backup(ctx, e.store, b, k); res.OK {
			t.Errorf("verify (key %v) passed a damaged archive", k != nil)
		}
	}
	_, err = restore.ToDir(ctx, e.store, b, filepath.Join(t.TempDir(), "damaged"), restore.Options{Partition: "p1", Identities: ids})
	var pe *restore.PartialError
	if !errors.As(err, &pe) || !errors.Is(err, restore.ErrChecksum) {
		t.Errorf("restore of a damaged archive: %v, want a PartialError with ErrChecksum", err)
	}

	// Without recipients nothing changes: schema 1, plain names.
	o = e.options("run-plain", nil)
	m2, err := backup.Volume(ctx, v, o)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Schema != 1 || m2.Encryption != nil || m2.Filesystems[0].Archive != "p1.tar.zst" || m2.Filesystems[1].Archive != "p2.raw.zst" {
		t.Errorf("unencrypted backup: schema %d, encryption %+v, archives %s %s", m2.Schema, m2.Encryption, m2.Filesystems[0].Archive, m2.Filesystems[1].Archive)
	}
}

func hintsMention(err error, s string) bool {
	for _, h := range fail.Hints(err) {
		if strings.Contains(h, s) {
			return true
		}
	}
	return false
}
