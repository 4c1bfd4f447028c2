// Package signing signs manifests with an OpenSSH key and checks those
// signatures against an allowed-signers file. It runs ssh-keygen for both
// (`-Y sign`, `-Y find-principals`, `-Y verify`), so a manifest.json.sig is
// exactly what an operator checks by hand with `ssh-keygen -Y verify`, and
// the private key is only ever named by its path: it stays in its file,
// never on a command line or in a log.
package signing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"voltar/internal/catalog"
	"voltar/internal/fail"
	"voltar/internal/layout"
	"voltar/internal/store"
)

// Tool is the program that signs and verifies.
const Tool = "ssh-keygen"

// maxSig bounds what is read of a manifest.json.sig: a real one is under
// 3 KiB (RSA 16384), and it is handed to ssh-keygen through a pipe.
const maxSig = 32 << 10

// Signer signs manifests with the OpenSSH private key in KeyFile.
type Signer struct{ keyFile string }

// NewSigner checks that keyFile is a private key only its owner can read
// and that ssh-keygen signs with it (without a passphrase: nobody is there
// to type one at night), by signing an empty message, so a bad key stops a
// backup before anything is snapshotted.
func NewSigner(ctx context.Context, keyFile string) (*Signer, error) {
	fi, err := os.Stat(keyFile)
	if err != nil {
		return nil, fail.Usage(fail.Hint(fmt.Errorf("signing.key_file: %w", err),
			"make a key with: ssh-keygen -t ed25519 -N '' -C voltar-manifest -f %s", keyFile))
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fail.Usage(fail.Hint(fmt.Errorf("signing.key_file %s: mode %04o lets others read the private key", keyFile, fi.Mode().Perm()),
			"chmod 600 %s", keyFile))
	}
	s := &Signer{keyFile: keyFile}
	if _, err := s.Sign(ctx, nil); err != nil {
		return nil, fail.Usage(fail.Hint(err, "signing.key_file must be an OpenSSH private key without a passphrase (ssh-keygen -t ed25519 -N '' -f %s); ssh-keygen comes with openssh-client", keyFile))
	}
	return s, nil
}

// Sign returns the armored SSH signature of data in layout.SigNamespace,
// what `ssh-keygen -Y sign -n voltar-manifest` writes.
func (s *Signer) Sign(ctx context.Context, data []byte) ([]byte, error) {
	out, err := run(ctx, data, nil, "-Y", "sign", "-f", s.keyFile, "-n", layout.SigNamespace)
	if err != nil {
		return nil, fmt.Errorf("sign %s with %s: %w", layout.Manifest, s.keyFile, err)
	}
	if !bytes.HasPrefix(out, []byte("-----BEGIN SSH SIGNATURE-----")) {
		return nil, fmt.Errorf("sign %s with %s: %s wrote no signature", layout.Manifest, s.keyFile, Tool)
	}
	return out, nil
}

// Verifier checks signatures against an allowed-signers file
// (ssh-keygen(1), ALLOWED SIGNERS: "principal [options] key").
type Verifier struct{ allowedSigners string }

// NewVerifier checks that the allowed-signers file can be read.
func NewVerifier(allowedSigners string) (*Verifier, error) {
	f, err := os.Open(allowedSigners)
	if err != nil {
		return nil, fail.Usage(fail.Hint(fmt.Errorf("signing.allowed_signers: %w", err),
			"one line per key: voltar namespaces=\"%s\" ssh-ed25519 AAAA... (the key_file's .pub)", layout.SigNamespace))
	}
	f.Close()
	if _, err := exec.LookPath(Tool); err != nil {
		return nil, fail.Usage(fail.Hint(fmt.Errorf("signing.allowed_signers is set, but %s is missing: %w", Tool, err), "apt-get install openssh-client"))
	}
	return &Verifier{allowedSigners: allowedSigners}, nil
}

// ErrBadSignature is a signature that does not verify: wrong key,
// another namespace, or data that is not what was signed.
var ErrBadSignature = errors.New("bad signature")

// Verify checks sig over data and returns the principal of the
// allowed-signers line whose key made it.
func (v *Verifier) Verify(ctx context.Context, data, sig []byte) (string, error) {
	// ssh-keygen needs the signer's principal to verify; find-principals
	// looks it up by the key inside the signature.
	out, err := run(ctx, nil, sig, "-Y", "find-principals", "-s", "/dev/fd/3", "-f", v.allowedSigners)
	var ee *exitError
	if errors.As(err, &ee) {
		return "", fmt.Errorf("%w: made by a key that %s does not list", ErrBadSignature, v.allowedSigners)
	}
	if err != nil {
		return "", err
	}
	principal, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	_, err = run(ctx, data, sig, "-Y", "verify", "-f", v.allowedSigners, "-I", principal, "-n", layout.SigNamespace, "-s", "/dev/fd/3")
	if errors.As(err, &ee) {
		return "", fmt.Errorf("%w: %s", ErrBadSignature, ee.msg)
	}
	if err != nil {
		return "", err
	}
	return principal, nil
}

// Error is a backup whose manifest signature is missing or does not
// verify.
type Error struct {
	ID     string // the backup's ID with its host
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.ID, layout.ManifestSig, e.Reason)
}

// Hint says what a signature failure means and what to do.
func (v *Verifier) Hint() string {
	return fmt.Sprintf("signing.allowed_signers (%s) requires every manifest to be signed by a key it lists: "+
		"this manifest may have been written by someone who can write to the store; do not restore from it, "+
		"and check the signature by hand (ssh-keygen -Y verify, see the README); backups made before signing.key_file was set have no signature",
		v.allowedSigners)
}

// Check verifies the signature of b's manifest: the bytes the catalog read
// and decoded (b.ManifestData), so what is checked is what is used.
// Missing and bad signatures are *Error; a store failure is returned as
// it is.
func (v *Verifier) Check(ctx context.Context, st store.Store, b *catalog.Backup) error {
	fail := func(format string, args ...any) error {
		return &Error{ID: b.FullID(), Reason: fmt.Sprintf(format, args...)}
	}
	if b.ManifestData == nil {
		return fail("%s was not read", layout.Manifest)
	}
	rc, err := st.Get(ctx, b.Key(layout.ManifestSig))
	if errors.Is(err, store.ErrNotFound) {
		return fail("missing: the manifest is not signed")
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", b.Key(layout.ManifestSig), err)
	}
	sig, err := io.ReadAll(io.LimitReader(rc, maxSig+1))
	rc.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", b.Key(layout.ManifestSig), err)
	}
	if len(sig) > maxSig {
		return fail("larger than %d bytes: not a signature", maxSig)
	}
	if _, err := v.Verify(ctx, b.ManifestData, sig); err != nil {
		if errors.Is(err, ErrBadSignature) {
			return fail("%v", err)
		}
		return err
	}
	return nil
}

// exitError is ssh-keygen exiting non-zero, with its first message line.
type exitError struct{ msg string }

func (e *exitError) Error() string { return e.msg }

// run runs ssh-keygen with stdin on its standard input and, when sig is
// not nil, sig readable at /dev/fd/3. It gets no terminal (a new session)
// and no askpass, so a key with a passphrase fails instead of waiting for
// someone to type it.
func run(ctx context.Context, stdin, sig []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, Tool, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "SSH_ASKPASS_REQUIRE=never")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if sig != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer r.Close()
		// maxSig fits the pipe's buffer: the write does not wait for
		// the reader.
		_, err = w.Write(sig)
		w.Close()
		if err != nil {
			return nil, err
		}
		cmd.ExtraFiles = []*os.File{r}
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil, &exitError{msg: lastLine(stderr.String())}
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", Tool, err)
	}
	return stdout.Bytes(), nil
}

// lastLine is ssh-keygen's message: its last non-empty stderr line
// ("Signature verification failed: incorrect signature", "Load key ...").
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(strings.TrimPrefix(lines[i], "Enter passphrase: "))
		if l != "" && l != "Signing data on standard input" {
			return l
		}
	}
	return Tool + " failed without a message"
}
