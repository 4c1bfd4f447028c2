package disk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
)

// OutsideBlock is the granularity at which bytes outside the filesystems
// are kept or dropped as zero: blocks aligned to it on the volume, cut at
// the edges of the region they lie in.
const OutsideBlock = 4096

// Uncovered returns the parts of [0,size) that no extent of covered
// overlaps, in order.
func Uncovered(size int64, covered []Extent) []Extent {
	cs := append([]Extent(nil), covered...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].Offset < cs[j].Offset })
	var out []Extent
	pos := int64(0)
	for _, c := range cs {
		if c.Offset > pos {
			out = append(out, Extent{Offset: pos, Length: min(c.Offset, size) - pos})
		}
		pos = max(pos, c.End())
		if pos >= size {
			return out
		}
	}
	if pos < size {
		out = append(out, Extent{Offset: pos, Length: size - pos})
	}
	return out
}

// NonZeroRuns reads the regions of r and returns the runs of blocks
// (OutsideBlock-aligned, cut at the regions' edges) that hold a byte other
// than zero, adjacent blocks merged. The bytes of the runs, concatenated in
// order, are all a copy needs: everything else is zero.
func NonZeroRuns(ctx context.Context, r io.ReaderAt, regions []Extent) ([]Extent, error) {
	var runs []Extent
	buf := make([]byte, 1<<20)
	for _, g := range regions {
		for off := g.Offset; off < g.End(); {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			// Read whole blocks, up to the buffer, from an aligned
			// boundary on (the first read may start mid-block).
			n := min(int64(len(buf)), g.End()-off)
			if end := (off + n) / OutsideBlock * OutsideBlock; end > off {
				n = end - off
			}
			b := buf[:n]
			// A short read is an error, EOF included: the regions lie
			// inside the volume, and stale bytes must not pass as its.
			if got, err := r.ReadAt(b, off); got < len(b) {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, fmt.Errorf("read bytes %d-%d: %w", off, off+n, err)
			}
			for i := int64(0); i < n; {
				// The block holding off+i, cut at the read's end.
				j := min(n, (off+i)/OutsideBlock*OutsideBlock+OutsideBlock-off)
				if !bytes.Equal(b[i:j], zeroBlock[:j-i]) {
					if k := len(runs) - 1; k >= 0 && runs[k].End() == off+i {
						runs[k].Length += j - i
					} else {
						runs = append(runs, Extent{Offset: off + i, Length: j - i})
					}
				}
				i = j
			}
			off += n
		}
	}
	return runs, nil
}

// zeroBlock is compared against: bytes.Equal is vectorised, a loop is not.
var zeroBlock = make([]byte, OutsideBlock)

// Skip returns the parts of e that no extent of skip overlaps, in order:
// what a restore may write of a run without touching a fresh table.
func Skip(e Extent, skip []Extent) []Extent {
	var in []Extent
	for _, s := range skip {
		if s.Offset < e.End() && e.Offset < s.End() {
			in = append(in, s)
		}
	}
	var out []Extent
	for _, u := range Uncovered(e.End(), in) {
		if u.End() <= e.Offset {
			continue
		}
		if u.Offset < e.Offset {
			u = Extent{Offset: e.Offset, Length: u.End() - e.Offset}
		}
		out = append(out, u)
	}
	return out
}
