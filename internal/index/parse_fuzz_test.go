package index

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParseFlat checks the hand-written line parser against encoding/json:
// every line it accepts, parsed with the state a reader shares between
// lines (shared strings, checked timestamps), must decode to the same
// entry as encoding/json makes of it.
func FuzzParseFlat(f *testing.F) {
	f.Add([]byte(`{"path":"a","type":"file","size":3,"uname":"x\\\\y","offset":512}` + "\n" +
		`{"path":"b","type":"file","uname":"x\\y","from":"2026-12-05T010000Z","offset":0}`))
	f.Add([]byte(`{"path":"d","type":"dir","mode":493,"mtime":-5,"ino":18446744073709551615,"xattrs":"\u0041"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		flat := &line{seen: map[string]string{}, fromOK: map[string]bool{}}
		for b := range bytes.SplitSeq(in, []byte("\n")) {
			*flat = line{seen: flat.seen, fromOK: flat.fromOK}
			ok, err := parseFlat(b, flat)
			if err != nil || !ok || (flat.Path == nil && flat.PathB64 == nil) {
				continue
			}
			var std line
			if err := json.Unmarshal(b, &std); err != nil {
				t.Fatalf("%q: parsed by hand, refused by encoding/json: %v", b, err)
			}
			e1, err1 := flat.entry()
			e2, err2 := std.entry()
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("%q: by hand %v, encoding/json %v", b, err1, err2)
			}
			if err1 == nil && e1 != e2 {
				t.Fatalf("%q: by hand %+v, encoding/json %+v", b, e1, e2)
			}
		}
	})
}
