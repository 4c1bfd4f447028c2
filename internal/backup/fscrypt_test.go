package backup_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/backup"
	"voltar/internal/manifest"
	"voltar/internal/testutil"
)

// A filesystem with fscrypt-encrypted directories whose key this host does
// not have (a guest's) is stored raw, not as files under their no-key
// names: its bytes come back exactly, so the guest's key still opens them.
func TestFscryptFilesystemStoredRaw(t *testing.T) {
	testutil.RequireTools(t, "e4crypt", "keyctl", "cmp")
	e := newEnv(t)
	dir := t.TempDir()
	img := testutil.MakeImage(t, dir, testutil.Image{Table: "none", Parts: []testutil.Part{{FS: "ext4", SizeMiB: 64, Fill: func(t testing.TB, root string) {
		testutil.Run(t, "sh", "-c", "echo plain > "+filepath.Join(root, "plain.txt"))
	}}}})
	testutil.Run(t, "tune2fs", "-O", "encrypt", img)
	mnt := t.TempDir()
	testutil.Run(t, "mount", "-o", "loop", img, mnt)
	// The key lives only in a session keyring that ends with the shell, as
	// a guest's key never reaches the host.
	secret := filepath.Join(mnt, "secret")
	testutil.Run(t, "mkdir", secret)
	testutil.Run(t, "keyctl", "session", "-", "sh", "-c", fmt.Sprintf(
		"echo -n guest-passphrase | e4crypt add_key -S 0x1234567890abcdef %[1]s >/dev/null && mkdir %[1]s/sub && echo hello > %[1]s/f.txt && ln -s f.txt %[1]s/link", secret))
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}

	for _, isolation := range []string{backup.IsolationKernel, backup.IsolationSandbox} {
		t.Run(isolation, func(t *testing.T) {
			if isolation == backup.IsolationSandbox {
				requireSandbox(t)
			}
			m, err := e.backupImage(img, true, func(o *backup.Options) { o.Isolation = isolation })
			if err != nil {
				t.Fatal(err)
			}
			fs := m.Filesystems[0]
			if fs.Mode != manifest.ModeRaw || !strings.Contains(fs.Reason, "fscrypt") {
				t.Fatalf("fs = %+v; want stored raw because of fscrypt", fs)
			}
			folder := filepath.Join(e.store.Root(), "testhost", m.ID)
			testutil.Run(t, "sh", "-c", fmt.Sprintf("zstd -d -q < %s/%s | cmp - %s", folder, fs.Archive, img))
		})
	}
}
