package manifest_test

import (
	"errors"
	"strings"
	"testing"

	"voltar/internal/manifest"
)

// valid is a manifest as the backup writer makes it.
func valid() *manifest.Manifest {
	return &manifest.Manifest{
		Schema: 1, Tool: "voltar", Host: "node-1", ID: "vg0/volume-1/2026-11-25T013000Z",
		Volume: manifest.Volume{Kind: "lvm", Name: "volume-1", Group: "vg0", Size: 1 << 20},
		Table: manifest.Table{Type: "mbr", Partitions: []manifest.Partition{
			{Number: 1, Type: "0x83"}, {Number: 2, Type: "0x07"}, {Number: 3, Type: "0x82"},
		}},
		Filesystems: []manifest.Filesystem{
			{Name: "p1", Partition: 1, Mode: manifest.ModeFiles, Archive: "p1.tar.zst"},
			{Name: "p2", Partition: 2, Mode: manifest.ModeRaw, Archive: "p2.raw.zst"},
			{Name: "p3", Partition: 3, Mode: manifest.ModeSkipped},
		},
		Compression: "zstd", Status: manifest.StatusComplete,
	}
}

// outside is an outside object of two runs on a 1 MiB volume.
func outside() *manifest.Outside {
	return &manifest.Outside{Archive: "outside.runs.zst", SourceBytes: 4096 + 512,
		Runs: []manifest.Run{{Offset: 0, Length: 4096}, {Offset: 8192, Length: 512}}}
}

func TestValidateAccepts(t *testing.T) {
	for name, edit := range map[string]func(m *manifest.Manifest){
		"as written": func(m *manifest.Manifest) {},
		"gzip":       func(m *manifest.Manifest) { m.Filesystems[0].Archive = "p1.tar.gz" },
		"none":       func(m *manifest.Manifest) { m.Filesystems[0].Archive = "p1.tar"; m.Filesystems[1].Archive = "p2.raw" },
		"encrypted": func(m *manifest.Manifest) {
			m.Encryption = &manifest.Encryption{Method: "age"}
			m.Filesystems[0].Archive += ".age"
			m.Filesystems[1].Archive += ".age"
		},
		"whole disk": func(m *manifest.Manifest) {
			m.Table = manifest.Table{Type: "none"}
			m.Filesystems = []manifest.Filesystem{{Name: "fs", Mode: manifest.ModeFiles, Archive: "fs.tar.zst"}}
		},
		"partition 12": func(m *manifest.Manifest) {
			m.Table.Partitions[0].Number = 12
			m.Filesystems[0] = manifest.Filesystem{Name: "p12", Partition: 12, Mode: manifest.ModeFiles, Archive: "p12.tar.zst"}
		},
		"dump": func(m *manifest.Manifest) {
			m.Volume = manifest.Volume{Kind: "dump", Name: "db", Group: "dumps"}
			m.ID = "dumps/db/2026-11-25T013000Z"
			m.Table = manifest.Table{Type: "none"}
			m.Filesystems = []manifest.Filesystem{{Name: "dump", Mode: manifest.ModeDump, Archive: "dump.sql.zst"}}
		},
		"image with spaces": func(m *manifest.Manifest) { m.ID = "image/my disk.img/2026-11-25T013000Z" },
		"outside":           func(m *manifest.Manifest) { m.Outside = outside() },
		"outside encrypted": func(m *manifest.Manifest) {
			m.Encryption = &manifest.Encryption{Method: "age"}
			m.Filesystems[0].Archive += ".age"
			m.Filesystems[1].Archive += ".age"
			m.Outside = outside()
			m.Outside.Archive += ".age"
		},
	} {
		m := valid()
		edit(m)
		if err := m.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(m *manifest.Manifest)
		want string
	}{
		"name escapes":           {func(m *manifest.Manifest) { m.Filesystems[0].Name = "../../escaped-p1" }, "want p<N>"},
		"long escape":            {func(m *manifest.Manifest) { m.Filesystems[0].Name = "../../../../../tmp/x/escaped" }, "want p<N>"},
		"absolute name":          {func(m *manifest.Manifest) { m.Filesystems[0].Name = "/tmp/escaped" }, "want p<N>"},
		"archive escapes":        {func(m *manifest.Manifest) { m.Filesystems[0].Archive = "../../p1.tar.zst" }, "want p1.tar"},
		"archive of another":     {func(m *manifest.Manifest) { m.Filesystems[0].Archive = "p2.raw.zst" }, "want p1.tar"},
		"archive with slash":     {func(m *manifest.Manifest) { m.Filesystems[0].Archive = "p1.tar.zst/x" }, "want p1.tar"},
		"age without encryption": {func(m *manifest.Manifest) { m.Filesystems[0].Archive = "p1.tar.zst.age" }, "want p1.tar"},
		"encryption without age": {func(m *manifest.Manifest) { m.Encryption = &manifest.Encryption{Method: "age"} }, "p1.tar[.zst|.gz].age"},
		"skipped with archive":   {func(m *manifest.Manifest) { m.Filesystems[2].Archive = "p3.tar.zst" }, "stores no archive"},
		"leading zero":           {func(m *manifest.Manifest) { m.Filesystems[0].Name = "p01" }, "leading zeros"},
		"p0":                     {func(m *manifest.Manifest) { m.Filesystems[0].Name = "p0" }, "leading zeros"},
		"wrong partition":        {func(m *manifest.Manifest) { m.Filesystems[0].Partition = 2 }, "records partition 2"},
		"fs with a table":        {func(m *manifest.Manifest) { m.Filesystems[0].Name = "fs" }, "partition table type none"},
		"duplicate":              {func(m *manifest.Manifest) { m.Filesystems[1] = m.Filesystems[0] }, "used twice"},
		"unknown mode":           {func(m *manifest.Manifest) { m.Filesystems[0].Mode = "magic" }, "mode \"magic\""},
		"host escapes":           {func(m *manifest.Manifest) { m.Host = "../../evil" }, "host"},
		"host with slash":        {func(m *manifest.Manifest) { m.Host = "a/b" }, "host"},
		"id escapes":             {func(m *manifest.Manifest) { m.ID = "../../x/2026-11-25T013000Z" }, "id"},
		"id too long":            {func(m *manifest.Manifest) { m.ID = "a/b/c/2026-11-25T013000Z" }, "id"},
		"uuid with options":      {func(m *manifest.Manifest) { m.Filesystems[0].UUID = "0123,crc=0" }, "uuid"},
		"sfdisk line injection":  {func(m *manifest.Manifest) { m.Table.DiskID = "0x1\nlabel: gpt" }, "control"},
		"outside named as raw":   {func(m *manifest.Manifest) { m.Outside = outside(); m.Outside.Archive = "outside.raw.zst" }, "want outside.runs"},
		"outside escapes":        {func(m *manifest.Manifest) { m.Outside = outside(); m.Outside.Archive = "../outside.runs.zst" }, "want outside.runs"},
		"outside unencrypted": {func(m *manifest.Manifest) {
			m.Encryption = &manifest.Encryption{Method: "age"}
			m.Outside = outside()
		}, "outside: archive"},
		"runs overlap": {func(m *manifest.Manifest) {
			m.Outside = outside()
			m.Outside.Runs[1].Offset = 100
		}, "disjoint"},
		"run past the end": {func(m *manifest.Manifest) {
			m.Outside = outside()
			m.Outside.Runs[1].Offset = 1<<20 - 10
		}, "past the volume"},
		"runs miscounted": {func(m *manifest.Manifest) { m.Outside = outside(); m.Outside.SourceBytes = 1 }, "source_bytes"},
		"no runs": {func(m *manifest.Manifest) {
			m.Outside = outside()
			m.Outside.Runs, m.Outside.SourceBytes = nil, 0
		}, "no runs"},
	} {
		m := valid()
		tc.edit(m)
		err := m.Validate()
		var ie *manifest.InvalidError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an *InvalidError saying %q", name, err, tc.want)
		}
	}
}

func TestDecodeValidates(t *testing.T) {
	var buf strings.Builder
	m := valid()
	m.Filesystems[0].Name = "../../escaped-p1"
	if err := m.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Decode(strings.NewReader(buf.String())); err == nil {
		t.Fatal("Decode accepted a filesystem named ../../escaped-p1")
	}
}
