package dump_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"voltar/internal/catalog"
	"voltar/internal/dump"
	"voltar/internal/folder"
	"voltar/internal/store/local"
	"voltar/internal/testutil"
	"voltar/internal/verify"
)

// services describes the sshd and MariaDB that scripts/start-sshd-mariadb.sh
// runs on 127.0.0.1 (`make services` starts it).
type services struct {
	dir      string // the script's state dir
	sshHost  string
	sshPort  int
	socket   string
	password string
}

func needServices(t *testing.T) *services {
	t.Helper()
	dir := os.Getenv("VOLTAR_TEST_SSHD_MARIADB")
	if dir == "" {
		dir = "/tmp/voltar-sshd-mariadb"
	}
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		testutil.Unavailable(t, "sshd and MariaDB for dump tests: %v (scripts/start-sshd-mariadb.sh starts them)", err)
	}
	s := &services{dir: dir}
	sc := bufio.NewScanner(bytes.NewReader(env))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "VOLTAR_TEST_SSHD":
			h, p, _ := net.SplitHostPort(v)
			s.sshHost = h
			fmt.Sscan(p, &s.sshPort)
		case "VOLTAR_TEST_MARIADB_SOCKET":
			s.socket = v
		}
	}
	pw, err := os.ReadFile(filepath.Join(dir, "password"))
	if err != nil || s.sshPort == 0 || s.socket == "" {
		testutil.Unavailable(t, "%s/env or password incomplete (%v); run scripts/start-sshd-mariadb.sh", dir, err)
	}
	s.password = strings.TrimSpace(string(pw))
	c, err := net.DialTimeout("tcp", net.JoinHostPort(s.sshHost, fmt.Sprint(s.sshPort)), 2*time.Second)
	if err != nil {
		testutil.Unavailable(t, "sshd at %s:%d: %v (scripts/start-sshd-mariadb.sh starts it)", s.sshHost, s.sshPort, err)
	}
	c.Close()
	if out, err := exec.Command("mariadb-admin", "--no-defaults", "--socket="+s.socket, "-u", "root", "ping").CombinedOutput(); err != nil {
		testutil.Unavailable(t, "MariaDB at %s: %v %s (scripts/start-sshd-mariadb.sh starts it)", s.socket, err, out)
	}
	return s
}

// sql runs statements as MariaDB's root (unix_socket auth), fed on stdin.
func (s *services) sql(t *testing.T, db, stmts string) string {
	t.Helper()
	args := []string{"--no-defaults", "--socket=" + s.socket, "-u", "root", "--default-character-set=utf8mb4", "--batch", "--skip-column-names"}
	if db != "" {
		args = append(args, db)
	}
	cmd := exec.Command("mariadb", args...)
	cmd.Stdin = strings.NewReader(stmts)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mariadb %s: %v\n%s", db, err, out)
	}
	return string(out)
}

// dump is a config for the test sshd with a private copy of known_hosts.
func (s *services) dump(t *testing.T, command string) dump.Target {
	kh := filepath.Join(t.TempDir(), "known_hosts")
	data, err := os.ReadFile(filepath.Join(s.dir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(kh, data, 0o600)
	return dump.Target{
		Name: "mariadb", Host: s.sshHost, Port: s.sshPort, User: "root",
		KeyFile: filepath.Join(s.dir, "client_key"), KnownHosts: kh,
		Command: command, CredentialsFile: filepath.Join(s.dir, "my.cnf"), Timeout: 2 * time.Minute,
	}
}

// sourceDB makes a database with known rows and returns its name.
func (s *services) sourceDB(t *testing.T) string {
	db := "vt_src_" + randHex(4)
	s.sql(t, "", fmt.Sprintf(`CREATE DATABASE %[1]s;
USE %[1]s;
CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(64) CHARACTER SET utf8mb4, note TEXT CHARACTER SET utf8mb4) ENGINE=InnoDB;
INSERT INTO people VALUES (1, 'Ada', 'first'), (2, 'Zoë ''Quote''', 'line1\nline2'), (3, 'Bobby\\Tables', NULL), (4, '🦫', '-- Dump completed on nothing');
CREATE TABLE bulk (id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB;
INSERT INTO bulk SELECT seq, SHA1(seq) FROM seq_1_to_30000;
CREATE VIEW people_names AS SELECT name FROM people;
CREATE PROCEDURE count_people() SELECT COUNT(*) FROM people;
CREATE TRIGGER people_bi BEFORE INSERT ON people FOR EACH ROW SET NEW.note = COALESCE(NEW.note, 'none');
`, db))
	t.Cleanup(func() { s.sql(t, "", "DROP DATABASE IF EXISTS "+db) })
	return db
}

// fingerprint is what must come back identical after a restore.
func (s *services) fingerprint(t *testing.T, db string) string {
	return s.sql(t, db, `SELECT id, name, IFNULL(note, 'NULL') FROM people ORDER BY id;
SELECT COUNT(*), SUM(CRC32(CONCAT(id, ':', v))) FROM bulk;
SELECT * FROM people_names ORDER BY name;
SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE();
SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE();`)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// watchArgv samples every process's argv (and, as root, environment) until
// stopped, and reports any that held secret; seen tells whether a process
// whose argv contains marker was observed, so the watch is known to have
// looked while the dump ran.
func watchArgv(t *testing.T, secret, marker string) (stop func() (leaks []string, seen bool)) {
	var leaks []string
	var seen atomic.Bool
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			pids, _ := filepath.Glob("/proc/[0-9]*")
			for _, p := range pids {
				for _, f := range []string{"cmdline", "environ"} {
					data, err := os.ReadFile(filepath.Join(p, f))
					if err != nil {
						continue
					}
					if bytes.Contains(data, []byte(secret)) {
						leaks = append(leaks, fmt.Sprintf("%s/%s: %q", p, f, bytes.ReplaceAll(data, []byte{0}, []byte{' '})))
					}
					if f == "cmdline" && bytes.Contains(data, []byte(marker)) {
						seen.Store(true)
					}
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return func() ([]string, bool) {
		close(done)
		wg.Wait()
		return leaks, seen.Load()
	}
}

func TestMariaDBDumpRestoresIntoFreshDatabase(t *testing.T) {
	s := needServices(t)
	src := s.sourceDB(t)
	want := s.fingerprint(t, src)
	root := t.TempDir()
	st := local.New(root)
	opts := dump.Options{Settings: folder.Settings{Store: st, Host: "host1", Version: "test"}}
	// One database, without CREATE DATABASE/USE, so it restores into any.
	d := s.dump(t, "mysqldump --defaults-extra-file=/dev/stdin --single-transaction --quick --routines --events --triggers "+src)

	stop := watchArgv(t, s.password, "mysqldump")
	m, err := dump.Run(context.Background(), d, opts)
	leaks, seen := stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(leaks) > 0 {
		t.Errorf("the password showed up in process listings:\n%s", strings.Join(leaks, "\n"))
	}
	if !seen {
		t.Errorf("the argv watch never saw mysqldump running; it proves nothing")
	}

	ctx := context.Background()
	b, err := catalog.Resolve(ctx, st, "host1", "dumps/mariadb/latest")
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != m.ID {
		t.Errorf("latest is %s, want %s", b.ID, m.ID)
	}
	if res := verify.Backup(ctx, st, b, nil); !res.OK {
		t.Errorf("verify: %v", res.Problems)
	}
	// Standard tools check it too.
	sums := exec.Command("sha256sum", "-c", "SHA256SUMS")
	sums.Dir = filepath.Join(root, b.Prefix)
	if out, err := sums.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}

	dir := t.TempDir()
	if _, err := dump.Restore(ctx, st, b, dir, false, nil); err != nil {
		t.Fatal(err)
	}
	sqlFile, err := os.Open(filepath.Join(dir, dump.SQLName))
	if err != nil {
		t.Fatal(err)
	}
	defer sqlFile.Close()
	fresh := "vt_restored_" + randHex(4)
	s.sql(t, "", "CREATE DATABASE "+fresh)
	t.Cleanup(func() { s.sql(t, "", "DROP DATABASE IF EXISTS "+fresh) })
	load := exec.Command("mariadb", "--no-defaults", "--socket="+s.socket, "-u", "root", "--default-character-set=utf8mb4", fresh)
	load.Stdin = sqlFile
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("load the dump into %s: %v\n%s", fresh, err, out)
	}
	if got := s.fingerprint(t, fresh); got != want {
		t.Errorf("restored database differs:\n%s\nwant:\n%s", got, want)
	}
}

// The default command dumps every database, with the credentials read from
// /dev/stdin on the instance.
func TestMariaDBDefaultCommand(t *testing.T) {
	s := needServices(t)
	src := s.sourceDB(t)
	st := local.New(t.TempDir())
	d := s.dump(t, "")
	stop := watchArgv(t, s.password, "mysqldump")
	m, err := dump.Run(context.Background(), d, dump.Options{Settings: folder.Settings{Store: st, Host: "host1"}})
	leaks, _ := stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(leaks) > 0 {
		t.Errorf("the password showed up in process listings:\n%s", strings.Join(leaks, "\n"))
	}
	if m.Extra["command"] != dump.DefaultCommand {
		t.Errorf("command %v", m.Extra["command"])
	}
	var sql bytes.Buffer
	b, err := catalog.Resolve(context.Background(), st, "host1", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dump.Extract(context.Background(), st, b, &sql, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `" + src + "`", "CREATE TABLE `bulk`", "-- Dump completed on"} {
		if !strings.Contains(sql.String(), want) {
			t.Errorf("dump lacks %q", want)
		}
	}
	if strings.Contains(sql.String(), s.password) {
		t.Errorf("the dump holds the password in clear")
	}
}

func TestMariaDBHostKeys(t *testing.T) {
	s := needServices(t)
	root := t.TempDir()
	st := local.New(root)
	opts := dump.Options{Settings: folder.Settings{Store: st, Host: "host1"}}
	cmd := "mysqldump --defaults-extra-file=/dev/stdin --no-data mysql"

	// Another key for [127.0.0.1]:2222: refused, whatever accept_new_host_key says.
	other, err := os.ReadFile(filepath.Join(s.dir, "other_host_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	for _, accept := range []bool{false, true} {
		d := s.dump(t, cmd)
		d.AcceptNewHostKey = accept
		fields := strings.Fields(string(other))
		os.WriteFile(d.KnownHosts, []byte(fmt.Sprintf("[%s]:%d %s %s\n", s.sshHost, s.sshPort, fields[0], fields[1])), 0o600)
		_, err := dump.Run(context.Background(), d, opts)
		if !errors.Is(err, dump.ErrHostKeyChanged) || !strings.Contains(err.Error(), "host key for") {
			t.Fatalf("wrong host key (accept %v): err = %v", accept, err)
		}
	}

	// Unknown: refused, then recorded with accept_new_host_key.
	d := s.dump(t, cmd)
	os.WriteFile(d.KnownHosts, nil, 0o600)
	if _, err := dump.Run(context.Background(), d, opts); !errors.Is(err, dump.ErrHostKeyUnknown) {
		t.Fatalf("unknown host: err = %v", err)
	}
	assertEmpty(t, root)
	d.AcceptNewHostKey = true
	if _, err := dump.Run(context.Background(), d, opts); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(d.KnownHosts)
	hostKey, _ := os.ReadFile(filepath.Join(s.dir, "ssh_host_ed25519_key.pub"))
	if f := strings.Fields(string(hostKey)); !strings.Contains(string(got), f[0]+" "+f[1]) {
		t.Errorf("known_hosts %q does not hold the server's key %s", got, f[1])
	}
}

func TestMariaDBFailuresPublishNothing(t *testing.T) {
	s := needServices(t)
	for _, tc := range []struct{ name, cmd, want string }{
		{"false", "false", "exit status 1"},
		{"no-such-db", "mysqldump --defaults-extra-file=/dev/stdin no_such_db_" + randHex(3), "Unknown database"},
		{"killed", "kill -9 $$", "killed by signal KILL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			_, err := dump.Run(context.Background(), s.dump(t, tc.cmd), dump.Options{Settings: folder.Settings{Store: local.New(root), Host: "host1"}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			assertEmpty(t, root)
		})
	}
	t.Run("wrong-password", func(t *testing.T) {
		root := t.TempDir()
		d := s.dump(t, "")
		wrong := "wrong-" + randHex(6)
		d.CredentialsFile = filepath.Join(t.TempDir(), "my.cnf")
		os.WriteFile(d.CredentialsFile, []byte(fmt.Sprintf("[client]\nuser=voltar_test\npassword=%s\nsocket=%s\n", wrong, s.socket)), 0o600)
		_, err := dump.Run(context.Background(), d, dump.Options{Settings: folder.Settings{Store: local.New(root), Host: "host1"}})
		if err == nil || !strings.Contains(err.Error(), "Access denied") || strings.Contains(err.Error(), wrong) {
			t.Fatalf("err = %v", err)
		}
		assertEmpty(t, root)
	})
}

func assertEmpty(t *testing.T, root string) {
	t.Helper()
	var files []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) > 0 {
		t.Errorf("the store holds %v after a failed dump", files)
	}
}

// The argv watch itself must catch a password on a command line.
func TestArgvWatchCatchesALeak(t *testing.T) {
	secret := "leak-" + randHex(8)
	stop := watchArgv(t, secret, "sleep")
	cmd := exec.Command("sh", "-c", "sleep 0.2", "sh", secret)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	leaks, seen := stop()
	if len(leaks) == 0 || !seen {
		t.Errorf("the watch missed %s in argv (leaks %v, seen %v)", secret, leaks, seen)
	}
}
