package verify

import (
	"fmt"
	"io"

	"voltar/internal/units"
)

// WriteText prints results for humans, one line per backup and one per
// problem (and hint) or note, then a summary line:
//
//	ok      vg/volume-1/2026-11-25T013000Z  2 objects, 1.2 GiB, 120345 files
//	FAILED  vg/volume-2/2026-11-25T013000Z
//	        p1.tar.zst: sha256 is 3f2a..., SHA256SUMS and manifest.json say 9b1c...
//	ok      vg/volume-3/2026-11-25T013000Z  1 objects, 1.0 GiB, content not checked
//	        note: p1.tar.zst.age: content not checked: encrypted, and no identity ...
//	verified 3 backups: 2 ok, 1 failed; 1 with content not checked (encrypted, no identity configured)
func WriteText(w io.Writer, results []Result) error {
	failed, unchecked := 0, 0
	for _, r := range results {
		if r.ContentNotChecked() {
			unchecked++
		}
		if r.OK {
			var stored, files int64
			for _, o := range r.Objects {
				stored += o.StoredBytes
				files += o.Files
			}
			what := fmt.Sprintf("%d files", files)
			if r.ContentNotChecked() {
				what = "content not checked"
			}
			if _, err := fmt.Fprintf(w, "ok      %s  %d objects, %s, %s\n", r.ID, len(r.Objects), units.Bytes(stored), what); err != nil {
				return err
			}
		} else {
			failed++
			fmt.Fprintf(w, "FAILED  %s\n", r.ID)
			for _, p := range r.Problems {
				fmt.Fprintf(w, "        %s\n", p)
				if p.Hint != "" {
					fmt.Fprintf(w, "        hint: %s\n", p.Hint)
				}
			}
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "        note: %s\n", n)
		}
	}
	summary := fmt.Sprintf("verified %d backups: %d ok, %d failed", len(results), len(results)-failed, failed)
	if unchecked > 0 {
		summary += fmt.Sprintf("; %d with content not checked (encrypted, no identity configured)", unchecked)
	}
	_, err := fmt.Fprintln(w, summary)
	return err
}

// Failed counts the results with problems; the CLI exits 1 when it is not 0.
func Failed(results []Result) int {
	n := 0
	for _, r := range results {
		if !r.OK {
			n++
		}
	}
	return n
}
