package config_test

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"voltar/internal/config"
)

func TestExampleParsesAndDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../examples/voltar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("example does not parse: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("example does not validate: %v", err)
	}
	var missing []string
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "" || key == "-" {
				continue
			}
			// Set, or shown commented out in an example entry.
			if !regexp.MustCompile(`(?m)^[#\s-]*` + regexp.QuoteMeta(key) + `:`).Match(data) {
				missing = append(missing, key)
			}
			ft := f.Type
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft.PkgPath() == typ.PkgPath() {
				walk(ft)
			}
		}
	}
	walk(reflect.TypeOf(config.Config{}))
	if len(missing) > 0 {
		t.Fatalf("examples/voltar.yaml does not document: %s", strings.Join(missing, ", "))
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	_, err := config.Parse(strings.NewReader("store: /x\nretention_dayz: 7\n"))
	if err == nil || !strings.Contains(err.Error(), "retention_dayz") {
		t.Fatalf("Parse with an unknown key = %v, want an error naming it", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"compression: lz4", "compression \"lz4\""},
		{"compression: gzip\ncompression_level: 12", "gzip takes 1..9"},
		{"concurrency: 0", "concurrency 0"},
		{"excludes: ['[']", "not a valid glob"},
		{"runtime_dir: run", "absolute path"},
		{"volume_excludes: {vol1: ['x']}", "want <vg>/<volume>"},
		{"retention: {keep_last: -1}", "keep_last -1"},
		{"retention: {time_zone: Mars/Olympus}", "time_zone"},
	} {
		c, err := config.Parse(strings.NewReader(tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		err = c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%q) = %v, want error containing %q", tc.yaml, err, tc.want)
		}
	}
	if err := config.Default().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestStoreShortAndLongForm(t *testing.T) {
	c, err := config.Parse(strings.NewReader("store: /srv/b\n"))
	if err != nil || c.Store.Path != "/srv/b" {
		t.Fatalf("short form: %+v, %v", c.Store, err)
	}
	c, err = config.Parse(strings.NewReader("store:\n  path: /srv/b\n  require_mount: /srv\n"))
	if err != nil || c.Store.Path != "/srv/b" || c.Store.RequireMount != "/srv" {
		t.Fatalf("long form: %+v, %v", c.Store, err)
	}
	if _, err := config.Parse(strings.NewReader("store:\n  pth: /srv/b\n")); err == nil || !strings.Contains(err.Error(), "pth") {
		t.Fatalf("unknown store key: %v, want an error naming it", err)
	}
}
