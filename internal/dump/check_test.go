package dump

import (
	"strings"
	"testing"
)

func TestStderrVerdict(t *testing.T) {
	for _, tc := range []struct {
		stderr string
		bad    bool
	}{
		{"", false},
		{"\n\n", false},
		{"mysqldump: [Warning] Using a password on the command line interface can be insecure.\n", false},
		{"Warning: A partial dump from a server that has GTIDs will by default include the GTIDs\n", false},
		{"-- Warning: column statistics not supported by the server.", false},
		{"pg_dump: warning: there are circular foreign-key constraints on this table:\n", false},
		{"mysqldump: Deprecated program name. It will be removed in a future release, use '/usr/bin/mariadb-dump' instead\n", false},
		{"mysqldump: Got error: 1045: \"Access denied for user 'root'@'localhost'\" when trying to connect\n", true},
		{"mysqldump: Couldn't execute 'SHOW FIELDS FROM `v`': View 'db.v' references invalid table(s)\n", true},
		{"mysqldump: Error 2013: Lost connection to server during query when dumping table `t` at row: 12\n", true},
		{"Warning: failed to read table\n", true}, // a "warning" that says something failed
		{"pg_dump: error: connection to server failed\n", true},
		{"some unexpected chatter\n", true},
		{"mysqldump: [Warning] fine\nsomething broke", true}, // last line without newline
	} {
		s := &stderrLog{}
		// Written in small pieces, as SSH delivers it.
		for i := 0; i < len(tc.stderr); i += 7 {
			s.Write([]byte(tc.stderr[i:min(i+7, len(tc.stderr))]))
		}
		s.finish()
		if got := s.problem() != ""; got != tc.bad {
			t.Errorf("%q: bad = %v, want %v (%s)", tc.stderr, got, tc.bad, s.problem())
		}
	}
}

func TestStderrBounded(t *testing.T) {
	s := &stderrLog{}
	long := strings.Repeat("x", 10000)
	for i := 0; i < 100; i++ {
		s.Write([]byte("mysqldump: [Warning] " + long + "\n"))
	}
	s.Write([]byte("mysqldump: Got error: 2013 at the end\n"))
	s.finish()
	if len(s.tail) > 2*stderrKeep || len(s.Tail()) > stderrKeep || len(s.warnings) > keptLines {
		t.Errorf("kept %d bytes, Tail %d, %d warnings", len(s.tail), len(s.Tail()), len(s.warnings))
	}
	if !strings.HasSuffix(s.Tail(), "Got error: 2013 at the end") || s.problem() == "" {
		t.Errorf("tail %q, problem %q", s.Tail(), s.problem())
	}
}

func TestTrailer(t *testing.T) {
	for _, tc := range []struct{ cmd, want string }{
		{DefaultCommand, "-- Dump completed"},
		{"/usr/bin/mariadb-dump --defaults-extra-file=/dev/stdin db1", "-- Dump completed"},
		{"sudo -u mysql mysqldump --defaults-extra-file=/dev/stdin -A", "-- Dump completed"},
		{"mysqldump --compact db", ""},
		{"mysqldump --skip-comments db", ""},
		{"mysqldump --xml db", ""},
		{"mysqldump -A | gzip", ""},
		{"mysqldump -A > /tmp/x", ""},
		{"pg_dumpall", "dump complete"},
		{"sudo -u postgres pg_dump -Fc db", ""},
		{"pg_dump --format=plain db", "dump complete"},
		{"pg_dump -F p db", "dump complete"},
		{"pg_dump -f out.sql db", ""},
		{"cat /backup/dump.sql", ""},
	} {
		if got := Trailer(tc.cmd); got != tc.want {
			t.Errorf("Trailer(%q) = %q, want %q", tc.cmd, got, tc.want)
		}
	}
	mysql := "-- Dump completed"
	for _, tc := range []struct {
		tail string
		ok   bool
	}{
		{"INSERT ...;\n/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;\n\n-- Dump completed on 2026-11-25 19:32:08\n", true},
		{"-- Dump completed\n", true},
		{"INSERT INTO t VALUES ('-- Dump completed');\nINSERT INTO t VALUES (2);\n", false},
		{"-- Dump completed on 2026\n" + strings.Repeat("INSERT INTO t VALUES (1);\n", 20), false},
		{"", false},
	} {
		if got := hasTrailer([]byte(tc.tail), mysql); got != tc.ok {
			t.Errorf("hasTrailer(%q) = %v", tc.tail, got)
		}
	}
	if !hasTrailer([]byte("--\n-- PostgreSQL database cluster dump complete\n--\n\n"), "dump complete") {
		t.Error("pg_dumpall trailer not found")
	}
}

func TestCheckCommand(t *testing.T) {
	for _, tc := range []struct {
		cmd string
		bad bool
	}{
		{DefaultCommand, false},
		{"mysqldump -pSECRET -A", true},
		{"mysqldump -u root -p -A", false}, // prompts; no password in argv
		{"mariadb-dump --password=SECRET", true},
		{"MYSQL_PWD=x mysqldump -A", true},
		{"PGPASSWORD=x pg_dumpall", true},
		{"pg_dump -p5432 db", false},
		{"mysqldump -P3307 -A", false},
	} {
		if err := checkCommand("d", tc.cmd); (err != nil) != tc.bad {
			t.Errorf("%q: %v", tc.cmd, err)
		}
	}
}
