package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/catalog/catalogtest"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
	"voltar/internal/units"
)

// mailpitAPI returns the address of the mailpit API `make test` starts.
func mailpitAPI(t *testing.T) string {
	api := os.Getenv("VOLTAR_TEST_MAILPIT")
	if api == "" {
		api = "127.0.0.1:8025"
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + api + "/api/v1/info")
	if err != nil {
		testutil.Unavailable(t, "mailpit API at %s: %v (scripts/start-mailpit.sh starts it)", api, err)
	}
	resp.Body.Close()
	return api
}

type mailpitMessage struct {
	ID      string
	Subject string
	To      []struct{ Address string }
}

func mailTo(t *testing.T, api, to string) []mailpitMessage {
	resp, err := http.Get("http://" + api + "/api/v1/messages?limit=500")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct{ Messages []mailpitMessage }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	var out []mailpitMessage
	for _, m := range list.Messages {
		for _, a := range m.To {
			if a.Address == to {
				out = append(out, m)
			}
		}
	}
	return out
}

// The nightly job over two image volumes with history: one fails, the other
// is backed up and pruned; the failed one keeps all its backups; the report
// reaches a real SMTP server, the JSON file and the metrics file.
func TestRunEndToEnd(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4")
	api := mailpitAPI(t)
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	os.Mkdir(storeDir, 0o700)
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc/motd"), []byte("hello\n"), 0o644)
	good := filepath.Join(dir, "good.img")
	testutil.Run(t, "truncate", "-s", "64M", good)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-d", src, good)
	bad := filepath.Join(dir, "bad.img")
	testutil.Run(t, "truncate", "-s", "8M", bad) // no table, no filesystem

	st := local.New(storeDir)
	now := time.Now().UTC()
	seed := func(vol string, days int) {
		for d := 1; d <= days; d++ {
			catalogtest.Write(t, st, catalogtest.Folder{Host: "h1", Group: "image", Volume: vol, Time: now.Add(-time.Duration(d) * 24 * time.Hour),
				Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("a", 0o644, "old")), "zstd")}}})
		}
	}
	seed("good.img", 5)
	seed("bad.img", 3)

	to := fmt.Sprintf("ops-%d@example.org", time.Now().UnixNano())
	cfg := filepath.Join(dir, "voltar.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`store: %[1]s/store
host: h1
runtime_dir: %[1]s/run
state_dir: %[1]s/state
images:
  - path: %[1]s/good.img
  - path: %[1]s/bad.img
retention:
  keep_last: 2
report:
  json_file: %[1]s/last-run.json
  prometheus_textfile: %[1]s/voltar.prom
  mail:
    host: 127.0.0.1
    port: %[2]s
    tls: none
    from: voltar@h1.example.org
    to: [%[3]s]
`, dir, mailpitSMTPPort(), to)), 0o600)

	var stdout, stderr bytes.Buffer
	code := run([]string{"--config", cfg, "run"}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("run exit %d, want 1 (one volume fails)\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	out := stdout.String()
	for _, want := range []string{"FAILED 1/2 volumes", "image/good.img", "no partition table and no known filesystem", "hint:"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	c, err := catalog.List(context.Background(), st, "h1", "")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	newest := map[string]time.Time{}
	for _, b := range c.Backups {
		counts[b.Volume]++
		if b.Time.After(newest[b.Volume]) {
			newest[b.Volume] = b.Time
		}
	}
	if counts["good.img"] != 2 || now.Sub(newest["good.img"]) > time.Hour {
		t.Errorf("good.img: %d backups, newest %v; want the new one plus one old (keep_last 2)", counts["good.img"], newest["good.img"])
	}
	if counts["bad.img"] != 3 {
		t.Errorf("bad.img has %d backups, want its 3 old ones untouched: a failed volume is never pruned", counts["bad.img"])
	}
	if len(c.Incomplete) != 0 {
		t.Errorf("incomplete folders left: %+v", c.Incomplete)
	}
	js, err := os.ReadFile(filepath.Join(dir, "last-run.json"))
	if err != nil || !bytes.Contains(js, []byte(`"ok": false`)) {
		t.Errorf("JSON report: %v\n%s", err, js)
	}
	prom, err := os.ReadFile(filepath.Join(dir, "voltar.prom"))
	if err != nil || !bytes.Contains(prom, []byte(`voltar_volume_backup_failed{volume="image/bad.img"} 1`)) || !bytes.Contains(prom, []byte(`voltar_volume_last_success_timestamp_seconds{volume="image/good.img"}`)) {
		t.Errorf("metrics file: %v\n%s", err, prom)
	}
	msgs := mailTo(t, api, to)
	if len(msgs) != 1 || msgs[0].Subject != "[voltar] h1: FAILED 1/2 volumes" {
		t.Fatalf("mail to %s: %+v, want one with subject [voltar] h1: FAILED 1/2 volumes", to, msgs)
	}
}

func mailpitSMTPPort() string {
	addr := os.Getenv("VOLTAR_TEST_MAILPIT_SMTP")
	if addr == "" {
		addr = "127.0.0.1:1025"
	}
	return addr[strings.LastIndex(addr, ":")+1:]
}

// voltar run takes the dumps too (here after the volumes), reports them, and
// prunes them by their own retention.
func TestRunWithDump(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4")
	sdir, host, port := sshdMariaDB(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "store"), 0o700)
	img := filepath.Join(dir, "vm.img")
	testutil.Run(t, "truncate", "-s", "64M", img)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", img)
	kh, err := os.ReadFile(filepath.Join(sdir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "known_hosts"), kh, 0o600)
	cfg := filepath.Join(dir, "voltar.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`store: %[1]s/store
host: h1
runtime_dir: %[1]s/run
state_dir: %[1]s/state
images: [{path: %[1]s/vm.img}]
retention: {keep_last: 5}
dumps_when: after
dumps:
  - name: db
    host: %[2]s
    port: %[3]s
    user: root
    key_file: %[4]s/client_key
    known_hosts: %[1]s/known_hosts
    credentials_file: %[4]s/my.cnf
    command: mysqldump --defaults-extra-file=/dev/stdin --single-transaction --no-data mysql
    retention: {keep_last: 1}
`, dir, host, port, sdir)), 0o600)
	for i := 0; i < 2; i++ {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"--config", cfg, "--log-level", "warn", "run"}, &stdout, &stderr); code != 0 {
			t.Fatalf("run %d: exit %d\n%s%s", i, code, &stdout, &stderr)
		}
		if !strings.Contains(stdout.String(), "db") || !strings.Contains(stdout.String(), "1/1 volumes OK") {
			t.Errorf("report lacks the dump or the volume:\n%s", &stdout)
		}
	}
	c, err := catalog.List(context.Background(), local.New(filepath.Join(dir, "store")), "h1", "")
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, b := range c.Backups {
		n[b.Group+"/"+b.Volume]++
	}
	if n["dumps/db"] != 1 || n["image/vm.img"] != 2 {
		t.Errorf("backups per volume %v: want dumps/db pruned to 1 by its own keep_last, image/vm.img 2 under the global keep_last 5", n)
	}
}

// A backup that is stored but whose prune fails (an old archive that may
// not be deleted: chattr +i) is its own status in every channel, with the
// backup's ID and size and a new last success, and the run exits 1.
func TestRunStoredButPruneFailed(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "chattr")
	api := mailpitAPI(t)
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	os.Mkdir(storeDir, 0o700)
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc/motd"), []byte("hello\n"), 0o644)
	good := filepath.Join(dir, "good.img")
	testutil.Run(t, "truncate", "-s", "32M", good)
	testutil.Run(t, "mkfs.ext4", "-q", "-F", "-d", src, good)

	st := local.New(storeDir)
	old := time.Now().UTC().Add(-48 * time.Hour)
	catalogtest.Write(t, st, catalogtest.Folder{Host: "h1", Group: "image", Volume: "good.img", Time: old,
		Archives: []catalogtest.Archive{{Data: catalogtest.Compress(t, catalogtest.Tar(t, catalogtest.File("a", 0o644, "old")), "zstd")}}})
	oldDir := filepath.Join(storeDir, "h1/image/good.img", old.Format("2006-01-02T150405Z"))
	archives, _ := filepath.Glob(filepath.Join(oldDir, "*.tar.zst"))
	if len(archives) != 1 {
		t.Fatalf("old backup's archives: %v", archives)
	}
	if out, err := exec.Command("chattr", "+i", archives[0]).CombinedOutput(); err != nil {
		t.Skipf("chattr +i is not supported here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", archives[0]).Run() })

	to := fmt.Sprintf("ops-%d@example.org", time.Now().UnixNano())
	cfg := filepath.Join(dir, "voltar.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`store: %[1]s/store
host: h1
runtime_dir: %[1]s/run
state_dir: %[1]s/state
images:
  - path: %[1]s/good.img
    offline: true
retention:
  keep_last: 1
report:
  json_file: %[1]s/last-run.json
  prometheus_textfile: %[1]s/voltar.prom
  mail:
    host: 127.0.0.1
    port: %[2]s
    tls: none
    from: voltar@h1.example.org
    to: [%[3]s]
`, dir, mailpitSMTPPort(), to)), 0o600)

	started := time.Now()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--config", cfg, "run"}, &stdout, &stderr); code != 1 {
		t.Fatalf("run exit %d, want 1 (the prune failed)\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}

	var rep struct {
		VolumesPruneFailed int   `json:"volumes_prune_failed"`
		WrittenBytes       int64 `json:"written_bytes"`
		Volumes            []struct {
			Status      string
			BackupID    string `json:"backup_id"`
			StoredBytes int64  `json:"stored_bytes"`
		}
	}
	js, err := os.ReadFile(filepath.Join(dir, "last-run.json"))
	if err != nil || json.Unmarshal(js, &rep) != nil || len(rep.Volumes) != 1 {
		t.Fatalf("JSON report: %v\n%s", err, js)
	}
	v := rep.Volumes[0]
	var folder int64
	objs, err := st.List(context.Background(), "h1/"+v.BackupID+"/")
	for _, o := range objs {
		folder += o.Size
	}
	if err != nil || v.Status != "prune_failed" || v.BackupID == "" || v.StoredBytes != folder || rep.WrittenBytes != folder || rep.VolumesPruneFailed != 1 {
		t.Errorf("JSON report: %+v (folder of %d bytes, %v)\n%s", rep, folder, err, js)
	}
	size := units.Bytes(folder)
	for _, want := range []string{"FAILED 1/1 volumes (1 stored, prune failed)", "PRUNE FAILED  image/good.img", size, "backup    " + v.BackupID, "pruning failed", "hint:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, &stdout)
		}
	}
	prom, err := os.ReadFile(filepath.Join(dir, "voltar.prom"))
	if err != nil {
		t.Fatal(err)
	}
	var last float64
	for _, line := range strings.Split(string(prom), "\n") {
		if rest, ok := strings.CutPrefix(line, `voltar_volume_last_success_timestamp_seconds{volume="image/good.img"} `); ok {
			fmt.Sscan(rest, &last)
		}
	}
	if last < float64(started.Unix()) || !bytes.Contains(prom, []byte(`voltar_volume_prune_failed{volume="image/good.img"} 1`)) ||
		!bytes.Contains(prom, []byte(`voltar_volume_backup_failed{volume="image/good.img"} 0`)) {
		t.Errorf("metrics (last success %v, run started %v):\n%s", last, started.Unix(), prom)
	}
	msgs := mailTo(t, api, to)
	if want := "[voltar] h1: FAILED 1/1 volumes (1 stored, prune failed)"; len(msgs) != 1 || msgs[0].Subject != want {
		t.Errorf("mail to %s: %+v, want one with subject %q", to, msgs, want)
	}
}
