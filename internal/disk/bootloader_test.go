package disk_test

import (
	"os"
	"path/filepath"
	"testing"

	"voltar/internal/disk"
)

func TestFindSyslinux(t *testing.T) {
	touch := func(p string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, tc := range map[string]struct {
		files []string
		link  [2]string // a symlink: name, target
		want  string
	}{
		"none":          {files: []string{"boot/vmlinuz", "boot/syslinux/ldlinux.c32"}},
		"root":          {files: []string{"ldlinux.sys", "ldlinux.c32"}, want: "."},
		"boot/syslinux": {files: []string{"boot/syslinux/ldlinux.sys", "boot/syslinux/ldlinux.c32"}, want: "boot/syslinux"},
		"extlinux":      {files: []string{"extlinux/ldlinux.sys", "extlinux/ldlinux.c32"}, want: "extlinux"},
		// A guest's symlink is not followed out of its filesystem.
		"through a symlink": {files: []string{"elsewhere/ldlinux.sys", "elsewhere/ldlinux.c32"}, link: [2]string{"boot", "elsewhere"}},
	} {
		root := t.TempDir()
		for _, f := range tc.files {
			touch(filepath.Join(root, f))
		}
		if tc.link[0] != "" {
			os.Symlink(tc.link[1], filepath.Join(root, tc.link[0]))
			os.MkdirAll(filepath.Join(root, "elsewhere", "syslinux"), 0o755)
			touch(filepath.Join(root, "elsewhere", "syslinux", "ldlinux.sys"))
			touch(filepath.Join(root, "elsewhere", "syslinux", "ldlinux.c32"))
		}
		got, err := disk.FindSyslinux(root)
		if err != nil || got != tc.want {
			t.Errorf("%s: FindSyslinux = %q, %v; want %q", name, got, err, tc.want)
		}
	}
}

func TestHasLILO(t *testing.T) {
	sec := make([]byte, 512)
	copy(sec, "\xfa\xeb\x21\x01\xb4\x01LILO")
	if !disk.HasLILO(sec) {
		t.Error("LILO's first stage not recognised")
	}
	grub := make([]byte, 512)
	copy(grub, "\xebc\x90")
	copy(grub[400:], "LILO") // far from the start: data, not the signature
	if disk.HasLILO(grub) {
		t.Error("LILO found past the first stage's header")
	}
}
