package restore

import (
	"context"
	"errors"
	"fmt"
	"io"

	"voltar/internal/catalog"
	"voltar/internal/crypt"
	"voltar/internal/disk"
	"voltar/internal/objio"
	"voltar/internal/store"
	"voltar/internal/verify"
)

// writeOutside writes the bytes that lay outside the filesystems (boot
// code, the gaps around the partitions) back to where they were, around
// the table just written: what the new table occupies (MBR entries and
// signatures, EBRs, GPT headers and arrays, read back from the target) is
// left as sfdisk made it, so the table stays the restore's. The boot code
// in LBA 0 and GRUB's core.img in the gap are the old ones. It runs
// before any filesystem is made, which then overwrite nothing of it.
func writeOutside(ctx context.Context, st store.Store, b *catalog.Backup, t *volTarget, p *volPlan, sums catalog.Sums, ids *crypt.Identities) (FSResult, error) {
	o := b.Manifest.Outside
	entry := o.Entry()
	fr := FSResult{Name: entry.Name, Archive: o.Archive}
	partial := func(err error) error {
		return &PartialError{Archive: o.Archive, Bytes: fr.Bytes, Err: err}
	}
	var keep []disk.Extent
	if p.table.Type == "mbr" || p.table.Type == "gpt" {
		nt, err := disk.ReadTable(t.f, p.size)
		if err != nil {
			return fr, fmt.Errorf("read back the partition table just written to %s: %w", t.path, err)
		}
		keep = nt.Structures
	}
	if ot := p.table; ot.Type == "gpt" && ot.LastLBA > 0 {
		// The source's backup GPT: on a larger target, or one with
		// other sectors, it would be a stale header inside the disk.
		if tail := int64(ot.LastLBA+1) * tableSector(ot); tail < p.size {
			keep = append(keep, disk.Extent{Offset: tail, Length: p.size - tail})
		}
	}
	stream, err := objio.Open(ctx, st, b.Key(o.Archive), ids)
	if err != nil {
		return fr, fmt.Errorf("%s: %w", o.Archive, err)
	}
	defer stream.Close()
	// A read that fails on damaged data says so, not only "unexpected EOF".
	damaged := func(rerr error) error {
		d, _ := stream.Finish()
		if msg := verify.DigestMismatch(d, entry, sums); msg != "" {
			rerr = fmt.Errorf("%w: %s (%v)", ErrChecksum, msg, rerr)
		}
		return partial(rerr)
	}
	buf := make([]byte, 1<<20)
	for _, run := range o.Runs {
		for done := int64(0); done < run.Length; {
			if err := ctx.Err(); err != nil {
				return fr, partial(err)
			}
			n := min(int64(len(buf)), run.Length-done)
			if _, err := io.ReadFull(stream.Data, buf[:n]); err != nil {
				return fr, damaged(fmt.Errorf("%s ends before its runs: %w", o.Archive, err))
			}
			e := disk.Extent{Offset: run.Offset + done, Length: n}
			for _, w := range disk.Skip(e, keep) {
				if _, err := t.f.WriteAt(buf[w.Offset-e.Offset:w.End()-e.Offset], w.Offset); err != nil {
					return fr, partial(fmt.Errorf("write %s at %d: %w", t.path, w.Offset, err))
				}
			}
			done += n
			fr.Bytes += n
		}
	}
	if n, err := io.Copy(io.Discard, stream.Data); err != nil || n > 0 {
		if err == nil {
			err = errors.New(o.Archive + " holds more bytes than its runs")
		}
		return fr, damaged(err)
	}
	d, err := stream.Finish()
	fr.SHA256 = d.SHA256
	if msg := verify.DigestMismatch(d, entry, sums); msg != "" {
		return fr, partial(fmt.Errorf("%w: %s", ErrChecksum, msg))
	}
	if err != nil {
		return fr, partial(err)
	}
	fr.Verified = true
	return fr, nil
}
