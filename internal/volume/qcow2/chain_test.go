package qcow2_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"voltar/internal/fail"
	"voltar/internal/testutil"
	"voltar/internal/volume"
	"voltar/internal/volume/qcow2"
)

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
}

// Backing files are resolved as qemu resolves them: relative to the
// directory of the image that names them, through qcow2 and raw layers,
// with the format recorded or probed.
func TestChain(t *testing.T) {
	testutil.RequireTools(t, "qemu-img")
	root := t.TempDir()
	for _, d := range []string{"a", "b", "c"} {
		os.Mkdir(filepath.Join(root, d), 0o755)
	}
	base := filepath.Join(root, "a", "base.raw")
	if err := os.WriteFile(base, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(base, 64<<20)
	// mid names base relatively (from a/), top names mid relatively from
	// c/, across directories.
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", filepath.Join(root, "a", "mid.qcow2"))
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", "../a/mid.qcow2", "-F", "qcow2", filepath.Join(root, "c", "top.qcow2"), "128M")
	// A symlink to top in b/: qemu resolves against the link's directory,
	// where ../a/mid.qcow2 also exists.
	if err := os.Symlink(filepath.Join(root, "c", "top.qcow2"), filepath.Join(root, "b", "link.qcow2")); err != nil {
		t.Fatal(err)
	}

	for _, top := range []string{filepath.Join(root, "c", "top.qcow2"), filepath.Join(root, "b", "link.qcow2")} {
		ok, err := qcow2.IsQcow2(top)
		if err != nil || !ok {
			t.Fatalf("IsQcow2(%s) = %v, %v", top, ok, err)
		}
		v, err := qcow2.Resolve(top, false)
		if err != nil {
			t.Fatal(err)
		}
		want := []volume.Layer{
			{Path: filepath.Join(root, "a", "mid.qcow2"), Format: "qcow2", Size: 64 << 20},
			{Path: base, Format: "raw", Size: 64 << 20},
		}
		if v.Size != 128<<20 || v.Format != volume.FormatQcow2 || len(v.Backing) != 2 || v.Backing[0] != want[0] || v.Backing[1] != want[1] {
			t.Errorf("Resolve(%s) = %+v, want size 128 MiB and chain %+v", top, v, want)
		}
	}
	if ok, _ := qcow2.IsQcow2(base); ok {
		t.Error("a raw file taken for qcow2")
	}

	// No backing format recorded (qemu-img no longer writes such images:
	// the extension's type is overwritten, which qemu then ignores):
	// probed from the content.
	noformat := filepath.Join(root, "a", "noformat.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-b", "mid.qcow2", "-F", "qcow2", noformat, "64M")
	b, err := os.ReadFile(noformat)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b[:4096], []byte{0xe2, 0x79, 0x2a, 0xca})
	if i < 0 {
		t.Fatal("no backing format extension in the header")
	}
	copy(b[i:], []byte{0x7e, 0x57, 0x00, 0x01})
	if err := os.WriteFile(noformat, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := qcow2.Resolve(filepath.Join(root, "a", "noformat.qcow2"), false); err != nil || len(v.Backing) != 2 || v.Backing[0].Format != "qcow2" {
		t.Errorf("chain without a recorded format = %+v, %v", v.Backing, err)
	}

	// A missing backing file: a clear error with a hint.
	qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", filepath.Join(root, "b", "orphan.qcow2"), "64M")
	_, err = qcow2.Resolve(filepath.Join(root, "b", "orphan.qcow2"), false)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "b", "gone.qcow2")+" does not exist") || len(fail.Hints(err)) == 0 {
		t.Errorf("missing backing file: %v (hints %q)", err, fail.Hints(err))
	}

	// A loop: x -> y -> x.
	qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-b", "y.qcow2", "-F", "qcow2", filepath.Join(root, "b", "x.qcow2"), "64M")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-b", "x.qcow2", "-F", "qcow2", filepath.Join(root, "b", "y.qcow2"), "64M")
	if _, err := qcow2.Resolve(filepath.Join(root, "b", "x.qcow2"), false); err == nil || !strings.Contains(err.Error(), "loops") {
		t.Errorf("backing loop: %v", err)
	}

	// Not a local file.
	qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-b", "nbd://127.0.0.1:10809/x", "-F", "raw", filepath.Join(root, "b", "net.qcow2"), "64M")
	if _, err := qcow2.Resolve(filepath.Join(root, "b", "net.qcow2"), false); err == nil || !strings.Contains(err.Error(), "not a local file") {
		t.Errorf("nbd backing: %v", err)
	}

	// An encrypted image.
	enc := filepath.Join(root, "b", "enc.qcow2")
	qemuImg(t, "create", "-q", "--object", "secret,id=s0,data=pw", "-f", "qcow2", "-o", "encrypt.format=luks,encrypt.key-secret=s0", enc, "64M")
	if _, err := qcow2.Resolve(enc, false); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("encrypted image: %v", err)
	}
}

// A damaged header is an error, never a panic.
func FuzzReadHeader(f *testing.F) {
	f.Add(append(append([]byte{}, qcow2.Magic...), make([]byte, 200)...))
	// Real headers, with a backing file and its format, v2 and v3.
	if _, err := exec.LookPath("qemu-img"); err == nil {
		dir := f.TempDir()
		for i, compat := range []string{"0.10", "1.1"} {
			img := filepath.Join(dir, fmt.Sprintf("h%d.qcow2", i))
			if exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat="+compat, "-u", "-b", "../base/disk.raw", "-F", "raw", img, "1G").Run() == nil {
				if b, err := os.ReadFile(img); err == nil {
					f.Add(b[:min(len(b), 4096)])
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		qcow2.ReadHeader(readerAt(b))
	})
}

type readerAt []byte

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(r)) {
		return 0, os.ErrNotExist
	}
	n := copy(p, r[off:])
	if n < len(p) {
		return n, os.ErrNotExist
	}
	return n, nil
}
