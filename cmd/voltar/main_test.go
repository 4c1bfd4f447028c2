package main

import (
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"voltar/internal/disk"
	"voltar/internal/sandbox"
	"voltar/internal/testutil"
)

func TestMain(m *testing.M) {
	sandbox.Main() // isolation: sandbox runs this binary as launcher and guest
	testscript.Main(m, map[string]func(){
		"voltar": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs the CLI scenarios in testdata/script: errors, hints and
// exit codes, and that failed runs leave nothing behind.
func TestScripts(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "sfdisk", "flock", "sha256sum", "zstd", "tar")
	testscript.Run(t, scriptParams("testdata/script"))
}

// TestEncryptionScripts runs the scenarios of encrypted backups, which
// also need the real age to restore by hand.
func TestEncryptionScripts(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "sha256sum", "zstd", "tar", "age", "age-keygen")
	testscript.Run(t, scriptParams("testdata/encrypt"))
}

func scriptParams(dir string) testscript.Params {
	return testscript.Params{
		Dir: dir,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// expand FILE...: replace $WORK in files, for configs that need
			// absolute paths.
			"expand": func(ts *testscript.TestScript, neg bool, args []string) {
				for _, f := range args {
					data := ts.ReadFile(f)
					ts.Check(os.WriteFile(ts.MkAbs(f), []byte(strings.ReplaceAll(data, "$WORK", ts.Getenv("WORK"))), 0o600))
				}
			},
		},
		Setup: func(env *testscript.Env) error {
			env.Setenv("VOLTAR_TEST_REQUIRE_ALL", os.Getenv("VOLTAR_TEST_REQUIRE_ALL"))
			// A script that fails half-way (say, after killing voltar) must
			// not leave mounts or loop devices for the rest of the machine.
			work := env.WorkDir
			env.Defer(func() {
				mounts, _ := disk.MountsUnder(work)
				for _, m := range mounts {
					disk.Unmount(m)
				}
				loops, _ := disk.ListLoops()
				for _, l := range loops {
					if strings.HasPrefix(l.Backing, work+"/") {
						disk.DetachLoop(l.Path)
					}
				}
			})
			return nil
		},
	}
}
