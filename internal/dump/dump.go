// Package dump takes database dumps inside instances over SSH:
//
//	ssh (host key verified) -> remote command's stdout -> zstd -> SHA-256 -> store
//
// The dump streams straight into the store; nothing is written inside the
// instance. Database credentials travel over the session's stdin, never on
// a command line. A non-zero exit status, a signal, a session that ends
// without an exit status (a truncated stream), stderr output that is not a
// warning, or a dump program's missing completion trailer fail the dump,
// and then nothing is published: the object is only committed after the
// command was seen to succeed, and SHA256SUMS and manifest.json follow.
package dump

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"voltar/internal/cleanup"
	"voltar/internal/codec"
	"voltar/internal/crypt"
	"voltar/internal/fail"
	"voltar/internal/folder"
	"voltar/internal/layout"
	"voltar/internal/manifest"
)

// Store layout and manifest values of a dump.
const (
	// Group is the store folder of every dump: <host>/dumps/<name>/<ts>/.
	Group = layout.DumpGroup
	// Kind is manifest.Volume.Kind of a dump.
	Kind = "dump"
	// Mode is manifest.Filesystem.Mode of the dump object.
	Mode = manifest.ModeDump
)

// SQLName is the file Restore writes: the object's name without the
// compression's and encryption's suffixes.
var SQLName = ObjectName(codec.None, false)

// Target is one configured dump: where to connect and what to run. It is
// dump's own plain copy of the config's dumps: entry (config.Dump, which
// also carries the retention policy, a matter of prune), so this package
// needs nothing from config.
type Target struct {
	Name string
	Host string
	Port int // default 22
	User string
	// KeyFile is the private key voltar logs in with.
	KeyFile string
	// KnownHosts must hold the instance's host key: host keys are always
	// verified.
	KnownHosts string
	// AcceptNewHostKey trusts and records an unknown host's key on first
	// contact (never a changed one).
	AcceptNewHostKey bool
	// Command writes the dump to stdout; default DefaultCommand.
	Command string
	// CredentialsFile is sent over the SSH session's stdin, never in argv.
	CredentialsFile string
	Timeout         time.Duration // default DefaultTimeout
}

// Defaults for what a Target leaves out.
const (
	DefaultCommand = "mysqldump --defaults-extra-file=/dev/stdin --all-databases --single-transaction --quick --routines --events --triggers"
	DefaultPort    = 22
	DefaultTimeout = time.Hour
)

// Options configure dumps; one Options serves every dump of a run.
type Options struct {
	// Settings: the dump goes to <Host>/dumps/... of Store, compressed
	// (default zstd) and, with Recipients, age-encrypted
	// (dump.sql.zst.age); CleanupTimeout defaults to 2 minutes.
	folder.Settings
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Compression == "" {
		o.Compression = codec.Zstd
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CleanupTimeout <= 0 {
		o.CleanupTimeout = 2 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// ObjectName is the dump object's name for a compression, encrypted or
// not: dump.sql.zst, dump.sql.zst.age.
func ObjectName(compression string, encrypted bool) string {
	return layout.Object{FS: layout.Dump, Kind: layout.SQL, Compression: compression, Encrypted: encrypted}.Name()
}

// IsDump reports whether a manifest describes a database dump.
func IsDump(m *manifest.Manifest) bool { return m != nil && m.Volume.Kind == Kind }

// Command is the remote command of d, the default when unset.
func Command(d Target) string {
	if strings.TrimSpace(d.Command) == "" {
		return DefaultCommand
	}
	return d.Command
}

// Addr is d's SSH address, host:port.
func Addr(d Target) string {
	port := d.Port
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(d.Host, strconv.Itoa(port))
}

// Timeout is d's limit for connecting plus dumping.
func Timeout(d Target) time.Duration {
	if d.Timeout <= 0 {
		return DefaultTimeout
	}
	return d.Timeout
}

// Select returns the named dumps in config order, all of them when names is
// empty. An unknown name is a usage error.
func Select(all []Target, names []string) ([]Target, error) {
	if len(all) == 0 {
		return nil, fail.Usage(fail.Hint(errors.New("no dumps are configured"), "add a dumps: entry to the config (see examples/voltar.yaml)"))
	}
	if len(names) == 0 {
		return all, nil
	}
	byName := map[string]Target{}
	var known []string
	for _, d := range all {
		byName[d.Name] = d
		known = append(known, d.Name)
	}
	var out []Target
	seen := map[string]bool{}
	for _, n := range names {
		d, ok := byName[n]
		if !ok {
			return nil, fail.Usage(fail.Hint(fmt.Errorf("no dump named %q in the config", n), "configured dumps: %s", strings.Join(known, ", ")))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, d)
		}
	}
	return out, nil
}

// passwordInArgv catches a password written into the command itself,
// where every process listing on the instance would show it.
var passwordInArgv = regexp.MustCompile(`(^|\s)(--password=\S|-p\S|(PGPASSWORD|MYSQL_PWD)=)`)

// checkCommand refuses commands that would put a password into argv or the
// environment of the remote process.
func checkCommand(name, cmd string) error {
	m := passwordInArgv.FindStringSubmatch(cmd)
	if m == nil {
		return nil
	}
	// pg_dump's -p is the port; only mysql tools take -pPASSWORD.
	if strings.HasPrefix(m[2], "-p") && !strings.Contains(cmd, "mysql") && !strings.Contains(cmd, "mariadb") {
		return nil
	}
	return fail.Usage(fail.Hint(fmt.Errorf("dump %s: the command carries a password (%s...), which every process listing on the instance shows", name, strings.TrimSpace(m[2])[:2]),
		"put the credentials into credentials_file; voltar sends it over the session's stdin (e.g. mysqldump --defaults-extra-file=/dev/stdin ...)"))
}

// Run takes one dump and returns the published manifest. On error nothing
// is left in the store.
func Run(ctx context.Context, d Target, o Options) (*manifest.Manifest, error) {
	o.defaults()
	cmd := Command(d)
	if err := checkCommand(d.Name, cmd); err != nil {
		return nil, err
	}
	log := o.Logger.With("dump", d.Name)
	// Read everything local before connecting, so a missing file fails fast.
	signer, err := loadKey(d.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", d.Name, err)
	}
	var creds []byte
	if d.CredentialsFile != "" {
		if creds, err = os.ReadFile(d.CredentialsFile); err != nil {
			return nil, fail.Hint(fmt.Errorf("dump %s: credentials_file: %w", d.Name, err),
				"credentials_file is sent to the remote command's stdin, e.g. a [client] option file with user= and password=")
		}
		if fi, err := os.Stat(d.CredentialsFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("credentials_file is readable by others; chmod 0600 it", "file", d.CredentialsFile)
		}
	}
	hk, err := newHostKeys(d.KnownHosts, d.AcceptNewHostKey, log)
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", d.Name, err)
	}

	timeout := Timeout(d)
	parent := ctx
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
	defer cancel()

	prefix, started, err := folder.Free(ctx, o.Store, func(t time.Time) string { return layout.DumpFolder(o.Host, d.Name, t) })
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", d.Name, err)
	}
	r := &run{d: d, o: o, log: log, cmd: cmd, key: signer, creds: creds, prefix: prefix, object: ObjectName(o.Compression, o.Recipients != nil)}
	m, err := r.do(ctx, hk, started)
	if err != nil {
		if context.Cause(ctx) == errTimeout && parent.Err() == nil {
			err = fail.Hint(fmt.Errorf("dump %s: timed out after %s: %w", d.Name, timeout, err),
				"raise timeout: of dump %s (default %s), or check why the database is slow", d.Name, DefaultTimeout)
		} else {
			err = fmt.Errorf("dump %s: %w", d.Name, err)
		}
		return nil, err
	}
	log.Info("dump complete", "id", m.ID, "stored_bytes", m.StoredBytes(), "sql_bytes", m.SourceBytes())
	return m, nil
}

var errTimeout = errors.New("dump timeout")

// run is the state of one dump.
type run struct {
	d      Target
	o      Options
	log    *slog.Logger
	cmd    string
	key    ssh.Signer
	creds  []byte
	prefix string
	object string
}

func (r *run) id() string { return strings.TrimSuffix(strings.TrimPrefix(r.prefix, r.o.Host+"/"), "/") }

// do connects, streams and publishes; on error it removes what it wrote.
func (r *run) do(ctx context.Context, hk *hostKeys, started time.Time) (m *manifest.Manifest, err error) {
	addr := Addr(r.d)
	client, stop, err := dial(ctx, addr, r.d.User, r.key, hk)
	if err != nil {
		return nil, err
	}
	defer func() {
		stop()
		client.Close()
	}()
	r.log.Info("connected", "addr", addr, "host_key", hk.fingerprint)

	ref := folder.PartialRef(r.o.Store, r.prefix)
	if r.o.Journal != nil {
		r.o.Journal.Add(cleanup.Partial, ref)
	}
	defer func() {
		if err == nil {
			if r.o.Journal != nil {
				r.o.Journal.Done(cleanup.Partial, ref)
			}
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.CleanupTimeout)
		defer cancel()
		if rerr := folder.RemovePartial(cctx, r.o.Store, r.prefix); rerr != nil {
			err = errors.Join(err, fail.Hint(fmt.Errorf("remove the unfinished dump %s: %w", r.prefix, rerr),
				"the next voltar run (or voltar prune after incomplete_grace) removes it"))
		} else if r.o.Journal != nil {
			r.o.Journal.Done(cleanup.Partial, ref)
		}
	}()

	fs, warnings, err := r.stream(ctx, client)
	if err != nil {
		return nil, err
	}
	m = &manifest.Manifest{
		Tool: "voltar", Version: r.o.Version, Host: r.o.Host, ID: r.id(),
		Volume: manifest.Volume{Kind: Kind, Name: r.d.Name, Group: Group,
			Path: "ssh://" + r.d.User + "@" + addr, Size: fs.SourceBytes},
		Snapshot:    manifest.Snapshot{Kind: "none"},
		Table:       manifest.Table{Type: "none"},
		Filesystems: []manifest.Filesystem{fs},
		Compression: r.o.Compression,
		Status:      manifest.StatusComplete,
		Started:     started,
		Extra: map[string]any{
			"command":  r.cmd,
			"host_key": hk.fingerprint,
		},
	}
	if len(warnings) > 0 {
		m.Extra["stderr_warnings"] = warnings
	}
	if r.o.Recipients != nil {
		m.Encryption = &manifest.Encryption{Method: crypt.Method, Recipients: r.o.Recipients.Keys()}
	}
	m.Schema = manifest.SchemaFor(m)
	return m, folder.Publish(ctx, r.o.Store, r.prefix, m, r.o.Now().UTC(), r.o.Signer)
}
