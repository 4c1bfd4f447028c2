package signing_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/folder"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/signing"
	"voltar/internal/store"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
)

// keys makes an ed25519 key pair and an allowed-signers file listing it
// under principal.
func keys(t *testing.T, dir, name, principal string) (key, allowed string) {
	key = filepath.Join(dir, name)
	testutil.Run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	allowed = filepath.Join(dir, name+".allowed")
	line := principal + ` namespaces="` + layout.SigNamespace + `" ` + string(pub)
	if err := os.WriteFile(allowed, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return key, allowed
}

// sshVerify is the by-hand check of the README.
func sshVerify(t *testing.T, allowed, principal string, data, sig []byte) (string, error) {
	sigFile := filepath.Join(t.TempDir(), "sig")
	if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", allowed, "-I", principal, "-n", layout.SigNamespace, "-s", sigFile)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// What voltar signs, ssh-keygen verifies, and what ssh-keygen signs, voltar
// verifies: one format. Changed data, another key and another namespace
// fail.
func TestSignatureIsSSHSIG(t *testing.T) {
	testutil.RequireTools(t, "ssh-keygen")
	ctx := context.Background()
	dir := t.TempDir()
	key, allowed := keys(t, dir, "key", "backups@h1")
	other, _ := keys(t, dir, "other", "intruder")
	s, err := signing.NewSigner(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signing.NewVerifier(allowed)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"schema": 3}` + "\n")
	sig, err := s.Sign(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sshVerify(t, allowed, "backups@h1", data, sig); err != nil || !strings.Contains(out, `Good "voltar-manifest" signature for backups@h1`) {
		t.Errorf("ssh-keygen -Y verify of voltar's signature: %v\n%s", err, out)
	}
	if p, err := v.Verify(ctx, data, sig); err != nil || p != "backups@h1" {
		t.Errorf("Verify = %q, %v; want backups@h1", p, err)
	}
	if _, err := v.Verify(ctx, append(data, ' '), sig); !errors.Is(err, signing.ErrBadSignature) {
		t.Errorf("Verify of changed data: %v, want ErrBadSignature", err)
	}
	sign := func(key, ns string) []byte {
		cmd := exec.Command("ssh-keygen", "-Y", "sign", "-f", key, "-n", ns)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if _, err := v.Verify(ctx, data, sign(key, layout.SigNamespace)); err != nil {
		t.Errorf("Verify of ssh-keygen's signature: %v", err)
	}
	if _, err := v.Verify(ctx, data, sign(key, "git")); !errors.Is(err, signing.ErrBadSignature) {
		t.Errorf("Verify of a signature in another namespace: %v, want ErrBadSignature", err)
	}
	if _, err := v.Verify(ctx, data, sign(other, layout.SigNamespace)); !errors.Is(err, signing.ErrBadSignature) {
		t.Errorf("Verify of another key's signature: %v, want ErrBadSignature", err)
	}
}

// Publish signs the manifest before its checksum and the manifest itself
// are stored, and Check verifies the bytes the catalog read.
func TestPublishSigns(t *testing.T) {
	testutil.RequireTools(t, "ssh-keygen")
	ctx := context.Background()
	dir := t.TempDir()
	key, allowed := keys(t, dir, "key", "backups@h1")
	s, err := signing.NewSigner(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signing.NewVerifier(allowed)
	if err != nil {
		t.Fatal(err)
	}
	st := &orderStore{Store: local.New(filepath.Join(dir, "store"))}
	m := &manifest.Manifest{Schema: 1, Tool: "voltar", Host: "h", ID: "vg/v/2026-11-25T013000Z",
		Table:       manifest.Table{Type: "none"},
		Filesystems: []manifest.Filesystem{{Name: "fs", Mode: manifest.ModeFiles, Archive: "fs.tar.zst", SHA256: strings.Repeat("0", 64)}},
		Status:      manifest.StatusComplete}
	prefix := "h/vg/v/2026-11-25T013000Z/"
	if err := folder.Publish(ctx, st, prefix, m, time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC), s); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(st.puts, " "), "SHA256SUMS manifest.json.sig manifest.json.sha256 manifest.json"; got != want {
		t.Errorf("puts: %s, want %s", got, want)
	}
	b, err := catalog.Resolve(ctx, st, "h", "vg/v/latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(ctx, st, b); err != nil {
		t.Errorf("Check of a signed backup: %v", err)
	}
	b.ManifestData = append(b.ManifestData, '\n')
	var se *signing.Error
	if err := v.Check(ctx, st, b); !errors.As(err, &se) || !strings.Contains(se.Reason, "bad signature") {
		t.Errorf("Check of other bytes: %v, want a bad signature", err)
	}
	if err := st.Delete(ctx, prefix+layout.ManifestSig); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(ctx, st, b); !errors.As(err, &se) || !strings.Contains(se.Reason, "missing") {
		t.Errorf("Check without a signature: %v, want missing", err)
	}
}

// orderStore records the order of Puts.
type orderStore struct {
	*local.Store
	puts []string
}

func (o *orderStore) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (int64, error) {
	o.puts = append(o.puts, key[strings.LastIndexByte(key, '/')+1:])
	return o.Store.Put(ctx, key, r, opts)
}
