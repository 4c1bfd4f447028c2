package report

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// TLS modes of MailConfig.
const (
	TLSStartTLS = "starttls" // plain connection upgraded with STARTTLS, which the server must offer
	TLSImplicit = "tls"      // TLS from the first byte (SMTPS, port 465)
	TLSNone     = "none"     // no encryption: only to a loopback host
)

// DefaultMailTimeout bounds a mail delivery when MailConfig.Timeout is 0.
const DefaultMailTimeout = 30 * time.Second

// MailConfig says how to deliver the report.
//
// The password is never part of the configuration itself: it is read from
// PasswordFile (surrounding white space trimmed) or from the environment
// variable named by PasswordEnv, at the time of sending.
//
// TLS "none" is refused unless Host is a loopback address or "localhost":
// the report, and with Username set also the password, would cross the
// network in clear. To deliver through an internal relay without TLS, run a
// local MTA (postfix, nullmailer) on localhost and point voltar at it.
type MailConfig struct {
	Host     string
	Port     int    // 0: 587 for starttls, 465 for tls, 25 for none
	TLS      string // TLSStartTLS (default when ""), TLSImplicit or TLSNone
	Username string // authenticate (PLAIN, else LOGIN, else what the server offers) only when set
	// PasswordFile or PasswordEnv (exactly one, with Username) gives the password.
	PasswordFile string
	PasswordEnv  string
	From         string
	To           []string
	// Timeout bounds connecting and each step of the SMTP conversation; 0
	// means DefaultMailTimeout.
	Timeout time.Duration
	// InsecureSkipVerify accepts any server certificate (self-signed relay).
	InsecureSkipVerify bool
}

// Validate checks the configuration without touching the network or the
// password source.
func (c MailConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Host == "" {
		bad("mail: no SMTP host")
	} else if _, _, err := net.SplitHostPort(c.Host); err == nil {
		bad("mail: host %q includes a port; set port on its own", c.Host)
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("mail: port %d out of range", c.Port)
	}
	switch c.tlsMode() {
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if c.Host != "" && !isLoopback(c.Host) {
			bad("mail: tls %q to %s would send the report in clear; it is allowed only to a loopback host (use %q or %q, or relay through a local MTA)",
				TLSNone, c.Host, TLSStartTLS, TLSImplicit)
		}
		if c.InsecureSkipVerify {
			bad("mail: insecure_skip_verify has no meaning with tls %q", TLSNone)
		}
	default:
		bad("mail: tls %q: want %q, %q or %q", c.TLS, TLSStartTLS, TLSImplicit, TLSNone)
	}
	switch {
	case c.Username == "" && (c.PasswordFile != "" || c.PasswordEnv != ""):
		bad("mail: a password source is set but no username")
	case c.Username != "" && c.PasswordFile == "" && c.PasswordEnv == "":
		bad("mail: username %q needs password_file or password_env", c.Username)
	case c.PasswordFile != "" && c.PasswordEnv != "":
		bad("mail: set password_file or password_env, not both")
	}
	if c.From == "" {
		bad("mail: no from address")
	} else if _, err := mail.ParseAddress(c.From); err != nil {
		bad("mail: from %q: %v", c.From, err)
	}
	if len(c.To) == 0 {
		bad("mail: no recipients (to)")
	}
	for _, to := range c.To {
		if _, err := mail.ParseAddress(to); err != nil {
			bad("mail: to %q: %v", to, err)
		}
	}
	if c.Timeout < 0 {
		bad("mail: negative timeout %s", c.Timeout)
	}
	return errors.Join(errs...)
}

func (c MailConfig) tlsMode() string {
	if c.TLS == "" {
		return TLSStartTLS
	}
	return c.TLS
}

func (c MailConfig) port() int {
	switch {
	case c.Port != 0:
		return c.Port
	case c.tlsMode() == TLSImplicit:
		return 465
	case c.tlsMode() == TLSNone:
		return 25
	}
	return 587
}

func (c MailConfig) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultMailTimeout
	}
	return c.Timeout
}

// password reads the password from its source; errors never contain it.
func (c MailConfig) password() (string, error) {
	var pw string
	switch {
	case c.PasswordFile != "":
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("mail password: %w", err)
		}
		pw = strings.TrimSpace(string(b))
		if pw == "" {
			return "", fmt.Errorf("mail password file %s is empty", c.PasswordFile)
		}
	case c.PasswordEnv != "":
		pw = strings.TrimSpace(os.Getenv(c.PasswordEnv))
		if pw == "" {
			return "", fmt.Errorf("mail password: environment variable %s is unset or empty", c.PasswordEnv)
		}
	}
	return pw, nil
}

func isLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Send mails the report: the Text report as the body, the JSON report
// attached. It returns an error naming the server (host:port) and what
// failed; the caller reports a run whose mail could not go out as failed.
func Send(ctx context.Context, c MailConfig, r *Run) error {
	if err := c.Validate(); err != nil {
		return err
	}
	pw, err := c.password()
	if err != nil {
		return err
	}
	msg, err := message(c, r)
	if err != nil {
		return err
	}

	addr := net.JoinHostPort(c.Host, strconv.Itoa(c.port()))
	tlsConf := &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	// Our own dialer, so that the connection is closed on every path: go-mail
	// leaves it open when the conversation fails before sending (no
	// STARTTLS, authentication refused).
	var conn net.Conn
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		var err error
		nd := &net.Dialer{}
		if c.tlsMode() == TLSImplicit {
			conn, err = (&tls.Dialer{NetDialer: nd, Config: tlsConf}).DialContext(ctx, network, address)
		} else {
			conn, err = nd.DialContext(ctx, network, address)
		}
		return conn, err
	}
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()

	opts := []gomail.Option{
		gomail.WithPort(c.port()),
		gomail.WithTimeout(c.timeout()),
		gomail.WithTLSConfig(tlsConf),
		gomail.WithDialContextFunc(dial),
	}
	switch c.tlsMode() {
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSImplicit:
		// The dialer speaks TLS; no STARTTLS inside it.
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if c.Username != "" {
		// PLAIN and LOGIN send the password as is; go-mail refuses them
		// without TLS except to localhost.
		opts = append(opts,
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthPlain, gomail.SMTPAuthLogin),
			gomail.WithUsername(c.Username), gomail.WithPassword(pw))
	}
	client, err := gomail.NewClient(c.Host, opts...)
	if err != nil {
		return fmt.Errorf("mail report via %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("mail report via %s (tls %s): %w", addr, c.tlsMode(), err)
	}
	return nil
}

// message builds the mail for r.
func message(c MailConfig, r *Run) (*gomail.Msg, error) {
	m := gomail.NewMsg()
	if err := m.From(c.From); err != nil {
		return nil, fmt.Errorf("mail from %q: %w", c.From, err)
	}
	if err := m.To(c.To...); err != nil {
		return nil, fmt.Errorf("mail to %q: %w", c.To, err)
	}
	m.Subject(Subject(r))
	m.SetDate()
	m.SetMessageID()
	ua := "voltar"
	if r.Version != "" {
		ua += " " + r.Version
	}
	m.SetUserAgent(ua)

	var body, js bytes.Buffer
	if err := Text(&body, r); err != nil {
		return nil, err
	}
	if err := JSON(&js, r); err != nil {
		return nil, err
	}
	m.SetBodyString(gomail.TypeTextPlain, body.String())
	m.AttachReadSeeker(attachmentName(r), bytes.NewReader(js.Bytes()),
		gomail.WithFileContentType(gomail.ContentType("application/json")))
	return m, nil
}

// attachmentName is voltar-<host>-<start in UTC>.json, sortable like the
// store's timestamps.
func attachmentName(r *Run) string {
	name := "voltar-" + safeName(r.Host)
	if !r.Started.IsZero() {
		name += "-" + r.Started.UTC().Format("2006-01-02T150405Z")
	}
	return name + ".json"
}

func safeName(s string) string {
	return strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
			return c
		}
		return '_'
	}, s)
}
