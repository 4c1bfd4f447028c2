package backup_test

import (
	"os"
	"testing"

	"voltar/internal/sandbox"
)

// TestMain lets this test binary be the sandbox's launcher and guest
// init (isolation: sandbox runs its own binary there).
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}
