package codec

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestFrames checks that every recorded frame decodes alone to its part
// of the input, that its hash is of its stored bytes, that the seek table
// at the end lists the same frames, and that zstd -d still reads the
// whole stream. Level 9 is compressed by klauspost/compress in every
// build; the default level by libzstd in a cgo build (see
// newFrameEncoder).
func TestFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	in := make([]byte, 3*FrameSize+12345)
	for i := range in {
		if i%3 == 0 {
			in[i] = byte(rng.IntN(256))
		}
	}
	for _, tc := range []struct {
		c     string
		level int
	}{{Zstd, 0}, {Zstd, 9}, {None, 0}} {
		c := tc.c
		t.Run(fmt.Sprintf("%s-%d", c, tc.level), func(t *testing.T) {
			var out bytes.Buffer
			w, err := NewWriter(&out, c, tc.level, 2)
			if err != nil {
				t.Fatal(err)
			}
			for p := in; len(p) > 0; {
				k := min(len(p), 100000)
				if _, err := w.Write(p[:k]); err != nil {
					t.Fatal(err)
				}
				p = p[k:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			frames := w.(Framer).Frames()
			if len(frames) != 4 {
				t.Fatalf("%d frames, want 4", len(frames))
			}
			dec, _ := zstd.NewReader(nil)
			defer dec.Close()
			stored := out.Bytes()
			var u int64
			for i, f := range frames {
				if f.UOff != u {
					t.Fatalf("frame %d at %d, want %d", i, f.UOff, u)
				}
				u += f.USize
				b := stored[f.COff : f.COff+f.CSize]
				if sha256.Sum256(b) != f.SHA256 {
					t.Fatalf("frame %d: hash is not of its stored bytes", i)
				}
				if c == Zstd {
					// Frame_Header_Descriptor: no Content_Checksum_flag.
					if b[4]&4 != 0 {
						t.Fatalf("frame %d has a content checksum", i)
					}
					if b, err = dec.DecodeAll(b, nil); err != nil {
						t.Fatalf("frame %d alone: %v", i, err)
					}
				}
				if !bytes.Equal(b, in[f.UOff:f.UOff+f.USize]) {
					t.Fatalf("frame %d does not decode to its part of the input", i)
				}
			}
			if u != int64(len(in)) {
				t.Fatalf("frames cover %d bytes, want %d", u, len(in))
			}
			if c != Zstd {
				if !bytes.Equal(stored, in) {
					t.Fatal("uncompressed stream differs from its input")
				}
				return
			}
			table, err := ParseSeekTable(stored)
			if err != nil {
				t.Fatal(err)
			}
			last := frames[len(frames)-1]
			if int64(len(stored)) != last.COff+last.CSize+SeekTableSize(len(frames)) {
				t.Fatalf("stream is %d bytes, frames and seek table %d", len(stored), last.COff+last.CSize+SeekTableSize(len(frames)))
			}
			for i := range table {
				g, w := table[i], frames[i]
				if g.COff != w.COff || g.CSize != w.CSize || g.UOff != w.UOff || g.USize != w.USize {
					t.Fatalf("seek table frame %d = %+v, want %+v", i, g, w)
				}
			}
			r, err := NewReader(bytes.NewReader(stored), Zstd)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("stream with seek table reads back wrong: %v", err)
			}
			if _, err := exec.LookPath("zstd"); err == nil {
				cmd := exec.Command("zstd", "-d", "-c")
				cmd.Stdin = bytes.NewReader(stored)
				got, err := cmd.Output()
				if err != nil || !bytes.Equal(got, in) {
					t.Fatalf("zstd -d of the stream: %v", err)
				}
			} else {
				t.Log("zstd not installed; skipped zstd -d")
			}
		})
	}
}

func TestParseSeekTableRejects(t *testing.T) {
	good := seekTable([]Frame{{CSize: 10, USize: 20}, {CSize: 5, USize: 7}})
	if _, err := ParseSeekTable(good); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"short":      good[:10],
		"magic":      append(append([]byte{}, good[:len(good)-1]...), 0),
		"count":      func() []byte { b := append([]byte{}, good...); b[len(b)-9] = 200; return b }(),
		"skip magic": func() []byte { b := append([]byte{}, good...); b[0] ^= 1; return b }(),
	} {
		if _, err := ParseSeekTable(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
