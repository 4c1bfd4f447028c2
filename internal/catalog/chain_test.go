package catalog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/layout"
	"voltar/internal/store/local"
)

// list shows each backup's level and what it builds on, in text and JSON,
// and says when an increment's chain is broken: a damaged link, a missing
// one (with every increment behind it), a parent rewritten since.
func TestListChains(t *testing.T) {
	ctx := context.Background()
	st := local.New(t.TempDir())
	day := func(d int) time.Time { return t0.Add(time.Duration(d) * 24 * time.Hour) }
	var good, damaged, missing, changed []catalogtest.Folder
	for d := range 3 {
		good = append(good, folder(t, "h", "vg", "good", day(d)))
		damaged = append(damaged, folder(t, "h", "vg", "damaged", day(d)))
		missing = append(missing, folder(t, "h", "vg", "missing", day(d)))
	}
	missing = append(missing, folder(t, "h", "vg", "missing", day(3)))
	changed = append(changed, folder(t, "h", "vg", "changed", day(0)), folder(t, "h", "vg", "changed", day(1)))
	catalogtest.WriteChain(t, st, good...)
	catalogtest.WriteChain(t, st, damaged...)
	catalogtest.WriteChain(t, st, missing...)
	ms := catalogtest.WriteChain(t, st, changed...)
	putObject(t, st, damaged[1].Prefix()+layout.Manifest, []byte("{"))
	for _, o := range []string{layout.Manifest, layout.ManifestSum, layout.Sums, "fs.tar.zst"} {
		if err := st.Delete(ctx, missing[1].Prefix()+o); err != nil {
			t.Fatal(err)
		}
	}
	ms[0].Version = "rewritten"
	catalogtest.PutManifest(t, st, changed[0].Prefix(), ms[0])

	cat, err := catalog.List(ctx, st, "h", "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]catalog.Backup{}
	for _, b := range cat.Backups {
		got[b.ID] = b
	}
	id := func(f catalogtest.Folder) string { return layout.ID(f.Group, f.Volume, f.Time) }
	for _, tc := range []struct {
		f            catalogtest.Folder
		kind         string
		level        int
		parent, full string
		broken       string
	}{
		{f: good[0], kind: "full"},
		{f: good[1], kind: "incremental", level: 1, parent: id(good[0]), full: id(good[0])},
		{f: good[2], kind: "incremental", level: 2, parent: id(good[1]), full: id(good[0])},
		{f: damaged[2], kind: "incremental", level: 2, parent: id(damaged[1]), full: id(damaged[0]),
			broken: "parent " + id(damaged[1]) + " is damaged"},
		{f: missing[2], kind: "incremental", level: 2, parent: id(missing[1]), full: id(missing[0]),
			broken: "parent " + id(missing[1]) + " is missing"},
		{f: missing[3], kind: "incremental", level: 3, parent: id(missing[2]), full: id(missing[0]),
			broken: "ancestor " + id(missing[1]) + " is missing"},
		{f: changed[1], kind: "incremental", level: 1, parent: id(changed[0]), full: id(changed[0]),
			broken: "parent " + id(changed[0]) + " is not the backup it was made on (its manifest.json changed)"},
	} {
		b, ok := got[id(tc.f)]
		if !ok {
			t.Errorf("%s not listed", id(tc.f))
			continue
		}
		if b.Kind != tc.kind || b.Level != tc.level || b.Parent != tc.parent || b.Full != tc.full || b.ChainBroken != tc.broken {
			t.Errorf("%s: kind %q level %d parent %q full %q broken %q;\nwant %q %d %q %q %q", b.ID,
				b.Kind, b.Level, b.Parent, b.Full, b.ChainBroken, tc.kind, tc.level, tc.parent, tc.full, tc.broken)
		}
	}

	var text bytes.Buffer
	if err := cat.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	ts := func(f catalogtest.Folder) string { return f.Time.Format(layout.TimeFormat) }
	for _, want := range []string{
		"LEVEL", "CHAIN",
		id(good[0]) + " .* full .* -\n",
		id(good[1]) + " .* incr 1 .* on full " + ts(good[0]) + "\n",
		id(good[2]) + " .* incr 2 .* on " + ts(good[1]) + " \\(full " + ts(good[0]) + "\\)\n",
		id(missing[3]) + " .* incr 3 .*, BROKEN: ancestor " + id(missing[1]) + " is missing\n",
	} {
		if !regexp.MustCompile(want).MatchString(text.String()) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}

	js, err := json.Marshal(cat)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"full","level":0`, `"kind":"incremental","level":2,"parent":"` + id(good[1]) + `","full":"` + id(good[0]) + `"`,
		`"chain_broken":"parent ` + id(damaged[1]) + ` is damaged"`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
}
