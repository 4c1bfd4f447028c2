package backup

import (
	"context"
	"fmt"
	"io"
	"os"

	"voltar/internal/disk"
	"voltar/internal/layout"
	"voltar/internal/manifest"
	"voltar/internal/objio"
	"voltar/internal/store"
)

// outside stores the volume's bytes that no partition covers and that are
// not zero: LBA 0 with its boot code, the gap before the first partition
// (where GRUB puts core.img on an MBR disk), gaps between and after
// partitions, EBRs, the GPT's headers and arrays. A restore of the
// filesystems alone would lose them, and a BIOS-booted guest with them.
// Every partition is covered already: archived as files or raw, or
// skipped (swap, whose bytes are worth nothing). A volume without a
// table (a whole-disk filesystem) has nothing outside it.
func (r *run) outside(ctx context.Context, parts []part) error {
	if r.m.Table.Type != "mbr" && r.m.Table.Type != "gpt" {
		return nil
	}
	f, err := os.Open(r.snap.Path)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", r.snap.Path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("size of %s: %w", r.snap.Path, err)
	}
	covered := make([]disk.Extent, 0, len(parts))
	for _, p := range parts {
		covered = append(covered, disk.Extent{Offset: p.start, Length: p.size})
	}
	runs, err := disk.NonZeroRuns(ctx, f, disk.Uncovered(size, covered))
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		r.log.Info("nothing but zeros outside the partitions")
		return nil
	}
	o := &manifest.Outside{Archive: r.o.Encoding.Object(layout.Outside, layout.Runs)}
	for _, run := range runs {
		o.Runs = append(o.Runs, manifest.Run{Offset: run.Offset, Length: run.Length})
		o.SourceBytes += run.Length
	}
	w, err := objio.Create(ctx, r.o.Store, r.prefix+o.Archive, r.o.Encoding,
		store.PutOptions{SizeHint: o.SourceBytes + o.SourceBytes/64 + 1<<20})
	if err != nil {
		return err
	}
	for _, run := range runs {
		if _, err = io.Copy(w, ctxReader{ctx, io.NewSectionReader(f, run.Offset, run.Length)}); err != nil {
			if serr := w.Abort(err); serr != nil {
				return serr
			}
			return fmt.Errorf("copy bytes %d-%d: %w", run.Offset, run.End(), err)
		}
	}
	sum, err := w.Commit()
	if err != nil {
		return err
	}
	o.StoredBytes, o.SHA256 = sum.Bytes, sum.SHA256
	r.m.Outside = o
	r.log.Info("stored the bytes outside the partitions", "object", o.Archive, "runs", len(runs), "source_bytes", o.SourceBytes, "stored_bytes", sum.Bytes)
	return nil
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
