package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Sparse files are written as GNU tar's PAX format 1.0 sparse entries:
//
//	'x' header: GNU.sparse.major=1, GNU.sparse.minor=0, GNU.sparse.name=<name>,
//	            GNU.sparse.realsize=<size>, plus mtime, xattrs, ...
//	'0' header: name ./GNUSparseFile.0/<base>, size = map block + data
//	data:       "<n>\n<off>\n<len>\n..." padded to 512, then the data segments
//
// archive/tar reads this (restore uses it) but drops GNU.sparse.* records
// when writing, so the blocks are encoded here and written to the stream
// under the tar.Writer after tw.Flush, keeping the 512-byte alignment.

// segment is a range of file data; everything between segments is a hole.
type segment struct{ off, len int64 }

func (s segment) end() int64 { return s.off + s.len }

// maxSegments keeps the decimal sparse map well under the 1 MiB that
// archive/tar accepts (up to ~42 bytes per entry).
const maxSegments = 16 << 10

const blockSize = 512

// dataSegments finds the data of a file with SEEK_DATA/SEEK_HOLE. It reports
// sparse=false when the holes would save less than one tar block. Past
// maxSegments, neighbouring segments are merged over ever larger gaps, so a
// badly fragmented file costs zeros in the archive rather than memory.
func dataSegments(fd int, size int64) (segs []segment, sparse bool, err error) {
	var minGap int64
	for off := int64(0); off < size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole from off to the end
		}
		if errors.Is(err, unix.EINVAL) && off == 0 {
			return nil, false, nil // no hole support
		}
		if err != nil {
			return nil, false, fmt.Errorf("seek data at %d: %w", off, err)
		}
		if d >= size {
			break
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return nil, false, fmt.Errorf("seek hole at %d: %w", d, err)
		}
		h = min(h, size)
		if n := len(segs); n > 0 && d-segs[n-1].end() < minGap {
			segs[n-1].len = h - segs[n-1].off
		} else {
			segs = append(segs, segment{d, h - d})
		}
		for len(segs) > maxSegments {
			minGap = max(2*minGap, 64<<10)
			segs = coalesce(segs, minGap)
		}
		off = h
	}
	var data int64
	for _, s := range segs {
		data += s.len
	}
	return segs, size-data >= blockSize, nil
}

// coalesce merges segments separated by less than gap.
func coalesce(segs []segment, gap int64) []segment {
	out := segs[:1]
	for _, s := range segs[1:] {
		last := &out[len(out)-1]
		if s.off-last.end() < gap {
			last.len = s.end() - last.off
		} else {
			out = append(out, s)
		}
	}
	return out
}

// writeSparse writes a regular file as a PAX 1.0 sparse entry.
func (a *archiver) writeSparse(f fdReader, abs string, st *unix.Stat_t, hdr *tar.Header, segs []segment) error {
	if err := a.fillHeader(abs, st, hdr); err != nil {
		return err
	}
	// GNU tar extends the file to its real size by "writing" a final empty
	// segment at the end; without it a trailing hole would be lost.
	entries := segs
	if len(segs) == 0 || segs[len(segs)-1].end() < st.Size {
		entries = append(entries[:len(entries):len(entries)], segment{st.Size, 0})
	}
	var m strings.Builder
	m.WriteString(strconv.Itoa(len(entries)) + "\n")
	var data int64
	for _, s := range entries {
		m.WriteString(strconv.FormatInt(s.off, 10) + "\n" + strconv.FormatInt(s.len, 10) + "\n")
		data += s.len
	}
	mapBlock := pad([]byte(m.String()))

	recs := map[string]string{
		"GNU.sparse.major":    "1",
		"GNU.sparse.minor":    "0",
		"GNU.sparse.name":     hdr.Name,
		"GNU.sparse.realsize": strconv.FormatInt(st.Size, 10),
		"mtime":               formatPAXTime(hdr.ModTime.Unix(), int64(hdr.ModTime.Nanosecond())),
	}
	for k, v := range hdr.PAXRecords {
		recs[k] = v
	}
	size := int64(len(mapBlock)) + data
	blk := ustarBlock{}
	blk.str(0, 100, toASCII("./GNUSparseFile.0/"+path.Base(hdr.Name)))
	blk.num(100, 8, hdr.Mode, "", nil)
	blk.num(108, 8, int64(hdr.Uid), "uid", recs)
	blk.num(116, 8, int64(hdr.Gid), "gid", recs)
	blk.num(124, 12, size, "size", recs)
	blk.num(136, 12, hdr.ModTime.Unix(), "", nil)
	blk[156] = tar.TypeReg
	blk.name(265, 32, hdr.Uname, "uname", recs)
	blk.name(297, 32, hdr.Gname, "gname", recs)

	var pax strings.Builder
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		pax.WriteString(paxRecord(k, recs[k]))
	}
	xblk := ustarBlock{}
	xblk.str(0, 100, toASCII("./PaxHeaders/"+path.Base(hdr.Name)))
	xblk.num(100, 8, 0o644, "", nil)
	xblk.num(124, 12, int64(pax.Len()), "", nil)
	xblk.num(136, 12, hdr.ModTime.Unix(), "", nil)
	xblk[156] = tar.TypeXHeader

	if err := a.tw.Flush(); err != nil {
		return fmt.Errorf("archive %s: %w", abs, err)
	}
	if err := a.index(abs, st, hdr, true); err != nil {
		return err
	}
	for _, b := range [][]byte{xblk.sum(), pad([]byte(pax.String())), blk.sum(), mapBlock} {
		if _, err := a.raw.Write(b); err != nil {
			return fmt.Errorf("archive %s: %w", abs, err)
		}
	}
	for _, s := range segs {
		if err := a.copyData(f, abs, s.off, s.len, a.raw); err != nil {
			return err
		}
	}
	if n := data % blockSize; n != 0 {
		if _, err := a.raw.Write(make([]byte, blockSize-n)); err != nil {
			return fmt.Errorf("archive %s: %w", abs, err)
		}
	}
	a.res.Entries++
	return nil
}

// ustarBlock is a ustar header under construction.
type ustarBlock [blockSize]byte

func (b *ustarBlock) str(off, n int, s string) { copy(b[off:off+n], s) }

// num writes v in octal; when it does not fit, it writes 0 and, if key is
// set, a PAX record instead.
func (b *ustarBlock) num(off, n int, v int64, key string, recs map[string]string) {
	if v >= 0 && v < 1<<(3*(n-1)) {
		copy(b[off:], fmt.Sprintf("%0*o", n-1, v))
		return
	}
	copy(b[off:], strings.Repeat("0", n-1))
	if key != "" {
		recs[key] = strconv.FormatInt(v, 10)
	}
}

// name writes an owner name, or a PAX record when it does not fit ustar.
func (b *ustarBlock) name(off, n int, s, key string, recs map[string]string) {
	if len(s) < n && toASCII(s) == s {
		b.str(off, n, s)
	} else if s != "" {
		recs[key] = s
	}
}

// sum sets magic, version and checksum and returns the block.
func (b *ustarBlock) sum() []byte {
	copy(b[257:], "ustar\x0000")
	copy(b[148:156], "        ")
	var c int64
	for _, x := range b {
		c += int64(x)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", c))
	return b[:]
}

// paxRecord formats "<len> key=value\n", where len counts itself.
func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3
	n += len(strconv.Itoa(n))
	rec := strconv.Itoa(n) + " " + k + "=" + v + "\n"
	if len(rec) != n { // the length gained a digit
		rec = strconv.Itoa(len(rec)) + " " + k + "=" + v + "\n"
	}
	return rec
}

// formatPAXTime formats seconds and nanoseconds as archive/tar does,
// including times before 1970 ("-1.5" is 1.5 s before the epoch).
func formatPAXTime(sec, nsec int64) string {
	if nsec == 0 {
		return strconv.FormatInt(sec, 10)
	}
	sign := ""
	if sec < 0 {
		sign, sec, nsec = "-", -(sec + 1), 1e9-nsec
	}
	return strings.TrimRight(fmt.Sprintf("%s%d.%09d", sign, sec, nsec), "0")
}

func toASCII(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}

// pad extends b with zeros to a multiple of the tar block size.
func pad(b []byte) []byte {
	if n := len(b) % blockSize; n != 0 {
		b = append(b, make([]byte, blockSize-n)...)
	}
	return b
}
