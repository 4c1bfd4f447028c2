package dump_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// fakeSSH is an in-process SSH server on 127.0.0.1 whose "exec" requests
// run the behaviours in commands below instead of programs, so that every
// way a remote command can end (exit status, signal, no exit status at
// all) can be produced on demand.
type fakeSSH struct {
	addr    string
	hostKey []ssh.Signer
	// ClientKey is an unencrypted private key file the server accepts.
	ClientKey string
	// Stdin records what each session received on stdin.
	mu    sync.Mutex
	stdin []string
	ln    net.Listener
}

func newSigner(t testing.TB, rsaKey bool) (ssh.Signer, []byte) {
	t.Helper()
	var priv any
	if rsaKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	} else {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	return s, pem.EncodeToMemory(blk)
}

// startFakeSSH starts a server with the given host keys (ed25519 when none).
func startFakeSSH(t *testing.T, hostKeys ...ssh.Signer) *fakeSSH {
	t.Helper()
	if len(hostKeys) == 0 {
		s, _ := newSigner(t, false)
		hostKeys = []ssh.Signer{s}
	}
	client, clientPEM := newSigner(t, false)
	dir := t.TempDir()
	f := &fakeSSH{hostKey: hostKeys, ClientKey: filepath.Join(dir, "id_ed25519")}
	if err := os.WriteFile(f.ClientKey, clientPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), client.PublicKey().Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln, f.addr = ln, ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.serve(c, cfg)
			}()
		}
	}()
	return f
}

func (f *fakeSSH) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go f.session(ch, creqs)
	}
}

func (f *fakeSSH) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(false, nil)
			continue
		}
		var exec struct{ Command string }
		ssh.Unmarshal(req.Payload, &exec)
		req.Reply(true, nil)
		stdin, _ := io.ReadAll(ch)
		f.mu.Lock()
		f.stdin = append(f.stdin, string(stdin))
		f.mu.Unlock()
		run(ch, exec.Command, stdin)
		return
	}
}

func exitStatus(ch ssh.Channel, status uint32) {
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
}

// sqlBody is what the fake "mysqldump" writes before its trailer.
const sqlBody = "-- MariaDB dump 10.19\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1),(2),(3);\n"

// run is the fake remote shell: each command is one way to end.
func run(ch ssh.Channel, cmd string, stdin []byte) {
	fields := strings.Fields(cmd)
	name := ""
	if len(fields) > 0 {
		name = fields[0]
	}
	switch name {
	case "cat": // echo stdin, exit 0
		ch.Write(stdin)
		exitStatus(ch, 0)
	case "mysqldump": // a complete fake dump; --truncated: exit 0 without the trailer
		ch.Write([]byte(sqlBody))
		if !strings.Contains(cmd, "--truncated") {
			ch.Write([]byte("\n-- Dump completed on 2026-11-25 19:32:08\n"))
		}
		exitStatus(ch, 0)
	case "big": // 8 MiB of text, then exit 0
		line := bytes.Repeat([]byte("INSERT INTO t VALUES (42,'voltar');\n"), 1000)
		for n := 0; n < 8<<20; n += len(line) {
			if _, err := ch.Write(line); err != nil {
				return
			}
		}
		exitStatus(ch, 0)
	case "fail":
		ch.Write([]byte("partial output\n"))
		ch.Stderr().Write([]byte("mysqldump: Got error: 1049: \"Unknown database 'nope'\" when selecting the database\n"))
		exitStatus(ch, 2)
	case "notfound":
		ch.Stderr().Write([]byte("bash: line 1: nosuchdump: command not found\n"))
		exitStatus(ch, 127)
	case "truncate": // the channel closes without an exit status
		ch.Write([]byte(sqlBody))
	case "signal":
		ch.Write([]byte(sqlBody))
		ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{"KILL", false, "", ""}))
	case "stderr-error": // exit 0, but an error on stderr
		ch.Write([]byte(sqlBody))
		ch.Stderr().Write([]byte("mysqldump: Couldn't execute 'SHOW CREATE TABLE `x`': Table 'db.x' doesn't exist (1146)\n"))
		exitStatus(ch, 0)
	case "warn": // exit 0 with harmless warnings
		ch.Stderr().Write([]byte("mysqldump: [Warning] Using a password on the command line interface can be insecure.\n-- Warning: column statistics not supported by the server."))
		ch.Write([]byte(sqlBody))
		exitStatus(ch, 0)
	case "empty":
		exitStatus(ch, 0)
	case "sleep": // never ends on its own
		time.Sleep(time.Minute)
	default:
		ch.Stderr().Write([]byte(fmt.Sprintf("fake shell: %s: command not found\n", name)))
		exitStatus(ch, 127)
	}
}

// knownHosts writes a known_hosts file with keys for the server's address.
func (f *fakeSSH) knownHosts(t *testing.T, keys ...ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(knownhosts.Line([]string{f.addr}, k) + "\n")
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fakeSSH) host() string { h, _, _ := net.SplitHostPort(f.addr); return h }

func (f *fakeSSH) port() int {
	_, p, _ := net.SplitHostPort(f.addr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

func (f *fakeSSH) stdins() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.stdin...)
}
