package restore_test

import (
	"os"
	"testing"

	"voltar/internal/sandbox"
)

// TestMain lets this test binary be the sandbox's launcher and guest init
// (the torture tree is also backed up with isolation: sandbox).
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}
