package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/fail"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
)

// sshdMariaDB returns the state dir of scripts/start-sshd-mariadb.sh and
// the sshd's port, or skips (fails under VOLTAR_TEST_REQUIRE_ALL=1).
func sshdMariaDB(t *testing.T) (dir, host, port string) {
	t.Helper()
	dir = os.Getenv("VOLTAR_TEST_SSHD_MARIADB")
	if dir == "" {
		dir = "/tmp/voltar-sshd-mariadb"
	}
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		testutil.Unavailable(t, "sshd and MariaDB: %v (scripts/start-sshd-mariadb.sh starts them)", err)
	}
	for _, l := range strings.Split(string(env), "\n") {
		if v, ok := strings.CutPrefix(l, "VOLTAR_TEST_SSHD="); ok {
			host, port, _ = net.SplitHostPort(v)
		}
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 2*time.Second)
	if err != nil {
		testutil.Unavailable(t, "sshd at %s:%s: %v (scripts/start-sshd-mariadb.sh starts it)", host, port, err)
	}
	c.Close()
	return dir, host, port
}

// runCLI runs one voltar command line as main does and returns its exit
// code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDumpCommand(t *testing.T) {
	dir, host, port := sshdMariaDB(t)
	work := t.TempDir()
	store := filepath.Join(work, "store")
	os.Mkdir(store, 0o700)
	kh := filepath.Join(work, "known_hosts")
	data, err := os.ReadFile(filepath.Join(dir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(kh, data, 0o600)
	entry := func(name, command string) string {
		return fmt.Sprintf(`  - name: %s
    host: %s
    port: %s
    user: root
    key_file: %s/client_key
    known_hosts: %s
    credentials_file: %s/my.cnf
    command: %s
    timeout: 2m
`, name, host, port, dir, kh, dir, command)
	}
	cfg := filepath.Join(work, "voltar.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`store: %s
host: testhost
runtime_dir: %s/run
state_dir: %s/state
dump_concurrency: 2
dumps:
%s%s`, store, work, work,
		entry("mariadb", "mysqldump --defaults-extra-file=/dev/stdin --single-transaction --no-data mysql"),
		entry("broken", "mysqldump --defaults-extra-file=/dev/stdin no_such_database_here"))), 0o600)

	code, out, errs := runCLI(t, "--config", cfg, "dump", "mariadb")
	if code != 0 || !strings.HasPrefix(out, "ok      dumps/mariadb/") {
		t.Fatalf("dump mariadb: exit %d\n%s%s", code, out, errs)
	}

	code, _, errs = runCLI(t, "--config", cfg, "dump", "nope")
	if code != fail.ExitUsage || !strings.Contains(errs, `no dump named "nope"`) || !strings.Contains(errs, "hint: configured dumps: mariadb, broken") {
		t.Errorf("dump nope: exit %d\n%s", code, errs)
	}

	// All of them: one fails, the other is still taken.
	code, out, errs = runCLI(t, "--config", cfg, "dump")
	if code != fail.ExitFailed || !strings.Contains(out, "ok      dumps/mariadb/") ||
		!strings.Contains(out, "FAILED  broken") || !strings.Contains(out, "Unknown database") ||
		!strings.Contains(errs, "voltar: 1 of 2 dumps failed") {
		t.Errorf("dump: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(store, "testhost", "dumps", "broken")); err == nil {
		t.Errorf("the failed dump left a folder in the store")
	}

	code, out, errs = runCLI(t, "--config", cfg, "dump", "--json", "mariadb")
	var res []struct {
		Name, Status, ID string
		SQLBytes         int64 `json:"sql_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || len(res) != 1 || res[0].Status != "ok" || res[0].SQLBytes == 0 {
		t.Errorf("dump --json: exit %d, %v: %+v\n%s%s", code, err, res, out, errs)
	}

	code, out, errs = runCLI(t, "--config", cfg, "list", "dumps/mariadb")
	if code != 0 || strings.Count(out, "dumps/mariadb/") < 2 {
		t.Errorf("list: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI(t, "--config", cfg, "verify", "dumps/mariadb/latest")
	if code != 0 || !strings.Contains(out, "ok      dumps/mariadb/") {
		t.Errorf("verify: exit %d\n%s%s", code, out, errs)
	}

	// What restore.go runs for a dump.
	st := local.New(store)
	b, err := catalog.Resolve(context.Background(), st, "testhost", "dumps/mariadb/latest")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	target := filepath.Join(work, "restored")
	if err := (&app{stdout: &buf}).restoreDump(context.Background(), st, b, target, "", false); err != nil {
		t.Fatal(err)
	}
	sql, _ := os.ReadFile(filepath.Join(target, "dump.sql"))
	if !strings.Contains(buf.String(), "sha256 verified") || !bytes.Contains(sql, []byte("CREATE TABLE `db`")) || !bytes.Contains(sql, []byte("-- Dump completed")) {
		t.Errorf("restoreDump printed %q, wrote %d bytes", buf.String(), len(sql))
	}
	if err := (&app{stdout: &buf}).restoreDump(context.Background(), st, b, target, "p1", false); !fail.IsUsage(err) {
		t.Errorf("--partition with a dump: %v", err)
	}
	if err := errDumpNotVolume(b); !fail.IsUsage(err) {
		t.Errorf("errDumpNotVolume: %v", err)
	}
}

// An encrypted dump through the real sshd and MariaDB: dump.sql.zst.age,
// restored by `voltar restore` with the key and by hand with age and zstd.
func TestDumpCommandEncrypted(t *testing.T) {
	dir, host, port := sshdMariaDB(t)
	testutil.RequireTools(t, "age", "age-keygen", "zstd")
	work := t.TempDir()
	store := filepath.Join(work, "store")
	os.Mkdir(store, 0o700)
	kh := filepath.Join(work, "known_hosts")
	data, err := os.ReadFile(filepath.Join(dir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(kh, data, 0o600)
	key := filepath.Join(work, "key.txt")
	testutil.Run(t, "age-keygen", "-o", key)
	pub := strings.TrimSpace(testutil.Run(t, "age-keygen", "-y", key))
	cfg := filepath.Join(work, "voltar.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`store: %s
host: testhost
runtime_dir: %s/run
state_dir: %s/state
encryption:
  recipients: [%s]
dumps:
  - name: mariadb
    host: %s
    port: %s
    user: root
    key_file: %s/client_key
    known_hosts: %s
    credentials_file: %s/my.cnf
    command: mysqldump --defaults-extra-file=/dev/stdin --single-transaction --no-data mysql
`, store, work, work, pub, host, port, dir, kh, dir)), 0o600)

	code, out, errs := runCLI(t, "--config", cfg, "dump", "mariadb")
	if code != 0 || !strings.HasPrefix(out, "ok      dumps/mariadb/") {
		t.Fatalf("dump mariadb: exit %d\n%s%s", code, out, errs)
	}
	objs, _ := filepath.Glob(filepath.Join(store, "testhost", "dumps", "mariadb", "*", "dump.sql.zst.age"))
	if len(objs) != 1 {
		t.Fatalf("stored %v, want one dump.sql.zst.age", objs)
	}
	sql := testutil.Run(t, "sh", "-c", "age -d -i '"+key+"' '"+objs[0]+"' | zstd -d -q")
	if !strings.Contains(sql, "CREATE TABLE `db`") || !strings.Contains(sql, "-- Dump completed") {
		t.Errorf("decrypted by hand: %d bytes without the dump's tables", len(sql))
	}

	target := filepath.Join(work, "restored")
	code, _, errs = runCLI(t, "--config", cfg, "restore", "dumps/mariadb/latest", "--to", target)
	if code != fail.ExitUsage || !strings.Contains(errs, "no identity is configured") || !strings.Contains(errs, "hint: dumps/mariadb/") {
		t.Errorf("restore without a key: exit %d\n%s", code, errs)
	}
	t.Setenv("VOLTAR_AGE_IDENTITY_FILE", key)
	code, out, errs = runCLI(t, "--config", cfg, "restore", "dumps/mariadb/latest", "--to", target)
	got, _ := os.ReadFile(filepath.Join(target, "dump.sql"))
	if code != 0 || !strings.Contains(out, "sha256 verified") || string(got) != sql {
		t.Errorf("restore with the key: exit %d, %d bytes (want %d)\n%s%s", code, len(got), len(sql), out, errs)
	}
	code, out, errs = runCLI(t, "--config", cfg, "verify", "dumps/mariadb/latest")
	if code != 0 || strings.Contains(out, "content not checked") {
		t.Errorf("verify with the key: exit %d\n%s%s", code, out, errs)
	}
}
