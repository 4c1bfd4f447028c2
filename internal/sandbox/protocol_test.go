package sandbox

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"voltar/internal/archive"
	"voltar/internal/index"
)

// stream builds a guest stream with the real writer; edit changes its
// bytes afterwards.
func stream(t testing.TB, recs func(fw *frameWriter)) []byte {
	var b bytes.Buffer
	fw := newFrameWriter(&b)
	recs(fw)
	if err := fw.flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func goodResult(tarBytes int64) []byte {
	raw, _ := json.Marshal(Result{Archive: archive.Result{Entries: 1, Files: 1, Inodes: 1}, Statfs: &Statfs{Files: 10, Ffree: 9}, TarBytes: tarBytes})
	return raw
}

// oneFile is a tar stream of one empty file: 1536 bytes.
func oneFile() []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "./f", Mode: 0o644, Typeflag: tar.TypeReg})
	tw.Close()
	return b.Bytes()
}

func good(fw *frameWriter) {
	tarWriter{fw}.Write(oneFile())
	var p [16]byte
	binary.BigEndian.PutUint64(p[:], 100)
	fw.record(RecProgress, p[:])
	raw, _ := json.Marshal(logRecord{Msg: "socket skipped", Attrs: "path=run/x.sock"})
	fw.record(RecLog, raw)
	fw.record(RecResult, goodResult(1536))
}

func read(b []byte, cfg Config) (Result, []byte, error) {
	var out bytes.Buffer
	res, err := readStream(bytes.NewReader(b), &out, cfg, nil, nil)
	return res, out.Bytes(), err
}

func TestStreamGood(t *testing.T) {
	var got []archive.Progress
	res, tar, err := read(stream(t, good), Config{FSType: "ext4", Progress: func(p archive.Progress) { got = append(got, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(tar) != 1536 || res.TarBytes != 1536 || res.Statfs.Files != 10 || len(got) != 1 || got[0].Bytes != 100 {
		t.Errorf("tar %d bytes, result %+v, progress %+v", len(tar), res, got)
	}
}

func TestStreamMalformed(t *testing.T) {
	s := stream(t, good)
	hdr := len(magic) + 1
	record := func(typ byte, payload []byte) func(*frameWriter) {
		return func(fw *frameWriter) { fw.record(typ, payload) }
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrNoResult},
		{"bad magic", append([]byte("VOLTARSX\x01"), s[hdr:]...), ErrMalformed},
		{"bad version", append([]byte(magic+"\x02"), s[hdr:]...), ErrMalformed},
		{"flipped payload byte", func() []byte { c := bytes.Clone(s); c[hdr+5+100] ^= 1; return c }(), ErrMalformed},
		{"cut in a record", s[:hdr+5+700], ErrNoResult},
		{"no result", stream(t, func(fw *frameWriter) { tarWriter{fw}.Write(make([]byte, 512)) }), ErrNoResult},
		{"data after the result", append(bytes.Clone(s), 'T'), ErrMalformed},
		{"unknown type", stream(t, record('X', nil)), ErrMalformed},
		{"oversized tar record", func() []byte {
			c := stream(t, record(RecTar, nil))
			binary.BigEndian.PutUint32(c[hdr+1:], maxData+1)
			return c
		}(), ErrMalformed},
		{"short progress", stream(t, record(RecProgress, make([]byte, 8))), ErrMalformed},
		{"index without a consumer", stream(t, record(RecIndex, []byte("{}"))), ErrMalformed},
		{"too many logs", stream(t, func(fw *frameWriter) {
			for range maxLogs + 1 {
				fw.record(RecLog, []byte(`{"msg":"x","attrs":""}`))
			}
		}), ErrMalformed},
		{"log not JSON", stream(t, record(RecLog, []byte("x"))), ErrMalformed},
		{"result with an unknown field", stream(t, record(RecResult, []byte(`{"tar_bytes":0,"root":true}`))), ErrMalformed},
		{"result: tar bytes disagree", stream(t, func(fw *frameWriter) {
			tarWriter{fw}.Write(make([]byte, 1024))
			fw.record(RecResult, goodResult(512))
		}), ErrMalformed},
		{"result: no tar at all", stream(t, record(RecResult, goodResult(0))), ErrMalformed},
		{"result: tar not in blocks", stream(t, func(fw *frameWriter) {
			tarWriter{fw}.Write(make([]byte, 1000))
			fw.record(RecResult, goodResult(1000))
		}), ErrMalformed},
		{"result: negative counts", stream(t, func(fw *frameWriter) {
			tarWriter{fw}.Write(make([]byte, 1024))
			fw.record(RecResult, []byte(`{"archive":{"SourceBytes":-1,"Entries":1},"statfs":{},"tar_bytes":1024}`))
		}), ErrMalformed},
		{"not tar", stream(t, func(fw *frameWriter) {
			junk := bytes.Repeat([]byte("junk"), 384)
			tarWriter{fw}.Write(junk)
			fw.record(RecResult, goodResult(int64(len(junk))))
		}), ErrMalformed},
		{"fewer entries than the result says", stream(t, func(fw *frameWriter) {
			tarWriter{fw}.Write(make([]byte, 1536))
			fw.record(RecResult, goodResult(1536))
		}), ErrMalformed},
		{"result: error without a kind", stream(t, record(RecResult, []byte(`{"error":{"kind":"","message":"x"},"tar_bytes":0}`))), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := read(tc.b, Config{FSType: "ext4"})
			if !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
		})
	}
}

// A guest's error comes back typed, its message made printable.
func TestStreamGuestError(t *testing.T) {
	b := stream(t, func(fw *frameWriter) {
		fw.record(RecResult, []byte(`{"error":{"kind":"encrypted","message":"fscrypt\u001b[31m"},"tar_bytes":0}`))
	})
	res, _, err := read(b, Config{FSType: "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Error, archive.ErrEncrypted) || strings.ContainsRune(res.Error.Message, 0x1b) {
		t.Errorf("error %#v", res.Error)
	}
}

// A write error of the consumer stops nothing early: the stream is read
// to its end (the guest never blocks on a full pipe) and the error returned.
func TestStreamWriteError(t *testing.T) {
	boom := errors.New("store full")
	_, err := readStream(bytes.NewReader(stream(t, good)), failWriter{boom}, Config{FSType: "ext4"}, nil, nil)
	if !errors.Is(err, boom) {
		t.Errorf("err %v, want %v", err, boom)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func FuzzReadStream(f *testing.F) {
	f.Add(stream(f, good))
	f.Add([]byte(magic + "\x01R\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		readStream(bytes.NewReader(b), io.Discard, Config{FSType: "btrfs"}, nil, nil)
	})
}

// The file index's entries come back checked, in order, one per tar entry.
func TestStreamIndex(t *testing.T) {
	entry := []byte(`{"path":"f","type":"file","size":0,"mode":420,"uid":0,"gid":0,"mtime":0,"ctime":0,"ino":12,"offset":0}` + "\n")
	withIndex := func(lines ...[]byte) func(*frameWriter) {
		return func(fw *frameWriter) {
			tarWriter{fw}.Write(oneFile())
			for _, l := range lines {
				fw.record(RecIndex, l)
			}
			fw.record(RecResult, goodResult(1536))
		}
	}
	var got []index.Entry
	cfg := Config{FSType: "ext4", Index: func(e *index.Entry) error { got = append(got, *e); return nil }}
	if _, _, err := read(stream(t, withIndex(entry)), cfg); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Path != "f" || got[0].Ino != 12 {
		t.Errorf("index entries %+v", got)
	}
	for name, lines := range map[string][][]byte{
		"escaping path":     {bytes.Replace(entry, []byte(`"f"`), []byte(`"../f"`), 1)},
		"partial line":      {entry[:40]},
		"not an entry":      {[]byte("{\"end\":{}}\n")},
		"none":              nil,
		"more than tar":     {entry, bytes.Replace(entry, []byte(`"offset":0`), []byte(`"offset":512`), 1)},
		"unaligned":         {bytes.Replace(entry, []byte(`"offset":0`), []byte(`"offset":7`), 1)},
		"unknown type":      {bytes.Replace(entry, []byte(`"file"`), []byte(`"door"`), 1)},
		"mode out of range": {bytes.Replace(entry, []byte(`"mode":420`), []byte(`"mode":99999`), 1)},
	} {
		if _, _, err := read(stream(t, withIndex(lines...)), cfg); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// Time the host spends writing (a slow store) does not count as the
// guest's silence.
func TestIdleNotWhileWriting(t *testing.T) {
	var a activity
	a.last.Store(time.Now().Add(-time.Hour).UnixNano())
	a.writing.Store(true)
	if a.idleFor(time.Minute) {
		t.Error("idle while the host writes")
	}
	a.writing.Store(false)
	if !a.idleFor(time.Minute) {
		t.Error("not idle after an hour of silence")
	}
	a.mark()
	if a.idleFor(time.Minute) {
		t.Error("idle right after a record")
	}
}
