package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenDocs(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	// --config names a file that does not exist, which fails every command
	// that reads it: gen-docs reads none.
	if code := run([]string{"--config", filepath.Join(dir, "missing.yaml"), "gen-docs", "--man", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("gen-docs: exit %d\n%s", code, stderr.String())
	}
	for _, name := range []string{"voltar.8", "voltar-backup.8", "voltar-run.8", "voltar-restore.8", "voltar-config-check.8", "voltar-version.8"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("no %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "voltar-gen-docs.8")); err == nil {
		t.Errorf("the hidden gen-docs command got a manual page")
	}
	page, err := os.ReadFile(filepath.Join(dir, "voltar-restore.8"))
	if err != nil {
		t.Fatal(err)
	}
	// The long help, verbatim: Markdown would drop <...> as HTML.
	for _, want := range []string{`.TH "VOLTAR-RESTORE" "8"`, "<vg>/<volume>/<timestamp>", "--to-image FILE   re-create the volume"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("voltar-restore.8 lacks %q:\n%s", want, page)
		}
	}
	if code := run([]string{"gen-docs"}, &stdout, &stderr); code != 2 {
		t.Errorf("gen-docs without --man: exit %d, want 2", code)
	}
}
