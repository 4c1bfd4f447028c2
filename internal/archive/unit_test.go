package archive_test

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"voltar/internal/archive"
)

func TestExcludes(t *testing.T) {
	globs := []string{"*.tmp", ".cache", "var/cache/**", "home/*/tmp", "/srv/x", "build/", "{a,b}.log", "opt/*/**"}
	for _, tc := range []struct {
		rel  string
		dir  bool
		want bool
	}{
		{"lost+found", true, true},
		{"x/lost+found", true, false},
		{"a.tmp", false, true},
		{"deep/er/b.tmp", false, true},
		{"a.tmpx", false, false},
		{"home/u/.cache", true, true},
		{"var/cache/apt", true, true},
		{"var/cache/apt/x/y", false, true},
		{"var/cache", true, false},
		{"opt/x", true, false},
		{"opt/x/y", false, true},
		{"x/var/cache/apt", true, false},
		{"home/alice/tmp", true, true},
		{"home/alice/x/tmp", true, false},
		{"srv/x", false, true},
		{"a/srv/x", false, false},
		{"build", true, true},
		{"src/build", true, true},
		{"build", false, false},
		{"b.log", false, true},
		{"c.log", false, false},
	} {
		got, err := archive.Excluded(globs, tc.rel, tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("excluded(%q, dir=%v) = %v, want %v", tc.rel, tc.dir, got, tc.want)
		}
	}
	for _, bad := range []string{"[", "a/{b", "", "/"} {
		if _, err := archive.Excluded([]string{bad}, "x", false); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func TestACLText(t *testing.T) {
	entry := func(tag, perm uint16, id uint32) []byte {
		b := binary.LittleEndian.AppendUint16(nil, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		return binary.LittleEndian.AppendUint32(b, id)
	}
	acl := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range [][]byte{
		entry(0x01, 6, ^uint32(0)), entry(0x02, 5, 1001), entry(0x04, 4, ^uint32(0)),
		entry(0x08, 7, 4294967294), entry(0x10, 7, ^uint32(0)), entry(0x20, 0, ^uint32(0)),
	} {
		acl = append(acl, e...)
	}
	got, err := archive.ACLText(acl)
	want := "user::rw-\nuser:1001:r-x\ngroup::r--\ngroup:4294967294:rwx\nmask::rwx\nother::---\n"
	if err != nil || got != want {
		t.Errorf("ACLText = %q, %v; want %q", got, err, want)
	}
	for _, bad := range [][]byte{nil, acl[:7], append(binary.LittleEndian.AppendUint32(nil, 1), acl[4:]...),
		append(bytes.Clone(acl[:4]), entry(0x40, 7, 0)...), append(bytes.Clone(acl[:4]), entry(0x01, 8, 0)...)} {
		if _, err := archive.ACLText(bad); err == nil {
			t.Errorf("ACLText(%x) accepted", bad)
		}
	}
}

// The hand-written PAX encoding must read back through archive/tar.
func TestPAXEncoding(t *testing.T) {
	for _, tm := range []time.Time{
		time.Unix(0, 0), time.Unix(1, 1), time.Unix(-1, 500000000), time.Unix(-1234567890, 123456789),
		time.Unix(4102444800, 999999999), time.Unix(1700000000, 100),
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(&tar.Header{Name: "x", ModTime: tm, Format: tar.FormatPAX, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Close()
		hdr, err := tar.NewReader(&buf).Next()
		if err != nil {
			t.Fatal(err)
		}
		got := archive.FormatPAXTime(tm.Unix(), int64(tm.Nanosecond()))
		if want := hdr.PAXRecords["mtime"]; want != "" && got != want {
			t.Errorf("FormatPAXTime(%v) = %q, archive/tar writes %q", tm, got, want)
		}
		if !hdr.ModTime.Equal(tm) {
			t.Errorf("archive/tar round trip of %v gave %v", tm, hdr.ModTime)
		}
	}
	for _, n := range []int{0, 1, 5, 6, 7, 90, 91, 92, 993, 994, 995, 996, 9989, 9990, 9991} {
		rec := archive.PAXRecord("k", string(bytes.Repeat([]byte("v"), n)))
		var size int
		if _, err := fmt.Sscanf(rec, "%d ", &size); err != nil || size != len(rec) {
			t.Errorf("PAXRecord with %d-byte value: %q claims %d, is %d", n, rec[:min(len(rec), 10)], size, len(rec))
		}
	}
}
