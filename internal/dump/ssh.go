package dump

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"voltar/internal/fail"
)

// Sentinels matched (errors.Is) by the host-key errors.
var (
	// ErrHostKeyChanged: known_hosts holds another key for the host.
	ErrHostKeyChanged = errors.New("host key changed")
	// ErrHostKeyUnknown: the host is not in known_hosts and
	// accept_new_host_key is off.
	ErrHostKeyUnknown = errors.New("host key unknown")
	// ErrHostKeyRevoked: known_hosts marks the offered key @revoked.
	ErrHostKeyRevoked = errors.New("host key revoked")
)

// hostKeyError is a refused host key; errors.Is matches its kind.
type hostKeyError struct {
	kind error
	msg  string
}

func (e *hostKeyError) Error() string        { return e.msg }
func (e *hostKeyError) Is(target error) bool { return target == e.kind }

func hostKeyErr(kind error, format string, args ...any) error {
	return &hostKeyError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// loadKey reads an unencrypted private key.
func loadKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fail.Hint(fmt.Errorf("key_file: %w", err),
			"key_file is the private key voltar logs in with; make one with ssh-keygen -t ed25519 -N '' -f %s and add its .pub to the instance user's authorized_keys", path)
	}
	s, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fail.Hint(fmt.Errorf("key_file %s is protected by a passphrase", path),
			"voltar runs unattended and needs a key without one: make a dedicated key (ssh-keygen -t ed25519 -N '' -f KEY) or remove the passphrase (ssh-keygen -p -N '' -f %s); keep it mode 0600, readable by root only", path)
	}
	if err != nil {
		return nil, fail.Hint(fmt.Errorf("key_file %s: %w", path, err), "key_file must be an OpenSSH or PEM private key, not the .pub")
	}
	return s, nil
}

// knownHostsMu serializes appends to known_hosts files by concurrent dumps.
var knownHostsMu sync.Mutex

// hostKeys checks server host keys against a known_hosts file. A host not
// in the file is recorded when acceptNew is set; a key other than the
// recorded one is always refused.
type hostKeys struct {
	file      string
	acceptNew bool
	log       *slog.Logger
	cb        ssh.HostKeyCallback
	// err is what check returned, so a failed handshake reports it even if
	// the ssh package rewraps it.
	err error
	// Fingerprint of the key the server presented and that was accepted.
	fingerprint string
}

func newHostKeys(file string, acceptNew bool, log *slog.Logger) (*hostKeys, error) {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) && acceptNew {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		f.Close()
	} else if err != nil {
		return nil, fail.Hint(fmt.Errorf("known_hosts: %w", err),
			"voltar always verifies host keys: put the instance's key into %s (ssh-keyscan -t ed25519 HOST >> %s, after checking its fingerprint on the instance's console), or set accept_new_host_key: true to record it on first contact", file, file)
	}
	h := &hostKeys{file: file, acceptNew: acceptNew, log: log}
	if err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *hostKeys) reload() error {
	cb, err := knownhosts.New(h.file)
	if err != nil {
		return fail.Hint(fmt.Errorf("known_hosts: %w", err), "fix or remove the broken line in %s", h.file)
	}
	h.cb = cb
	return nil
}

// check is the ssh.HostKeyCallback.
func (h *hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := h.verify(hostname, remote, key)
	if err == nil {
		h.fingerprint = ssh.FingerprintSHA256(key)
	}
	h.err = err
	return err
}

func (h *hostKeys) verify(hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := h.classify(hostname, key, h.cb(hostname, remote, key))
	if !errors.Is(err, ErrHostKeyUnknown) || !h.acceptNew {
		return err
	}
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	// Another dump may have recorded this host meanwhile.
	if err := h.reload(); err != nil {
		return err
	}
	err = h.classify(hostname, key, h.cb(hostname, remote, key))
	if !errors.Is(err, ErrHostKeyUnknown) {
		return err
	}
	line := knownhosts.Line([]string{hostname}, key) + "\n"
	f, err := os.OpenFile(h.file, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("record host key of %s: %w", hostname, err)
	}
	_, err = f.WriteString(line)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("record host key of %s in %s: %w", hostname, h.file, err)
	}
	h.log.Warn("recorded the host key of a new host (accept_new_host_key)", "host", hostname,
		"key", keyName(key), "known_hosts", h.file)
	return h.reload()
}

// classify turns knownhosts' answer into voltar's errors.
func (h *hostKeys) classify(hostname string, key ssh.PublicKey, err error) error {
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return fail.Hint(hostKeyErr(ErrHostKeyRevoked, "host key for %s (%s) is marked @revoked in %s line %d",
			hostname, keyName(key), re.Revoked.Filename, re.Revoked.Line),
			"the instance presents a key that was revoked; do not trust it until it has new host keys")
	case errors.As(err, &ke) && len(ke.Want) > 0:
		var known []string
		for _, k := range ke.Want {
			known = append(known, fmt.Sprintf("%s (%s line %d)", keyName(k.Key), k.Filename, k.Line))
		}
		return fail.Hint(hostKeyErr(ErrHostKeyChanged, "host key for %s changed: it presents %s, known_hosts has %s; refusing to connect",
			hostname, keyName(key), strings.Join(known, ", ")),
			"someone may be intercepting the connection; only if the instance's host keys were really regenerated, check the new fingerprint on its console and replace the old line (ssh-keygen -R '%s' -f %s, then ssh-keyscan ... >> %s)",
			knownhosts.Normalize(hostname), h.file, h.file)
	case errors.As(err, &ke):
		host, port := splitHostPort(hostname)
		return fail.Hint(hostKeyErr(ErrHostKeyUnknown, "host key for %s is not in known_hosts %s (it presents %s)",
			hostname, h.file, keyName(key)),
			"check that fingerprint on the instance (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub there), then add the key: ssh-keyscan -p %s -t %s %s >> %s; or set accept_new_host_key: true to record it on first contact",
			port, keyTypeShort(key), host, h.file)
	}
	return fmt.Errorf("check host key of %s: %w", hostname, err)
}

// algorithms lists the host key algorithms of the keys known_hosts holds
// for hostname, so the server is asked for a key that can be checked: a
// server with an RSA and an ed25519 key, known by its RSA key only, must not
// be seen as changed because it offered ed25519 first. Nil for an unknown
// host (any algorithm).
func (h *hostKeys) algorithms(hostname string) []string {
	err := h.cb(hostname, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, probeKey)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(algos ...string) {
		for _, a := range algos {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return out
}

// probeKey is a key no server has; checking it lists the known keys.
var probeKey = func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
}()

func keyName(k ssh.PublicKey) string {
	return strings.ToUpper(keyTypeShort(k)) + " key " + ssh.FingerprintSHA256(k)
}

// keyTypeShort names a key type as ssh-keyscan -t takes it: ed25519, rsa, ecdsa.
func keyTypeShort(k ssh.PublicKey) string {
	t := k.Type()
	switch {
	case strings.HasPrefix(t, "ecdsa"):
		return "ecdsa"
	case strings.HasPrefix(t, "sk-ecdsa"):
		return "ecdsa-sk"
	case strings.HasPrefix(t, "sk-ssh-ed25519"):
		return "ed25519-sk"
	}
	return strings.TrimPrefix(t, "ssh-")
}

func splitHostPort(addr string) (host, port string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, "22"
	}
	return host, port
}

// dial connects and logs in. The connection is closed when ctx ends, which
// also aborts a hanging handshake; the caller must Close the client.
func dial(ctx context.Context, addr, user string, signer ssh.Signer, hk *hostKeys) (*ssh.Client, func() bool, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fail.Hint(fmt.Errorf("connect to %s: %w", addr, err), "check host: and port: of the dump, and that sshd runs on the instance")
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cfg := &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms(addr),
		ClientVersion:     "SSH-2.0-voltar",
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		stop()
		conn.Close()
		switch {
		case hk.err != nil:
			return nil, nil, hk.err
		case ctx.Err() != nil:
			return nil, nil, fmt.Errorf("ssh %s: %w", addr, ctx.Err())
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, nil, fail.Hint(fmt.Errorf("ssh %s@%s: the key was refused: %w", user, addr, err),
				"add the public half of key_file to ~%s/.ssh/authorized_keys on the instance", user)
		}
		return nil, nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	return ssh.NewClient(c, chans, reqs), stop, nil
}
