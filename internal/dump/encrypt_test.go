package dump_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/dump"
	"voltar/internal/fail"
	"voltar/internal/testutil"
	"voltar/internal/verify"
)

// An encrypted dump is dump.sql.zst.age: sha256sum -c works without the
// key, the real age and zstd restore it by hand, voltar with the key only.
func TestDumpEncrypted(t *testing.T) {
	testutil.RequireTools(t, "age", "age-keygen", "zstd", "sha256sum")
	f := newFixture(t)
	keys := t.TempDir()
	key, other := filepath.Join(keys, "key.txt"), filepath.Join(keys, "other.txt")
	testutil.Run(t, "age-keygen", "-o", key)
	testutil.Run(t, "age-keygen", "-o", other)
	pub := strings.TrimSpace(testutil.Run(t, "age-keygen", "-y", key))
	rcpt, err := crypt.NewRecipients([]string{pub}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.opts.Recipients = rcpt
	ctx := context.Background()
	m, err := dump.Run(ctx, f.cfg(t, "mysqldump --defaults-extra-file=/dev/stdin --all-databases"), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	want := sqlBody + "\n-- Dump completed on 2026-11-25 19:32:08\n"
	fs := m.Filesystems[0]
	if fs.Archive != "dump.sql.zst.age" || m.Schema != 2 || m.Encryption == nil || m.Encryption.Recipients[0] != pub {
		t.Fatalf("encrypted dump: archive %s, schema %d, encryption %+v", fs.Archive, m.Schema, m.Encryption)
	}
	dir := filepath.Join(f.root, "host1", m.ID)
	testutil.Run(t, "sh", "-c", "cd '"+dir+"' && sha256sum --quiet -c SHA256SUMS")
	if got := testutil.Run(t, "sh", "-c", "age -d -i '"+key+"' '"+dir+"/dump.sql.zst.age' | zstd -d -q"); got != want {
		t.Errorf("by hand: %q, want %q", got, want)
	}
	if exec.Command("sh", "-c", "zstd -t -q < '"+dir+"/dump.sql.zst.age'").Run() == nil {
		t.Errorf("the stored dump is a plain zstd stream")
	}

	b, err := catalog.Resolve(ctx, f.st, "host1", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := crypt.LoadIdentities(key)
	wrong, _ := crypt.LoadIdentities(other)
	if res := verify.Backup(ctx, f.st, b, ids); !res.OK || res.ContentNotChecked() {
		t.Errorf("verify with the key: %+v", res)
	}
	if res := verify.Backup(ctx, f.st, b, nil); !res.OK || !res.ContentNotChecked() {
		t.Errorf("verify without a key: %+v", res)
	}
	if res := verify.Backup(ctx, f.st, b, wrong); res.OK {
		t.Errorf("verify with another key passed")
	}

	target := filepath.Join(t.TempDir(), "restore")
	if _, err := dump.Restore(ctx, f.st, b, target, false, nil); !fail.IsUsage(err) || !errors.Is(err, crypt.ErrNoIdentity) {
		t.Errorf("restore without a key: %v, want a usage error", err)
	}
	if _, err := dump.Restore(ctx, f.st, b, target, false, wrong); !errors.Is(err, crypt.ErrWrongIdentity) || fail.IsUsage(err) {
		t.Errorf("restore with another key: %v", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused restore created %s", target)
	}
	r, err := dump.Restore(ctx, f.st, b, target, false, ids)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(target, dump.SQLName))
	if string(got) != want || !r.Verified || r.Object != "dump.sql.zst.age" {
		t.Errorf("restored %q (%+v), want %q", got, r, want)
	}
}
