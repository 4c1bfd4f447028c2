// Package crypt encrypts stored objects with age (age-encryption.org/v1):
//
//	tar -> compressor -> age -> SHA-256 tee -> store
//
// An encrypted object is named with ".age" after its compression suffix
// (p1.tar.zst.age) and restores without voltar:
//
//	age -d -i key.txt p1.tar.zst.age | zstd -d | tar -x ...
//
// age encrypts in 64 KiB chunks, each authenticated on its own, so
// encryption and decryption stream with constant memory. Backups need only
// the recipients (public keys); verifying content and restoring need an
// identity (a private key), which can live off the volume host.
package crypt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"golang.org/x/crypto/ssh"
)

// Method names the encryption in manifest.json.
const Method = "age"

// IdentityEnv names an identity file in the environment; it takes
// precedence over the config's encryption.identity_file.
const IdentityEnv = "VOLTAR_AGE_IDENTITY_FILE"

// ErrNoIdentity is matched (errors.Is) when an encrypted object is to be
// read and no identity is configured.
var ErrNoIdentity = errors.New("the object is encrypted and no identity is configured")

// ErrWrongIdentity is matched when no configured identity can decrypt an
// object: it was encrypted to other recipients.
var ErrWrongIdentity = errors.New("no configured identity matches the object's recipients")

// ParseRecipient parses one public key: an age X25519 key (age1...), a
// post-quantum hybrid key (age1pq1...), or an SSH public key (ssh-ed25519,
// ssh-rsa) as in authorized_keys. It returns the recipient and its
// canonical text for the manifest (an SSH key without its comment).
func ParseRecipient(s string) (age.Recipient, string, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "age1pq1"):
		r, err := age.ParseHybridRecipient(s)
		if err != nil {
			return nil, "", err
		}
		return r, r.String(), nil
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, "", err
		}
		return r, r.String(), nil
	case strings.HasPrefix(s, "ssh-ed25519 "), strings.HasPrefix(s, "ssh-rsa "):
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
		if err != nil {
			return nil, "", fmt.Errorf("malformed SSH public key: %v", err)
		}
		r, err := agessh.ParseRecipient(s)
		if err != nil {
			return nil, "", err
		}
		return r, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))), nil
	case strings.HasPrefix(s, "AGE-SECRET-KEY-"), strings.HasPrefix(s, "-----BEGIN"):
		// Never echo it: it is a private key.
		return nil, "", errors.New("this is a private key; recipients are public keys (age-keygen -y KEYFILE prints the public one)")
	}
	return nil, "", fmt.Errorf("%q is not an age public key (age1...) or an ssh-ed25519/ssh-rsa public key", abbrev(s))
}

// abbrev shortens what is echoed of an unparsable key.
func abbrev(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Recipients are the public keys every stored object is encrypted to. A nil
// *Recipients means no encryption.
type Recipients struct {
	list []age.Recipient
	keys []string
}

// NewRecipients parses keys (see ParseRecipient) and reads each recipients
// file: age's recipients-file format, one key per line, "#" comments and
// blank lines ignored; SSH public keys are accepted too, like `age -R`.
// Errors name the file and line. At least one recipient is required.
func NewRecipients(keys []string, files []string) (*Recipients, error) {
	r := &Recipients{}
	seen := map[string]bool{}
	add := func(rc age.Recipient, key string) {
		if !seen[key] {
			seen[key] = true
			r.list = append(r.list, rc)
			r.keys = append(r.keys, key)
		}
	}
	for i, k := range keys {
		rc, key, err := ParseRecipient(k)
		if err != nil {
			return nil, fmt.Errorf("recipient %d: %w", i+1, err)
		}
		add(rc, key)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("recipients file: %w", err)
		}
		n := 0
		sc := bufio.NewScanner(bytes.NewReader(data))
		for line := 1; sc.Scan(); line++ {
			s := strings.TrimSpace(sc.Text())
			if s == "" || strings.HasPrefix(s, "#") {
				continue
			}
			if !utf8.ValidString(s) {
				return nil, fmt.Errorf("recipients file %s line %d: not valid UTF-8", f, line)
			}
			rc, key, err := ParseRecipient(s)
			if err != nil {
				return nil, fmt.Errorf("recipients file %s line %d: %w", f, line, err)
			}
			add(rc, key)
			n++
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("recipients file %s: %w", f, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("recipients file %s holds no recipients", f)
		}
	}
	if len(r.list) == 0 {
		return nil, errors.New("no recipients")
	}
	// age refuses some mixes (post-quantum with classic keys) when
	// encrypting: find out now, not in the middle of a backup.
	w, err := age.Encrypt(io.Discard, r.list...)
	if err != nil {
		return nil, err
	}
	w.Close()
	return r, nil
}

// Keys returns the recipients' public keys, for the manifest.
func (r *Recipients) Keys() []string { return append([]string(nil), r.keys...) }

// Encrypt starts an age stream to w, encrypted to every recipient: the
// header is written at once, then 64 KiB chunks as data arrives. The caller
// must Close the writer to write the last chunk; it does not close w.
func (r *Recipients) Encrypt(w io.Writer) (io.WriteCloser, error) {
	ew, err := age.Encrypt(w, r.list...)
	if err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	return ew, nil
}

// Identities are the private keys that decrypt stored objects.
type Identities struct {
	// Path is the file they were read from (never their content: that is
	// the secret).
	Path string
	ids  []age.Identity
}

// LoadIdentities reads the private keys in path: an age identity file (one
// AGE-SECRET-KEY-1... per line, as age-keygen writes it) or an unencrypted
// OpenSSH ed25519/RSA private key. The file must be a regular file that
// neither group nor others can access (mode 0600 or 0400), as for ssh.
// Errors never quote the file's content.
func LoadIdentities(path string) (*Identities, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("identity file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, &PermissionError{Path: path, Mode: perm}
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	var ids []age.Identity
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		id, err := agessh.ParseIdentity(data)
		var pm *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &pm):
			return nil, fmt.Errorf("identity file %s: the SSH key is protected by a passphrase, which voltar cannot ask for; use an age identity (age-keygen) instead", path)
		case err != nil:
			return nil, fmt.Errorf("identity file %s: not a usable SSH private key: %v", path, err)
		}
		ids = append(ids, id)
	} else {
		// age's parser neither echoes lines nor key material.
		ids, err = age.ParseIdentities(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("identity file %s: %v", path, err)
		}
	}
	return &Identities{Path: path, ids: ids}, nil
}

// PermissionError is an identity file others could read.
type PermissionError struct {
	Path string
	Mode os.FileMode
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("identity file %s is accessible by group or others (mode %04o); it holds a private key", e.Path, uint32(e.Mode))
}

// Decrypt reads the age stream r. It reads and checks the header at once:
// the error matches ErrNoIdentity when i is nil and ErrWrongIdentity when
// none of i's keys is a recipient. Each 64 KiB chunk is authenticated as it
// is read; a damaged or truncated stream fails the Read that reaches it.
func (i *Identities) Decrypt(r io.Reader) (io.Reader, error) {
	if i == nil {
		return nil, ErrNoIdentity
	}
	d, err := age.Decrypt(r, i.ids...)
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return nil, fmt.Errorf("%w (identity file %s)", ErrWrongIdentity, i.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	return d, nil
}

// Describe shortens a recipient's key for a message: age keys as they are,
// SSH keys as their type and SHA256 fingerprint (what ssh-keygen -l shows).
func Describe(key string) string {
	if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key)); err == nil {
		return pk.Type() + " " + ssh.FingerprintSHA256(pk)
	}
	return key
}

// Random access to an age file: the payload after the header and a
// 16-byte nonce is a sequence of chunks of ChunkSize plaintext bytes,
// each sealed with a 16-byte tag (age's STREAM construction).
const (
	ChunkSize       = 64 << 10
	SealedChunkSize = ChunkSize + 16 // as stored
	nonceSize       = 16
)

// maxHeader bounds the age header DecryptAt looks for (many SSH-RSA
// recipients make it a few KiB).
const maxHeader = 1 << 20

// RandomReader decrypts parts of an age file.
type RandomReader struct {
	io.ReaderAt       // the plaintext
	Size        int64 // of the plaintext
	payload     int64 // where the first chunk starts in the file
	stored      int64 // the file's size
}

// DecryptAt opens the age file src of size bytes for random access; see
// Decrypt for the errors. The ReaderAt authenticates each chunk it reads.
func (i *Identities) DecryptAt(src io.ReaderAt, size int64) (*RandomReader, error) {
	if i == nil {
		return nil, ErrNoIdentity
	}
	payload, err := headerEnd(src, size)
	if err != nil {
		return nil, err
	}
	payload += nonceSize
	r, psize, err := age.DecryptReaderAt(src, size, i.ids...)
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return nil, fmt.Errorf("%w (identity file %s)", ErrWrongIdentity, i.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	return &RandomReader{ReaderAt: r, Size: psize, payload: payload, stored: size}, nil
}

// headerEnd finds where an age file's header ends: after its MAC line,
// "--- <base64>\n". It reads 4 KiB first (one recipient's header is a
// few hundred bytes) and more only while the end is not found.
func headerEnd(src io.ReaderAt, size int64) (int64, error) {
	for n := int64(4 << 10); ; n *= 4 {
		head := make([]byte, min(size, n, maxHeader))
		m, err := src.ReadAt(head, 0)
		if m < len(head) && err != nil {
			return 0, fmt.Errorf("age: read header: %w", err)
		}
		if k := bytes.Index(head[:m], []byte("\n--- ")); k >= 0 {
			if e := bytes.IndexByte(head[k+1:m], '\n'); e >= 0 {
				return int64(k + 1 + e + 1), nil
			}
		}
		if int64(len(head)) == size || len(head) == maxHeader {
			return 0, errors.New("age: no header end found")
		}
	}
}

// Stored returns the range of the stored file that holds plaintext bytes
// [off, off+n): what a reader fetches to decrypt them.
func (r *RandomReader) Stored(off, n int64) (int64, int64) {
	if n <= 0 {
		return r.payload, 0
	}
	first, last := off/ChunkSize, (off+n-1)/ChunkSize
	start := r.payload + first*SealedChunkSize
	end := min(r.payload+(last+1)*SealedChunkSize, r.stored)
	return start, end - start
}
