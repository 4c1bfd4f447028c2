package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"voltar/internal/report"
	"voltar/internal/testutil"
)

func goodMail() report.MailConfig {
	return report.MailConfig{
		Host: "smtp.example.net", Username: "voltar", PasswordEnv: "VOLTAR_SMTP_PASSWORD",
		From: "voltar <voltar@example.net>", To: []string{"ops@example.net", "Backup Team <backup@example.net>"},
	}
}

func TestMailConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name    string
		edit    func(*report.MailConfig)
		wantErr string // "" for valid
	}{
		{"good", func(*report.MailConfig) {}, ""},
		{"implicit tls", func(c *report.MailConfig) { c.TLS = "tls"; c.Port = 465 }, ""},
		{"no auth", func(c *report.MailConfig) { c.Username, c.PasswordEnv = "", "" }, ""},
		{"password file", func(c *report.MailConfig) { c.PasswordEnv, c.PasswordFile = "", "/etc/voltar/smtp.pw" }, ""},
		{"none to loopback", func(c *report.MailConfig) { c.TLS, c.Host = "none", "127.0.0.1" }, ""},
		{"none to localhost", func(c *report.MailConfig) { c.TLS, c.Host = "none", "localhost" }, ""},
		{"none to ::1", func(c *report.MailConfig) { c.TLS, c.Host = "none", "::1" }, ""},
		{"none to a relay", func(c *report.MailConfig) { c.TLS = "none" }, "allowed only to a loopback host"},
		{"none with skip verify", func(c *report.MailConfig) { c.TLS, c.Host, c.InsecureSkipVerify = "none", "127.0.0.1", true }, "no meaning"},
		{"bad tls", func(c *report.MailConfig) { c.TLS = "ssl" }, `tls "ssl"`},
		{"no host", func(c *report.MailConfig) { c.Host = "" }, "no SMTP host"},
		{"host with port", func(c *report.MailConfig) { c.Host = "smtp.example.net:587" }, "includes a port"},
		{"bad port", func(c *report.MailConfig) { c.Port = 70000 }, "port 70000"},
		{"user without password", func(c *report.MailConfig) { c.PasswordEnv = "" }, "needs password_file or password_env"},
		{"password without user", func(c *report.MailConfig) { c.Username = "" }, "no username"},
		{"two passwords", func(c *report.MailConfig) { c.PasswordFile = "/x" }, "not both"},
		{"no from", func(c *report.MailConfig) { c.From = "" }, "no from address"},
		{"bad from", func(c *report.MailConfig) { c.From = "voltar at example" }, `from "voltar at example"`},
		{"no to", func(c *report.MailConfig) { c.To = nil }, "no recipients"},
		{"bad to", func(c *report.MailConfig) { c.To = []string{"ops@"} }, `to "ops@"`},
		{"negative timeout", func(c *report.MailConfig) { c.Timeout = -time.Second }, "negative timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mc := goodMail()
			c.edit(&mc)
			err := mc.Validate()
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}

func TestSendPasswordSources(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VOLTAR_TEST_EMPTY_PW", "")
	for _, c := range []struct {
		name    string
		edit    func(*report.MailConfig)
		wantErr string
	}{
		{"missing file", func(c *report.MailConfig) { c.PasswordEnv, c.PasswordFile = "", filepath.Join(dir, "nope") }, "nope"},
		{"empty file", func(c *report.MailConfig) { c.PasswordEnv, c.PasswordFile = "", empty }, "is empty"},
		{"unset env", func(c *report.MailConfig) { c.PasswordEnv = "VOLTAR_TEST_EMPTY_PW" }, "VOLTAR_TEST_EMPTY_PW is unset or empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mc := goodMail()
			c.edit(&mc)
			err := report.Send(t.Context(), mc, runs["all-ok-pruned"]())
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("Send() = %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}

func TestSendClosedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	mc := report.MailConfig{Host: "127.0.0.1", TLS: "none", From: "voltar@example.net", To: []string{"ops@example.net"}, Timeout: 5 * time.Second}
	fmt.Sscan(port, &mc.Port)
	err = report.Send(t.Context(), mc, runs["all-ok-pruned"]())
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Send() = %v, want an error naming %s and why", err, addr)
	}
}

// mailpit is a running mailpit's API and SMTP addresses, from
// VOLTAR_TEST_MAILPIT (API, default 127.0.0.1:8025) and
// VOLTAR_TEST_MAILPIT_SMTP (default 127.0.0.1:1025). scripts/start-mailpit.sh
// starts one.
type mailpit struct {
	api  string
	host string
	port int
}

func needMailpit(t *testing.T) mailpit {
	t.Helper()
	api := cmp(os.Getenv("VOLTAR_TEST_MAILPIT"), "127.0.0.1:8025")
	smtp := cmp(os.Getenv("VOLTAR_TEST_MAILPIT_SMTP"), "127.0.0.1:1025")
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + api + "/api/v1/info")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %s", resp.Status)
		}
	}
	if err != nil {
		testutil.Unavailable(t, "no mailpit API at %s (%v); start one with scripts/start-mailpit.sh", api, err)
	}
	host, port, err := net.SplitHostPort(smtp)
	if err != nil {
		t.Fatalf("VOLTAR_TEST_MAILPIT_SMTP=%q: %v", smtp, err)
	}
	m := mailpit{api: "http://" + api, host: host}
	fmt.Sscan(port, &m.port)
	return m
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (m mailpit) get(t *testing.T, path string, v any) []byte {
	t.Helper()
	resp, err := http.Get(m.api + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", path, resp.Status, err, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, b)
		}
	}
	return b
}

type address struct{ Name, Address string }

// find waits for the messages whose subject is subject and deletes them when
// the test ends.
func (m mailpit) find(t *testing.T, subject string, want int) []string {
	t.Helper()
	var ids []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		var list struct {
			Messages []struct{ ID, Subject string }
		}
		m.get(t, "/api/v1/messages?limit=500", &list)
		ids = ids[:0]
		for _, msg := range list.Messages {
			if msg.Subject == subject {
				ids = append(ids, msg.ID)
			}
		}
		if len(ids) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() { m.delete(t, ids) })
	if len(ids) != want {
		t.Fatalf("mailpit holds %d messages with subject %q, want %d", len(ids), subject, want)
	}
	return ids
}

func (m mailpit) delete(t *testing.T, ids []string) {
	if len(ids) == 0 {
		return
	}
	body, _ := json.Marshal(map[string][]string{"IDs": ids})
	req, _ := http.NewRequest(http.MethodDelete, m.api+"/api/v1/messages", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("delete test messages: %v", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("delete test messages: %s", resp.Status)
	}
}

// uniqueRun is a report whose host name, and so subject, no other test run
// shares.
func uniqueRun(name string) *report.Run {
	r := runs[name]()
	r.Host = fmt.Sprintf("mailtest-%d", time.Now().UnixNano())
	return r
}

func TestSendMailpit(t *testing.T) {
	mp := needMailpit(t)
	const secret = "pw-Zq8!never-in-mail"
	pwFile := filepath.Join(t.TempDir(), "smtp.pw")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := uniqueRun("one-failed-hints")
	mc := report.MailConfig{
		Host: mp.host, Port: mp.port, TLS: "none",
		Username: "voltar-test", PasswordFile: pwFile,
		From: "voltar <voltar@example.net>", To: []string{"ops@example.net", "Backup Team <backup@example.net>"},
		Timeout: 10 * time.Second,
	}
	if err := report.Send(t.Context(), mc, r); err != nil {
		t.Fatal(err)
	}
	subject := report.Subject(r)
	id := mp.find(t, subject, 1)[0]

	var msg struct {
		Subject     string
		From        address
		To          []address
		Username    string
		Text        string
		Attachments []struct{ PartID, FileName, ContentType string }
	}
	mp.get(t, "/api/v1/message/"+id, &msg)
	if want := "[voltar] " + r.Host + ": FAILED 1/3 volumes"; msg.Subject != want {
		t.Errorf("subject %q, want %q", msg.Subject, want)
	}
	if msg.From.Address != "voltar@example.net" {
		t.Errorf("from %+v", msg.From)
	}
	if len(msg.To) != 2 || msg.To[0].Address != "ops@example.net" || msg.To[1].Address != "backup@example.net" || msg.To[1].Name != "Backup Team" {
		t.Errorf("to %+v", msg.To)
	}
	if msg.Username != "voltar-test" {
		t.Errorf("SMTP AUTH user %q, want voltar-test", msg.Username)
	}
	var text bytes.Buffer
	if err := report.Text(&text, r); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(strings.ReplaceAll(msg.Text, "\r\n", "\n")), strings.TrimSpace(text.String()); got != want {
		t.Errorf("body differs from the text report\n--- got\n%s\n--- want\n%s", got, want)
	}
	for _, line := range []string{
		"  ok      nova-volumes/volume-00000019    1m 21s  3.5 GiB  4.3 GiB  48,213      3.4%",
		"  FAILED  nova-volumes/volume-0000001a     2m 3s        -        -       -    100.0%",
		"  hint:     raise snapshot_size (now 10%ORIGIN) for this volume",
	} {
		if !strings.Contains(msg.Text, line) {
			t.Errorf("body lacks %q:\n%s", line, msg.Text)
		}
	}

	if len(msg.Attachments) != 1 {
		t.Fatalf("attachments %+v, want the JSON report", msg.Attachments)
	}
	att := msg.Attachments[0]
	if !strings.HasPrefix(att.ContentType, "application/json") || att.FileName != "voltar-"+r.Host+"-2026-11-25T000001Z.json" {
		t.Errorf("attachment %+v", att)
	}
	var got struct {
		Host          string
		OK            bool
		VolumesFailed int `json:"volumes_failed"`
		Volumes       []struct{ ID, Status string }
	}
	raw := mp.get(t, "/api/v1/message/"+id+"/part/"+att.PartID, &got)
	var want bytes.Buffer
	report.JSON(&want, r)
	if !bytes.Equal(raw, want.Bytes()) {
		t.Errorf("attached JSON differs from JSON()\n--- got\n%s", raw)
	}
	if got.Host != r.Host || got.OK || got.VolumesFailed != 1 || len(got.Volumes) != 3 || got.Volumes[1].Status != "failed" {
		t.Errorf("attached JSON %+v", got)
	}

	source := mp.get(t, "/api/v1/message/"+id+"/raw", nil)
	if bytes.Contains(source, []byte(secret)) {
		t.Error("the mail contains the SMTP password")
	}
}

// A stored backup whose prune failed says so in the subject and the body,
// with the backup's size.
func TestSendMailpitPruneFailed(t *testing.T) {
	mp := needMailpit(t)
	r := uniqueRun("stored-prune-failed")
	mc := report.MailConfig{Host: mp.host, Port: mp.port, TLS: "none", From: "voltar@example.net", To: []string{"ops@example.net"},
		Timeout: 10 * time.Second}
	if err := report.Send(t.Context(), mc, r); err != nil {
		t.Fatal(err)
	}
	id := mp.find(t, report.Subject(r), 1)[0]
	var msg struct{ Subject, Text string }
	mp.get(t, "/api/v1/message/"+id, &msg)
	if want := "[voltar] " + r.Host + ": FAILED 1/2 volumes (1 stored, prune failed), FAILED 1/1 dumps (1 stored, prune failed)"; msg.Subject != want {
		t.Errorf("subject %q, want %q", msg.Subject, want)
	}
	for _, line := range []string{
		"  PRUNE FAILED  nova-volumes/volume-00000019    1m 21s  3.5 GiB  4.3 GiB  48,213      3.4%",
		"  backup    nova-volumes/volume-00000019/2026-11-25T000002Z",
		"  Volumes       1 ok, 1 failed (1 stored, prune failed) of 2",
	} {
		if !strings.Contains(strings.ReplaceAll(msg.Text, "\r\n", "\n"), line) {
			t.Errorf("body lacks %q:\n%s", line, msg.Text)
		}
	}
}

// TestSendMailpitTLS: mailpit without a certificate offers no STARTTLS and
// speaks no TLS; both modes must fail before anything is sent, naming the
// server.
func TestSendMailpitTLS(t *testing.T) {
	mp := needMailpit(t)
	for _, c := range []struct{ tls, wantErr string }{
		{"starttls", "does not support STARTTLS"},
		{"", "does not support STARTTLS"}, // the default
		{"tls", "tls"},
	} {
		t.Run(cmp(c.tls, "default"), func(t *testing.T) {
			r := uniqueRun("all-ok-pruned")
			mc := report.MailConfig{
				Host: mp.host, Port: mp.port, TLS: c.tls,
				From: "voltar@example.net", To: []string{"ops@example.net"}, Timeout: 5 * time.Second,
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := report.Send(ctx, mc, r)
			addr := net.JoinHostPort(mp.host, fmt.Sprint(mp.port))
			if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Send() = %v, want an error naming %s and containing %q", err, addr, c.wantErr)
			}
			mp.find(t, report.Subject(r), 0)
		})
	}
}
