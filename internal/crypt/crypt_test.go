package crypt_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"voltar/internal/crypt"
)

// newKey writes a fresh age identity file with mode and returns its path
// and public key.
func newKey(t testing.TB, mode os.FileMode) (path, recipient string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "key.txt")
	data := "# created: by a test\n# public key: " + id.Recipient().String() + "\n" + id.String() + "\n"
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
	return path, id.Recipient().String()
}

// sshKey returns a new ed25519 key as an OpenSSH private key file (0600)
// and its authorized_keys line.
func sshKey(t *testing.T) (path, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sk, "test key")
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	spk, _ := ssh.NewPublicKey(pk)
	return path, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spk))) + " backup@test"
}

func TestParseRecipient(t *testing.T) {
	_, rcpt := newKey(t, 0o600)
	_, sshPub := sshKey(t)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	rpub, _ := ssh.NewPublicKey(&rk.PublicKey)
	rsaPub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(rpub)))
	typo := rcpt[:len(rcpt)-1] + "q"
	if typo == rcpt {
		typo = rcpt[:len(rcpt)-1] + "p"
	}
	for _, tc := range []struct {
		in, canon, err string
	}{
		{in: rcpt, canon: rcpt},
		{in: "  " + rcpt + "\n", canon: rcpt},
		{in: sshPub, canon: strings.TrimSuffix(sshPub, " backup@test")},
		{in: rsaPub, canon: rsaPub},
		{in: "age1notakey", err: "malformed"},
		{in: typo, err: ""}, // a bad checksum
		{in: "AGE-SECRET-KEY-1QQQQ", err: "private key"},
		{in: "ssh-dss AAAAB3NzaC1kc3MAAACBAP", err: "not an age public key"},
		{in: "", err: "not an age public key"},
	} {
		_, canon, err := crypt.ParseRecipient(tc.in)
		switch {
		case tc.canon != "" && (err != nil || canon != tc.canon):
			t.Errorf("ParseRecipient(%q) = %q, %v; want %q", tc.in, canon, err, tc.canon)
		case tc.canon == "" && err == nil:
			t.Errorf("ParseRecipient(%q) accepted a bad key", tc.in)
		case tc.canon == "" && !strings.Contains(err.Error(), tc.err):
			t.Errorf("ParseRecipient(%q) = %v, want an error containing %q", tc.in, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "AGE-SECRET-KEY") {
			t.Errorf("error echoes a private key: %v", err)
		}
	}
}

func TestRecipientsFileErrorsNameTheLine(t *testing.T) {
	_, rcpt := newKey(t, 0o600)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.txt")
	os.WriteFile(good, []byte("# team keys\n\n"+rcpt+"\n"), 0o644)
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("# team keys\n"+rcpt+"\nage1typo\n"), 0o644)
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, []byte("# nobody\n"), 0o644)

	r, err := crypt.NewRecipients([]string{rcpt}, []string{good})
	if err != nil || len(r.Keys()) != 1 {
		t.Fatalf("NewRecipients with a duplicate key = %v, %v; want one key", r, err)
	}
	if _, err := crypt.NewRecipients(nil, []string{bad}); err == nil || !strings.Contains(err.Error(), bad+" line 3") {
		t.Errorf("bad recipients file: %v, want an error naming %s line 3", err, bad)
	}
	if _, err := crypt.NewRecipients(nil, []string{empty}); err == nil || !strings.Contains(err.Error(), "no recipients") {
		t.Errorf("empty recipients file: %v", err)
	}
	if _, err := crypt.NewRecipients(nil, []string{filepath.Join(dir, "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing recipients file: %v", err)
	}
	if _, err := crypt.NewRecipients(nil, nil); err == nil {
		t.Errorf("no recipients at all accepted")
	}
}

func TestIdentityFilePermissions(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o640, false}, {0o644, false}, {0o604, false}, {0o620, false}} {
		path, _ := newKey(t, tc.mode)
		ids, err := crypt.LoadIdentities(path)
		var pe *crypt.PermissionError
		switch {
		case tc.ok && (err != nil || ids == nil):
			t.Errorf("mode %04o: %v, want it loaded", tc.mode, err)
		case !tc.ok && !errors.As(err, &pe):
			t.Errorf("mode %04o: %v, want a PermissionError", tc.mode, err)
		}
		if err != nil && strings.Contains(err.Error(), "AGE-SECRET-KEY") {
			t.Errorf("error echoes the key: %v", err)
		}
	}
	if _, err := crypt.LoadIdentities(t.TempDir()); err == nil {
		t.Errorf("a directory as identity file accepted")
	}
	// A file of garbage is refused without quoting it.
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("AGE-SECRET-KEY-1NOTREALLY\n"), 0o600)
	if _, err := crypt.LoadIdentities(junk); err == nil || strings.Contains(err.Error(), "NOTREALLY") {
		t.Errorf("junk identity file: %v", err)
	}
}

// roundTrip encrypts data to r and decrypts it with ids.
func roundTrip(t *testing.T, r *crypt.Recipients, ids *crypt.Identities, data []byte) ([]byte, error) {
	t.Helper()
	var enc bytes.Buffer
	w, err := r.Encrypt(&enc)
	if err != nil {
		t.Fatal(err)
	}
	// Odd write sizes cross age's 64 KiB chunks.
	for p := data; len(p) > 0; {
		n := min(len(p), 100_003)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := ids.Decrypt(&enc)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(d)
}

func TestEncryptDecrypt(t *testing.T) {
	keyA, rcptA := newKey(t, 0o600)
	keyB, _ := newKey(t, 0o600)
	sshPriv, sshPub := sshKey(t)
	r, err := crypt.NewRecipients([]string{rcptA, sshPub}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20+12345)
	rand.Read(data)
	for _, key := range []string{keyA, sshPriv} {
		ids, err := crypt.LoadIdentities(key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := roundTrip(t, r, ids, data)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: round trip: %v (%d bytes back of %d)", filepath.Base(key), err, len(got), len(data))
		}
	}
	idsB, _ := crypt.LoadIdentities(keyB)
	if _, err := roundTrip(t, r, idsB, data); !errors.Is(err, crypt.ErrWrongIdentity) || !strings.Contains(err.Error(), keyB) {
		t.Errorf("wrong identity: %v, want ErrWrongIdentity naming %s", err, keyB)
	}
	if _, err := roundTrip(t, r, nil, data); !errors.Is(err, crypt.ErrNoIdentity) {
		t.Errorf("no identity: %v, want ErrNoIdentity", err)
	}
}

func TestDamageIsDetected(t *testing.T) {
	key, rcpt := newKey(t, 0o600)
	r, _ := crypt.NewRecipients([]string{rcpt}, nil)
	ids, _ := crypt.LoadIdentities(key)
	var enc bytes.Buffer
	w, _ := r.Encrypt(&enc)
	w.Write(bytes.Repeat([]byte("x"), 300_000))
	w.Close()
	for name, damage := range map[string]func([]byte) []byte{
		"flipped byte": func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)-1000] },
		"cut at chunk": func(b []byte) []byte { return b[:len(b)-(300_000-4*64<<10)-16] },
	} {
		b := damage(bytes.Clone(enc.Bytes()))
		d, err := ids.Decrypt(bytes.NewReader(b))
		if err == nil {
			_, err = io.ReadAll(d)
		}
		if err == nil {
			t.Errorf("%s: decrypted without error", name)
		}
	}
}

func TestDescribe(t *testing.T) {
	_, rcpt := newKey(t, 0o600)
	_, sshPub := sshKey(t)
	if got := crypt.Describe(rcpt); got != rcpt {
		t.Errorf("Describe(age key) = %q", got)
	}
	if got := crypt.Describe(sshPub); !strings.HasPrefix(got, "ssh-ed25519 SHA256:") {
		t.Errorf("Describe(ssh key) = %q", got)
	}
}
