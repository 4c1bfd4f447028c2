package config_test

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"voltar/internal/config"
	"voltar/internal/fail"
)

func TestExampleParsesAndDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../examples/voltar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("example does not parse: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("example does not validate: %v", err)
	}
	var missing []string
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "" || key == "-" {
				continue
			}
			// Set, or shown commented out in an example entry.
			if !regexp.MustCompile(`(?m)^[#\s-]*` + regexp.QuoteMeta(key) + `:`).Match(data) {
				missing = append(missing, key)
			}
			ft := f.Type
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft.PkgPath() == typ.PkgPath() {
				walk(ft)
			}
		}
	}
	walk(reflect.TypeOf(config.Config{}))
	if len(missing) > 0 {
		t.Fatalf("examples/voltar.yaml does not document: %s", strings.Join(missing, ", "))
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	_, err := config.Parse(strings.NewReader("store: /x\nretention_dayz: 7\n"))
	if err == nil || !strings.Contains(err.Error(), "retention_dayz") {
		t.Fatalf("Parse with an unknown key = %v, want an error naming it", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"compression: lz4", "compression \"lz4\""},
		{"compression: gzip\ncompression_level: 12", "gzip takes 1..9"},
		{"concurrency: 0", "concurrency 0"},
		{"excludes: ['[']", "not a valid glob"},
		{"runtime_dir: run", "absolute path"},
		{"volume_excludes: {vol1: ['x']}", "want <vg>/<volume>"},
		{"retention: {keep_last: -1}", "keep_last -1"},
		{"retention: {time_zone: Mars/Olympus}", "time_zone"},
	} {
		c, err := config.Parse(strings.NewReader(tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		err = c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%q) = %v, want error containing %q", tc.yaml, err, tc.want)
		}
	}
	if err := config.Default().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestStoreShortAndLongForm(t *testing.T) {
	c, err := config.Parse(strings.NewReader("store: /srv/b\n"))
	if err != nil || c.Store.Path != "/srv/b" {
		t.Fatalf("short form: %+v, %v", c.Store, err)
	}
	c, err = config.Parse(strings.NewReader("store:\n  path: /srv/b\n  require_mount: /srv\n"))
	if err != nil || c.Store.Path != "/srv/b" || c.Store.RequireMount != "/srv" {
		t.Fatalf("long form: %+v, %v", c.Store, err)
	}
	if _, err := config.Parse(strings.NewReader("store:\n  pth: /srv/b\n")); err == nil || !strings.Contains(err.Error(), "pth") {
		t.Fatalf("unknown store key: %v, want an error naming it", err)
	}
}

func TestS3Store(t *testing.T) {
	c, err := config.Parse(strings.NewReader(`store:
  path: s3://voltar-backups/site1/
  endpoint: https://rgw.example.org:7480
  region: eu-1
  access_key_file: /etc/voltar/s3-access
  secret_key_file: /etc/voltar/s3-secret
  ca_file: /etc/voltar/ca.pem
  addressing: virtual-host
  part_size: 64M
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	s, err := c.Store.S3(c.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	want := config.S3{Bucket: "voltar-backups", Prefix: "site1", Endpoint: "rgw.example.org:7480", Secure: true, Region: "eu-1",
		AccessKeyFile: "/etc/voltar/s3-access", SecretKeyFile: "/etc/voltar/s3-secret", CAFile: "/etc/voltar/ca.pem", PartSize: 64 << 20}
	if s != want {
		t.Errorf("S3() = %+v\nwant %+v", s, want)
	}
	// S3 settings next to a local directory serve backup --to s3://...
	c, err = config.Parse(strings.NewReader("store:\n  path: /srv/backup\n  endpoint: s3.example.org\n"))
	if err != nil || c.Validate() != nil {
		t.Fatalf("local path with S3 settings: %v, %v", err, c.Validate())
	}
	if s, err := c.Store.S3("s3://b12/x"); err != nil || s.Endpoint != "s3.example.org" || !s.Secure {
		t.Errorf("S3(--to name) = %+v, %v", s, err)
	}
	// The short form and a loopback endpoint without TLS.
	c, err = config.Parse(strings.NewReader("store:\n  path: s3://b12\n  endpoint: 127.0.0.1:7070\n  tls: false\n"))
	if err != nil || c.Validate() != nil {
		t.Fatalf("loopback without TLS: %v, %v", err, c.Validate())
	}
	if s, _ := c.Store.S3("s3://other/x/y"); s.Bucket != "other" || s.Prefix != "x/y" || s.Secure || !s.PathStyle || s.PartSize != config.DefaultPartSize {
		t.Errorf("S3(other name) = %+v", s)
	}
}

func TestS3StoreErrors(t *testing.T) {
	const ep = "\n  endpoint: s3.example.org"
	for _, tc := range []struct{ yaml, want, hint string }{
		{"store: s3://b12/p", "store.endpoint is not set", "set store.endpoint"},
		{"store:\n  path: s3://b12/p" + ep + "\n  require_mount: /srv", "require_mount makes no sense", "remove require_mount"},
		{"store:\n  path: s3://b12/p" + ep + "\n  min_free_percent: 10", "min_free_percent makes no sense", "remove min_free_percent"},
		{"store:\n  path: s3://b12/p" + ep + "\n  tls: false", "plain http is allowed only to a loopback", "store.ca_file"},
		{"store:\n  path: s3://b12/p\n  endpoint: http://10.0.0.5:7480", "plain http is allowed only to a loopback", "use https"},
		{"store:\n  path: s3://b12/p\n  endpoint: http://127.0.0.1:7070\n  tls: true", "disagree", ""},
		{"store:\n  path: s3://b12/p\n  endpoint: https://s3.example.org/b12", "has a path", "store.path"},
		{"store:\n  path: s3://b12/p\n  endpoint: https://k:s@s3.example.org", "must not carry credentials", "access_key_file"},
		{"store:\n  path: s3://AK:SK@b12/p" + ep, "must not carry credentials", "AWS_ACCESS_KEY_ID"},
		{"store:\n  path: s3://b/p" + ep, "not a valid bucket name", ""},
		{"store:\n  path: s3://b12/a//b" + ep, "single slashes", ""},
		{"store:\n  path: s3://b12/../b" + ep, "no . or ..", ""},
		{"store:\n  path: s3://b12/p" + ep + "\n  addressing: dns", "want path or virtual-host", ""},
		{"store:\n  path: s3://b12/p" + ep + "\n  part_size: 1M", "want 5M to 512M", ""},
		{"store:\n  path: s3://b12/p" + ep + "\n  part_size: lots", "want a size", ""},
		{"store:\n  path: s3://b12/p" + ep + "\n  access_key_file: /k", "go together", "set both"},
		{"store:\n  path: /srv/backup\n  region: x", "store.endpoint is not set", "set store.endpoint"},
		{"store:\n  path: /srv/backup\n  endpoint: http://10.0.0.5", "plain http is allowed only to a loopback", "use https"},
	} {
		c, err := config.Parse(strings.NewReader(tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		err = c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%q) = %v, want error containing %q", tc.yaml, err, tc.want)
			continue
		}
		if hints := strings.Join(fail.Hints(err), "\n"); !strings.Contains(hints, tc.hint) {
			t.Errorf("Validate(%q): hints %q lack %q", tc.yaml, hints, tc.hint)
		}
	}
}

// The commented-out S3 store in the example is a valid configuration.
func TestExampleS3StoreValidates(t *testing.T) {
	data, err := os.ReadFile("../../examples/voltar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#store:") || (len(block) > 0 && strings.HasPrefix(line, "#  ")) {
			block = append(block, strings.TrimPrefix(line, "#"))
		} else if len(block) > 0 {
			break
		}
	}
	c, err := config.Parse(strings.NewReader(strings.Join(block, "\n")))
	if err != nil {
		t.Fatalf("S3 example does not parse: %v\n%s", err, strings.Join(block, "\n"))
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("S3 example does not validate: %v", err)
	}
	if c.Store.Path != "s3://voltar-backups/site1" || c.Store.PartSize != "16M" {
		t.Fatalf("S3 example parsed as %+v", c.Store)
	}
}

func TestEncryptionRecipients(t *testing.T) {
	const key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
	c, err := config.Parse(strings.NewReader("encryption:\n  recipients:\n    - " + key + "\n  recipients_file: /etc/voltar/team.txt\n  identity_file: /root/key.txt\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid encryption section: %v", err)
	}
	e := c.Encryption
	if !e.Enabled() || len(e.Keys()) != 1 || e.Keys()[0] != key || len(e.RecipientsFile) != 1 || e.IdentityFile != "/root/key.txt" {
		t.Errorf("encryption parsed as %+v", e)
	}
	c, err = config.Parse(strings.NewReader("encryption:\n  recipients_file: [/a, /b]\n"))
	if err != nil || len(c.Encryption.RecipientsFile) != 2 || !c.Encryption.Enabled() {
		t.Errorf("recipients_file as a list: %+v, %v", c.Encryption, err)
	}
	if config.Default().Encryption.Enabled() {
		t.Errorf("encryption on by default")
	}
	// An identity alone (a host that only restores) encrypts nothing.
	c, _ = config.Parse(strings.NewReader("encryption:\n  identity_file: /k\n"))
	if c.Encryption.Enabled() {
		t.Errorf("identity_file alone turned encryption on")
	}
}

func TestEncryptionBadRecipient(t *testing.T) {
	good := "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
	for _, tc := range []struct{ yaml, want string }{
		{"store: /x\nencryption:\n  recipients:\n    - " + good + "\n    - age1nope\n", "encryption.recipients[1] (line 5)"},
		{"encryption:\n  recipients: [AGE-SECRET-KEY-1ABC]\n", "private key"},
		{"encryption:\n  recipients: [\"ssh-ed25519 AAAAbroken\"]\n", "encryption.recipients[0] (line 2)"},
		{"encryption:\n  recipients_file: ['']\n", "recipients_file[0] is empty"},
	} {
		c, err := config.Parse(strings.NewReader(tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		err = c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%q) = %v, want an error containing %q", tc.yaml, err, tc.want)
			continue
		}
		if strings.Contains(tc.want, "recipients[") && len(fail.Hints(err)) == 0 {
			t.Errorf("Validate(%q): no hint", tc.yaml)
		}
		if strings.Contains(err.Error(), "AGE-SECRET-KEY") {
			t.Errorf("the error echoes a private key: %v", err)
		}
	}
	if _, err := config.Parse(strings.NewReader("encryption:\n  recipients:\n    - {key: x}\n")); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("a mapping as recipient: %v, want an error naming line 3", err)
	}
	if _, err := config.Parse(strings.NewReader("encryption:\n  recipient: [x]\n")); err == nil || !strings.Contains(err.Error(), "recipient") {
		t.Errorf("a typo in the section: %v", err)
	}
}

// Two image files with one base name would be one volume in the store.
func TestImagesNeedDistinctNames(t *testing.T) {
	c, err := config.Parse(strings.NewReader("images:\n  - path: /vm/web1/disk.img\n  - path: /vm/db1/disk.img\n  - path: /vm/db1/other.img\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), "images[1] /vm/db1/disk.img: same file name as /vm/web1/disk.img") {
		t.Fatalf("Validate = %v, want the duplicate name named", err)
	}
	if hints := strings.Join(fail.Hints(err), "\n"); !strings.Contains(hints, "distinct names") {
		t.Errorf("hints %q", hints)
	}
}

// host: names the host's folder in the store: one segment of safe
// characters, from the config and from the machine's host name alike.
func TestHostIsOneSafeSegment(t *testing.T) {
	for _, h := range []string{`"a/b"`, `"../../evil"`, `".."`, `"."`, `"a b"`, `"a\\b"`} {
		c, err := config.Parse(strings.NewReader("host: " + h))
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "host") || len(fail.Hints(err)) == 0 {
			t.Errorf("host %s: Validate = %v (hints %q), want an error with a hint", h, err, fail.Hints(err))
		}
		if _, err := c.HostName(); err == nil || !fail.IsUsage(err) {
			t.Errorf("host %s: HostName = %v, want a usage error", h, err)
		}
	}
	c, err := config.Parse(strings.NewReader("host: node-1.example_2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("host node-1.example_2: %v", err)
	}
	if h, err := c.HostName(); err != nil || h != "node-1.example_2" {
		t.Errorf("HostName = %q, %v", h, err)
	}
}

func TestBtrfsSnapshots(t *testing.T) {
	c, err := config.Parse(strings.NewReader("volume_btrfs_snapshots:\n  vg/a: include\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.IncludeBtrfsSnapshots("vg/b") || !c.IncludeBtrfsSnapshots("vg/a") {
		t.Errorf("default skip, vg/a include: got vg/b %v, vg/a %v", c.IncludeBtrfsSnapshots("vg/b"), c.IncludeBtrfsSnapshots("vg/a"))
	}
	c, _ = config.Parse(strings.NewReader("btrfs_snapshots: include\nvolume_btrfs_snapshots:\n  vg/a: skip\n"))
	if !c.IncludeBtrfsSnapshots("vg/b") || c.IncludeBtrfsSnapshots("vg/a") {
		t.Errorf("global include, vg/a skip: wrong")
	}
	for _, bad := range []string{"btrfs_snapshots: yes\n", "volume_btrfs_snapshots:\n  vg/a: all\n", "volume_btrfs_snapshots:\n  a: skip\n"} {
		c, err := config.Parse(strings.NewReader(bad))
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), "btrfs_snapshots") {
			t.Errorf("%q: %v, want refused", bad, err)
		}
	}
}

func TestThreadsBounded(t *testing.T) {
	for _, tc := range []struct {
		threads int
		ok      bool
	}{{-2, false}, {0, true}, {4, true}, {config.MaxThreads, true}, {1000, false}} {
		c, err := config.Parse(strings.NewReader(fmt.Sprintf("threads: %d\n", tc.threads)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("threads: %d: Validate = %v, want ok %v", tc.threads, err, tc.ok)
		}
	}
}

// Moved here from dump: the policy of a dump is the config's business.
func TestDumpRetention(t *testing.T) {
	global := config.Retention{KeepDays: 7, IncompleteGrace: time.Hour, TimeZone: "UTC"}
	if got := (config.Dump{}).EffectiveRetention(global); got != global {
		t.Errorf("no own retention: %+v", got)
	}
	got := (config.Dump{Retention: &config.Retention{KeepDaily: 14}}).EffectiveRetention(global)
	if want := (config.Retention{KeepDaily: 14, IncompleteGrace: time.Hour, TimeZone: "UTC"}); got != want {
		t.Errorf("own retention: %+v, want %+v", got, want)
	}
}

func TestBootPartitions(t *testing.T) {
	c := config.Default()
	if c.BootPartitions != "files" {
		t.Errorf("default boot_partitions %q, want files", c.BootPartitions)
	}
	c, err := config.Parse(strings.NewReader("boot_partitions: raw\n"))
	if err != nil || c.Validate() != nil || c.BootPartitions != "raw" {
		t.Errorf("boot_partitions: raw: %v, %+v", err, c.BootPartitions)
	}
	c, err = config.Parse(strings.NewReader("boot_partitions: image\n"))
	if err == nil {
		err = c.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), "boot_partitions") {
		t.Errorf("boot_partitions: image: %v, want refused", err)
	}
}
