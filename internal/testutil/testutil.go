// Package testutil holds helpers for tests that need real components.
//
// A test that cannot find what it needs (root, a tool, a service) skips with
// the reason when run by hand, and fails when VOLTAR_TEST_REQUIRE_ALL=1 (CI),
// so nothing silently stops being tested.
package testutil

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireAll reports whether missing components fail tests instead of skipping.
func RequireAll() bool { return os.Getenv("VOLTAR_TEST_REQUIRE_ALL") == "1" }

// Unavailable skips or fails t because something it needs is missing.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if RequireAll() {
		t.Fatalf("VOLTAR_TEST_REQUIRE_ALL=1 but "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot needs uid 0 (loop devices, mounts).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "test needs root")
	}
}

// RequireTools needs each named program on PATH.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		Unavailable(t, "test needs %s on PATH", strings.Join(missing, ", "))
	}
}

// Run runs a command and fails t with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
