package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FillBtrfsLayout fills the top level of a btrfs filesystem mounted at root
// (Part.Fill) with the layout Ubuntu, Fedora and openSUSE guests use:
// subvolumes @ (made the default) and @home, @/nested inside @, a
// read-only snapshot @home-snap of @home, and files in each.
func FillBtrfsLayout(t testing.TB, root string) {
	t.Helper()
	RequireTools(t, "btrfs")
	write := func(rel, data string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, sv := range []string{"@", "@home", "@/nested"} {
		Run(t, "btrfs", "-q", "subvolume", "create", filepath.Join(root, sv))
	}
	write("@/etc/hostname", "guest1\n")
	write("@/etc-file", "in @\n")
	write("@/nested/data.txt", "in @/nested\n")
	write("@home/alice/notes.txt", strings.Repeat("note\n", 100))
	write("top.txt", "in the top level\n")
	if err := os.Link(filepath.Join(root, "@home/alice/notes.txt"), filepath.Join(root, "@home/alice/notes-link.txt")); err != nil {
		t.Fatal(err)
	}
	Run(t, "btrfs", "-q", "subvolume", "snapshot", "-r", filepath.Join(root, "@home"), filepath.Join(root, "@home-snap"))
	// After the snapshot: only @home has it.
	write("@home/alice/after-snap.txt", "newer than the snapshot\n")
	id := strings.Fields(Run(t, "btrfs", "inspect-internal", "rootid", filepath.Join(root, "@")))[0]
	Run(t, "btrfs", "subvolume", "set-default", id, root)
}
