package dump_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"voltar/internal/catalog"
	"voltar/internal/dump"
	"voltar/internal/fail"
	"voltar/internal/folder"
	"voltar/internal/layout"
	"voltar/internal/signing"
	"voltar/internal/store/local"
	"voltar/internal/store/storetest"
	"voltar/internal/verify"
)

type fixture struct {
	srv   *fakeSSH
	root  string // the local store's directory
	st    *local.Store
	opts  dump.Options
	creds string
}

func newFixture(t *testing.T, hostKeys ...ssh.Signer) *fixture {
	t.Helper()
	f := &fixture{srv: startFakeSSH(t, hostKeys...), root: t.TempDir()}
	f.st = local.New(f.root)
	f.creds = filepath.Join(t.TempDir(), "my.cnf")
	if err := os.WriteFile(f.creds, []byte("[client]\nuser=backup\npassword=s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.opts = dump.Options{Settings: folder.Settings{Store: f.st, Host: "host1", Version: "test", Logger: slog.New(slog.DiscardHandler)}}
	return f
}

// cfg is a dump of the fake server that trusts its (first) host key.
func (f *fixture) cfg(t *testing.T, command string) dump.Target {
	return dump.Target{
		Name: "db1", Host: f.srv.host(), Port: f.srv.port(), User: "backup",
		KeyFile: f.srv.ClientKey, KnownHosts: f.srv.knownHosts(t, f.srv.hostKey[0].PublicKey()),
		Command: command, CredentialsFile: f.creds, Timeout: 20 * time.Second,
	}
}

// files lists every file under the store's root, temporary ones included.
func (f *fixture) files(t *testing.T) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(f.root, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestDumpStoresVerifiesRestores(t *testing.T) {
	f := newFixture(t)
	m, err := dump.Run(context.Background(), f.cfg(t, "mysqldump --defaults-extra-file=/dev/stdin --all-databases"), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.srv.stdins(); len(got) != 1 || !strings.Contains(got[0], "password=s3cret-pw") {
		t.Errorf("remote stdin = %q, want the credentials file", got)
	}
	if !strings.HasPrefix(m.ID, "dumps/db1/") || m.Volume.Kind != dump.Kind || m.Volume.Group != dump.Group {
		t.Errorf("manifest id %q volume %+v", m.ID, m.Volume)
	}
	fs := m.Filesystems[0]
	want := sqlBody + "\n-- Dump completed on 2026-11-25 19:32:08\n"
	if fs.Archive != "dump.sql.zst" || fs.Mode != dump.Mode || fs.Type != "mysqldump" || fs.SourceBytes != int64(len(want)) {
		t.Errorf("dump object %+v", fs)
	}
	ctx := context.Background()
	cat, err := catalog.List(ctx, f.st, "host1", "dumps/db1")
	if err != nil || len(cat.Backups) != 1 || len(cat.Incomplete) != 0 {
		t.Fatalf("catalog: %+v, %v", cat, err)
	}
	b := &cat.Backups[0]
	if b.ID != m.ID {
		t.Errorf("catalog id %s, manifest %s", b.ID, m.ID)
	}
	if res := verify.Backup(ctx, f.st, b, nil); !res.OK {
		t.Errorf("verify: %v", res.Problems)
	}
	dir := filepath.Join(t.TempDir(), "restore")
	r, err := dump.Restore(ctx, f.st, b, dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "dump.sql"))
	if string(got) != want || !r.Verified || r.SHA256 != fs.SHA256 {
		t.Errorf("restored %q (verified %v, sha %s), want %q", got, r.Verified, r.SHA256, want)
	}
	if _, err := dump.Restore(ctx, f.st, b, dir, false, nil); !fail.IsUsage(err) {
		t.Errorf("second restore into the same dir: %v, want a usage error", err)
	}
	// A damaged object is refused and leaves no dump.sql.
	obj := filepath.Join(f.root, b.Key(fs.Archive))
	data, _ := os.ReadFile(obj)
	data[len(data)/2] ^= 0xff
	os.WriteFile(obj, data, 0o600)
	dir2 := filepath.Join(t.TempDir(), "restore2")
	if _, err := dump.Restore(ctx, f.st, b, dir2, false, nil); !errors.Is(err, dump.ErrChecksum) {
		t.Errorf("restore of a damaged dump: %v, want ErrChecksum", err)
	}
	if ents, _ := os.ReadDir(dir2); len(ents) != 0 {
		t.Errorf("a failed restore left %v", ents)
	}
	if res := verify.Backup(ctx, f.st, b, nil); res.OK {
		t.Errorf("verify passed a damaged dump")
	}
}

func TestBigDumpAndNoCredentials(t *testing.T) {
	f := newFixture(t)
	d := f.cfg(t, "big")
	d.CredentialsFile = ""
	m, err := dump.Run(context.Background(), d, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if m.SourceBytes() < 8<<20 || m.StoredBytes() > m.SourceBytes()/20 {
		t.Errorf("sql %d bytes, stored %d", m.SourceBytes(), m.StoredBytes())
	}
	if got := f.srv.stdins(); len(got) != 1 || got[0] != "" {
		t.Errorf("stdin %q, want empty", got)
	}
}

// Every way a dump can go wrong fails it and leaves nothing in the store.
func TestFailuresPublishNothing(t *testing.T) {
	for _, tc := range []struct{ cmd, want string }{
		{"fail", "exit status 2"},
		{"notfound", "not found (exit status 127)"},
		{"truncate", "without an exit status"},
		{"signal", "killed by signal KILL"},
		{"stderr-error", "not warnings; its stderr:\n  mysqldump: Couldn't execute"},
		{"mysqldump --truncated", `does not end with "-- Dump completed"`},
		{"empty", "wrote nothing"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			f := newFixture(t)
			_, err := dump.Run(context.Background(), f.cfg(t, tc.cmd), f.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "dump db1: ") {
				t.Errorf("err %q does not name the dump", err)
			}
			if len(fail.Hints(err)) == 0 {
				t.Errorf("no hint with %v", err)
			}
			if got := f.files(t); len(got) != 0 {
				t.Errorf("store holds %v after a failed dump", got)
			}
		})
	}
	// The stderr of a failed command is in the message.
	f := newFixture(t)
	_, err := dump.Run(context.Background(), f.cfg(t, "fail"), f.opts)
	var re *dump.RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Stderr, "Unknown database 'nope'") {
		t.Errorf("err %v: want a RemoteError with stderr", err)
	}
}

func TestWarningsAreKept(t *testing.T) {
	f := newFixture(t)
	m, err := dump.Run(context.Background(), f.cfg(t, "warn"), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := m.Extra["stderr_warnings"].([]string)
	if len(w) != 2 {
		t.Errorf("warnings %q, want 2", w)
	}
}

func TestUnknownHost(t *testing.T) {
	f := newFixture(t)
	d := f.cfg(t, "mysqldump")
	os.WriteFile(d.KnownHosts, nil, 0o600)
	_, err := dump.Run(context.Background(), d, f.opts)
	if !errors.Is(err, dump.ErrHostKeyUnknown) || !strings.Contains(strings.Join(fail.Hints(err), " "), "ssh-keyscan -p") {
		t.Fatalf("err = %v (hints %q), want ErrHostKeyUnknown with an ssh-keyscan hint", err, fail.Hints(err))
	}
	if got := f.files(t); len(got) != 0 {
		t.Errorf("store holds %v", got)
	}
	// accept_new_host_key records the key, and later runs check it.
	d.AcceptNewHostKey = true
	if _, err := dump.Run(context.Background(), d, f.opts); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(d.KnownHosts)
	if want := f.srv.hostKey[0].PublicKey().Marshal(); !strings.Contains(string(data), "["+f.srv.host()+"]:") || len(strings.Split(strings.TrimSpace(string(data)), "\n")) != 1 {
		t.Errorf("known_hosts after accepting: %q (key %x)", data, want[:8])
	}
	d.AcceptNewHostKey = false
	if _, err := dump.Run(context.Background(), d, f.opts); err != nil {
		t.Fatalf("the recorded key is not accepted: %v", err)
	}
}

func TestMissingKnownHosts(t *testing.T) {
	f := newFixture(t)
	d := f.cfg(t, "mysqldump")
	d.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
	if _, err := dump.Run(context.Background(), d, f.opts); err == nil || !strings.Contains(err.Error(), "known_hosts") {
		t.Fatalf("err = %v, want a known_hosts error", err)
	}
	d.AcceptNewHostKey = true
	if _, err := dump.Run(context.Background(), d, f.opts); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(d.KnownHosts); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts not recorded: %v %v", fi, err)
	}
}

func TestChangedHostKey(t *testing.T) {
	f := newFixture(t)
	other, _ := newSigner(t, false)
	for _, accept := range []bool{false, true} {
		d := f.cfg(t, "mysqldump")
		d.KnownHosts = f.srv.knownHosts(t, other.PublicKey())
		d.AcceptNewHostKey = accept
		before, _ := os.ReadFile(d.KnownHosts)
		_, err := dump.Run(context.Background(), d, f.opts)
		if !errors.Is(err, dump.ErrHostKeyChanged) || !strings.Contains(err.Error(), "host key for "+f.srv.addr+" changed") {
			t.Fatalf("accept_new_host_key %v: err = %v, want a changed host key", accept, err)
		}
		after, _ := os.ReadFile(d.KnownHosts)
		if string(before) != string(after) {
			t.Errorf("known_hosts was changed: %q", after)
		}
		if got := f.files(t); len(got) != 0 {
			t.Errorf("store holds %v", got)
		}
	}
}

// A server known by its RSA key must not look changed because it prefers
// to show its ed25519 key.
func TestKnownKeyOfAnotherAlgorithm(t *testing.T) {
	ed, _ := newSigner(t, false)
	rsaKey, _ := newSigner(t, true)
	f := newFixture(t, ed, rsaKey)
	d := f.cfg(t, "mysqldump")
	d.KnownHosts = f.srv.knownHosts(t, rsaKey.PublicKey())
	m, err := dump.Run(context.Background(), d, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if m.Extra["host_key"] != ssh.FingerprintSHA256(rsaKey.PublicKey()) {
		t.Errorf("host key %v, want the RSA key's", m.Extra["host_key"])
	}
}

func TestEncryptedKeyRefused(t *testing.T) {
	f := newFixture(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "enc", []byte("pass"))
	if err != nil {
		t.Fatal(err)
	}
	d := f.cfg(t, "mysqldump")
	d.KeyFile = filepath.Join(t.TempDir(), "enc")
	os.WriteFile(d.KeyFile, pem.EncodeToMemory(blk), 0o600)
	_, err = dump.Run(context.Background(), d, f.opts)
	if err == nil || !strings.Contains(err.Error(), "passphrase") || !strings.Contains(strings.Join(fail.Hints(err), " "), "ssh-keygen -p") {
		t.Fatalf("err = %v (hints %q)", err, fail.Hints(err))
	}
}

func TestTimeout(t *testing.T) {
	f := newFixture(t)
	d := f.cfg(t, "sleep")
	d.Timeout = 500 * time.Millisecond
	start := time.Now()
	_, err := dump.Run(context.Background(), d, f.opts)
	if err == nil || !strings.Contains(err.Error(), "timed out after 500ms") || !strings.Contains(strings.Join(fail.Hints(err), " "), "raise timeout") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("the timeout took %s", time.Since(start))
	}
	if got := f.files(t); len(got) != 0 {
		t.Errorf("store holds %v", got)
	}
}

func TestCancel(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err := dump.Run(ctx, f.cfg(t, "sleep"), f.opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := f.files(t); len(got) != 0 {
		t.Errorf("store holds %v", got)
	}
}

func TestPasswordInCommandRefused(t *testing.T) {
	f := newFixture(t)
	for _, cmd := range []string{"mysqldump -ps3cret --all-databases", "mysqldump --password=s3cret -A", "PGPASSWORD=x pg_dumpall"} {
		_, err := dump.Run(context.Background(), f.cfg(t, cmd), f.opts)
		if !fail.IsUsage(err) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: err = %v, want a usage error that does not repeat the password", cmd, err)
		}
	}
	// pg_dump's -p is a port.
	if _, err := dump.Run(context.Background(), f.cfg(t, "cat -p5432"), f.opts); err != nil && fail.IsUsage(err) {
		t.Errorf("pg-style -p refused: %v", err)
	}
}

// Dumps run concurrently; two that meet the same new host record it once
// and both succeed.
func TestAllConcurrentAcceptNew(t *testing.T) {
	f := newFixture(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	var dumps []dump.Target
	for _, n := range []string{"a", "b", "c", "bad"} {
		d := f.cfg(t, "mysqldump")
		d.Name, d.KnownHosts, d.AcceptNewHostKey = n, kh, true
		if n == "bad" {
			d.Command = "fail"
		}
		dumps = append(dumps, d)
	}
	res := dump.All(context.Background(), dumps, 3, f.opts)
	var once sync.Once
	for i, r := range res {
		if r.Name != dumps[i].Name {
			t.Errorf("result %d is %s", i, r.Name)
		}
		if (r.Err != nil) != (r.Name == "bad") {
			t.Errorf("%s: %v", r.Name, r.Err)
		}
		// The report's row comes from these (nightly's dumpRow).
		if (r.Err == nil) != (r.Manifest != nil) || r.Skipped {
			once.Do(func() { t.Errorf("result %+v", r) })
		}
	}
	data, _ := os.ReadFile(kh)
	if n := len(strings.Split(strings.TrimSpace(string(data)), "\n")); n != 1 {
		t.Errorf("known_hosts has %d lines: %q", n, data)
	}
	cat, _ := catalog.List(context.Background(), f.st, "host1", "")
	if len(cat.Backups) != 3 || len(cat.Incomplete) != 0 {
		t.Errorf("catalog: %d backups, %d incomplete", len(cat.Backups), len(cat.Incomplete))
	}
}

func TestSelect(t *testing.T) {
	all := []dump.Target{{Name: "a"}, {Name: "b"}}
	if got, err := dump.Select(all, nil); err != nil || len(got) != 2 {
		t.Errorf("Select(all) = %v, %v", got, err)
	}
	if got, err := dump.Select(all, []string{"b", "b"}); err != nil || len(got) != 1 || got[0].Name != "b" {
		t.Errorf("Select(b b) = %v, %v", got, err)
	}
	if _, err := dump.Select(all, []string{"zz"}); !fail.IsUsage(err) {
		t.Errorf("unknown name: %v", err)
	}
	if _, err := dump.Select(nil, nil); !fail.IsUsage(err) {
		t.Errorf("no dumps: %v", err)
	}
}

func TestStoreFailureIsBlamedOnTheStore(t *testing.T) {
	f := newFixture(t)
	// Every Put of a dump object fails after a little data, like a full disk.
	f.opts.Store = storetest.NewFaulty(f.st, &storetest.Fault{Op: storetest.OpPut, KeySuffix: ".zst", AfterBytes: 64 << 10,
		Err: fmt.Errorf("write: %w", unix.ENOSPC)})
	_, err := dump.Run(context.Background(), f.cfg(t, "big"), f.opts)
	if !errors.Is(err, unix.ENOSPC) || !strings.Contains(strings.Join(fail.Hints(err), " "), "is full") {
		t.Fatalf("err = %v (hints %q), want ENOSPC with a hint", err, fail.Hints(err))
	}
	if got := f.files(t); len(got) != 0 {
		t.Errorf("store holds %v", got)
	}
}

// With a signing key, a dump's folder gets manifest.json.sig like a
// volume's backup: the signature of the manifest as stored, which the
// allowed signers accept, and verify finds no stray object.
func TestDumpSigned(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen (openssh-client) is needed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(dir, "allowed_signers")
	if err := os.WriteFile(allowed, append([]byte("dumps@host1 "), pub...), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	if f.opts.Signer, err = signing.NewSigner(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := dump.Run(ctx, f.cfg(t, "mysqldump --defaults-extra-file=/dev/stdin --all-databases"), f.opts); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.List(ctx, f.st, "host1", "dumps/db1")
	if err != nil || len(cat.Backups) != 1 {
		t.Fatalf("catalog: %+v, %v", cat, err)
	}
	b := &cat.Backups[0]
	if _, ok := b.Object(layout.ManifestSig); !ok {
		t.Fatalf("no %s in the dump's folder: %+v", layout.ManifestSig, b.Objects)
	}
	v, err := signing.NewVerifier(allowed)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(ctx, f.st, b); err != nil {
		t.Errorf("signature of the dump's manifest: %v", err)
	}
	if res := verify.Backup(ctx, f.st, b, nil); !res.OK {
		t.Errorf("verify: %v", res.Problems)
	}
}
