package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"voltar/internal/archive"
	"voltar/internal/testutil"
)

// mountBtrfs makes and mounts a fresh btrfs filesystem at mnt.
func mountBtrfs(t *testing.T, mnt string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "btrfs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "mkfs.btrfs", "-q", "-f", img)
	testutil.Run(t, "mount", "-o", "loop", img, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
}

func tarNames(t *testing.T, data []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// A subvolume of the same btrfs filesystem is entered; another filesystem
// mounted inside (even a btrfs one, whose root is inode 256 too) and a bind
// mount of a subvolume are not, and are listed.
func TestSubvolumesAndMounts(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.btrfs", "btrfs", "mount", "umount")
	if !testutil.KernelHas("btrfs") {
		testutil.Unavailable(t, "the kernel has no btrfs")
	}
	root := filepath.Join(t.TempDir(), "root")
	os.Mkdir(root, 0o755)
	mountBtrfs(t, root)
	testutil.Run(t, "btrfs", "-q", "subvolume", "create", filepath.Join(root, "sv"))
	for _, d := range []string{"other", "bind", "tmp"} {
		os.Mkdir(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "sv/in-sv"), []byte("x"), 0o644)
	mountBtrfs(t, filepath.Join(root, "other"))
	os.WriteFile(filepath.Join(root, "other/in-other"), []byte("x"), 0o644)
	testutil.Run(t, "mount", "--bind", filepath.Join(root, "sv"), filepath.Join(root, "bind"))
	t.Cleanup(func() { exec.Command("umount", filepath.Join(root, "bind")).Run() })
	testutil.Run(t, "mount", "-t", "tmpfs", "tmpfs", filepath.Join(root, "tmp"))
	t.Cleanup(func() { exec.Command("umount", filepath.Join(root, "tmp")).Run() })

	var buf bytes.Buffer
	res, err := archive.Write(context.Background(), root, &buf, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, buf.Bytes())
	for _, want := range []string{"./sv/", "./sv/in-sv", "./other/", "./bind/", "./tmp/"} {
		if !slices.Contains(names, want) {
			t.Errorf("archive lacks %s: %v", want, names)
		}
	}
	for _, n := range names {
		if strings.HasPrefix(n, "./other/") && n != "./other/" || strings.HasPrefix(n, "./bind/") && n != "./bind/" {
			t.Errorf("archive holds %s, from a mount inside", n)
		}
	}
	if len(res.Subvolumes) != 1 || res.Subvolumes[0].Path != "sv" || res.Subvolumes[0].Skipped != "" {
		t.Errorf("subvolumes %+v, want sv entered", res.Subvolumes)
	}
	var ne []string
	for _, n := range res.NotEntered {
		ne = append(ne, n.Path+": "+n.Reason)
	}
	want := []string{"bind: another filesystem is mounted here", "other: another filesystem is mounted here", "tmp: another filesystem is mounted here"}
	if !slices.Equal(ne, want) {
		t.Errorf("not entered %q, want %q", ne, want)
	}
}
