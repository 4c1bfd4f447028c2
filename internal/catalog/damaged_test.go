package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/fail"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/store"
	"voltar/internal/store/local"
)

// readObject returns an object's bytes.
func readObject(t *testing.T, st store.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The ways a manifest.json that is there can be unusable. Each makes the
// folder damaged: not a backup, not merely incomplete, and a stop for
// "latest".
var damages = map[string]func(t *testing.T, st store.Store, prefix string){
	"byte 0 flipped": func(t *testing.T, st store.Store, prefix string) {
		b := readObject(t, st, prefix+layout.Manifest)
		b[0] ^= 0xff
		putObject(t, st, prefix+layout.Manifest, b)
	},
	"value edited, checksum not": func(t *testing.T, st store.Store, prefix string) {
		b := readObject(t, st, prefix+layout.Manifest)
		putObject(t, st, prefix+layout.Manifest, bytes.Replace(b, []byte(`"status": "complete"`), []byte(`"status": "partial"`), 1))
	},
	"name escapes, checksum rewritten": func(t *testing.T, st store.Store, prefix string) {
		b := readObject(t, st, prefix+layout.Manifest)
		b = bytes.Replace(b, []byte(`"name": "fs"`), []byte(`"name": "../../escaped-fs"`), 1)
		putObject(t, st, prefix+layout.ManifestSum, manifest.ChecksumFile(b))
		putObject(t, st, prefix+layout.Manifest, b)
	},
	"checksum file garbled": func(t *testing.T, st store.Store, prefix string) {
		putObject(t, st, prefix+layout.ManifestSum, []byte("not a checksum\n"))
	},
}

func putObject(t *testing.T, st store.Store, key string, b []byte) {
	t.Helper()
	if _, err := st.Put(context.Background(), key, bytes.NewReader(b), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedManifest(t *testing.T) {
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			st := local.New(t.TempDir())
			ctx := context.Background()
			older := folder(t, "h", "vg", "v", t0)
			newest := folder(t, "h", "vg", "v", t0.Add(time.Hour))
			catalogtest.Write(t, st, older)
			catalogtest.Write(t, st, newest)
			damage(t, st, newest.Prefix())

			cat, err := catalog.List(ctx, st, "h", "")
			if err != nil {
				t.Fatal(err)
			}
			if len(cat.Backups) != 1 || len(cat.Damaged()) != 1 || cat.Damaged()[0].ID != "vg/v/2026-11-25T023000Z" {
				t.Fatalf("catalog: backups %+v, damaged %+v", cat.Backups, cat.Damaged())
			}
			var text strings.Builder
			cat.WriteText(&text)
			if !strings.Contains(text.String(), "DAMAGED") || strings.Contains(text.String(), "INCOMPLETE") {
				t.Errorf("list shows the folder as something other than damaged:\n%s", text.String())
			}

			// latest stops at the damaged folder instead of falling back.
			for _, id := range []string{"vg/v/latest", "vg/v/2026-11-25T023000Z"} {
				b, err := catalog.Resolve(ctx, st, "h", id)
				var de *catalog.DamagedError
				if !errors.As(err, &de) || b != nil || fail.IsUsage(err) {
					t.Fatalf("Resolve(%s) = %v, %v; want a *DamagedError", id, b, err)
				}
				if !strings.Contains(err.Error(), "h/vg/v/2026-11-25T023000Z") || len(fail.Hints(err)) == 0 {
					t.Errorf("Resolve(%s): %v (hints %q): want the folder named and a hint", id, err, fail.Hints(err))
				}
			}
			if _, err := catalog.Resolve(ctx, st, "h", "vg/v/2026-11-25T013000Z"); err != nil {
				t.Errorf("the older backup, named: %v", err)
			}
		})
	}
}

// A manifest without manifest.json.sha256 (an older voltar's) still reads.
func TestManifestWithoutChecksum(t *testing.T) {
	st := local.New(t.TempDir())
	f := folder(t, "h", "vg", "v", t0)
	catalogtest.Write(t, st, f)
	if err := st.Delete(context.Background(), f.Prefix()+layout.ManifestSum); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Resolve(context.Background(), st, "h", "vg/v/latest"); err != nil {
		t.Fatal(err)
	}
}
