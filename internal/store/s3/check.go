package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"

	"voltar/internal/fail"
)

// Credentials are the keys requests are signed with.
type Credentials struct {
	AccessKey, SecretKey string
	// SessionToken goes with temporary keys (AWS_SESSION_TOKEN).
	SessionToken string
}

// LoadCredentials reads the keys from accessFile and secretFile or, when
// both are "", from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN through getenv. readableByOthers is called with each
// key file that group or others may read.
func LoadCredentials(accessFile, secretFile string, getenv func(string) string, readableByOthers func(file string)) (Credentials, error) {
	if accessFile == "" && secretFile == "" {
		c := Credentials{AccessKey: getenv("AWS_ACCESS_KEY_ID"), SecretKey: getenv("AWS_SECRET_ACCESS_KEY"), SessionToken: getenv("AWS_SESSION_TOKEN")}
		var missing []string
		if c.AccessKey == "" {
			missing = append(missing, "AWS_ACCESS_KEY_ID")
		}
		if c.SecretKey == "" {
			missing = append(missing, "AWS_SECRET_ACCESS_KEY")
		}
		if len(missing) > 0 {
			empty := strings.Join(missing, " and ") + " is empty"
			if len(missing) == 2 {
				empty = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are empty"
			}
			return c, fail.Usage(fail.Hint(fmt.Errorf("no S3 keys: store.access_key_file and store.secret_key_file are not set, and %s", empty),
				"put the access key and the secret key into two files only root can read (chmod 0600) and name them in store.access_key_file and store.secret_key_file, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"))
		}
		return c, nil
	}
	var c Credentials
	for _, f := range []struct {
		key, file string
		dst       *string
	}{{"store.access_key_file", accessFile, &c.AccessKey}, {"store.secret_key_file", secretFile, &c.SecretKey}} {
		if f.file == "" {
			return c, fail.Usage(fail.Hint(fmt.Errorf("%s is not set", f.key), "set both store.access_key_file and store.secret_key_file, or neither to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"))
		}
		b, err := os.ReadFile(f.file)
		if err != nil {
			return c, fail.Usage(fail.Hint(fmt.Errorf("%s: %w", f.key, err), "the file holds the key alone, readable by root only (chmod 0600)"))
		}
		*f.dst = strings.TrimSpace(string(b))
		if *f.dst == "" {
			return c, fail.Usage(fmt.Errorf("%s %s is empty", f.key, f.file))
		}
		if fi, err := os.Stat(f.file); err == nil && fi.Mode().Perm()&0o077 != 0 && readableByOthers != nil {
			readableByOthers(f.file)
		}
	}
	return c, nil
}

// Check makes one cheap request (list at most one key under the prefix)
// that proves the endpoint answers, the bucket exists and the keys are
// accepted. Its errors say which of these failed and what to do.
func (s *Store) Check(ctx context.Context) error {
	noOwner := false
	for o := range s.check.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.full(""), Recursive: true, MaxKeys: 1, FetchOwner: &noOwner}) {
		if o.Err != nil {
			return s.explain(ctx, o.Err)
		}
		break
	}
	if err := ctx.Err(); err != nil {
		return s.explain(ctx, err)
	}
	return nil
}

// explain turns a failed request into an error that says what is wrong.
func (s *Store) explain(ctx context.Context, err error) error {
	wrap := func(format string, args ...any) error {
		return fmt.Errorf("store %s: %s", s, fmt.Sprintf(format, args...))
	}
	scheme := "http"
	if s.secure {
		scheme = "https"
	}
	r := minio.ToErrorResponse(err)
	code := r.Code
	if (r.StatusCode == http.StatusForbidden && code != "AccessDenied" && code != "AllAccessDisabled") || code == "XAdminUserNotFound" {
		code = "InvalidAccessKeyId" // XAdminUserNotFound: versitygw's, with status 404
	}
	switch code {
	case "NoSuchBucket":
		return fail.Usage(fail.Hint(wrap("bucket %q does not exist at %s", s.bucket, s.endpoint),
			"create the bucket (e.g. `s3cmd mb s3://%s`, `aws s3 mb`, radosgw-admin or the storage team), or fix the bucket in store.path", s.bucket))
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidSecurity":
		return fail.Usage(fail.Hint(wrap("%s rejected the keys (%s: %s)", s.endpoint, r.Code, r.Message),
			"check the keys in store.access_key_file and store.secret_key_file (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY when those are not set)"))
	case "AccessDenied", "AllAccessDisabled":
		return fail.Usage(fail.Hint(wrap("access denied to bucket %q (%s: %s)", s.bucket, r.Code, r.Message),
			"check the keys in store.access_key_file and store.secret_key_file (or AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), and that they may list, read, write and delete objects and abort multipart uploads in the bucket"))
	case "AuthorizationHeaderMalformed", "InvalidRegion", "PermanentRedirect":
		return fail.Usage(fail.Hint(wrap("%s: %s", r.Code, r.Message), "set store.region to the bucket's region"))
	}
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	var dnsErr *net.DNSError
	var opErr *net.OpError
	msg := err.Error()
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalid):
		return fail.Usage(fail.Hint(wrap("TLS: the certificate of %s is not trusted: %v", s.endpoint, err),
			"set store.ca_file to the PEM certificate of the CA that signed the server's certificate, or fix the host name in store.endpoint"))
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"), errors.As(err, &recordErr):
		return fail.Usage(fail.Hint(wrap("TLS: %s does not speak TLS: %v", s.endpoint, err),
			"use the server's https port; plain http (store.tls: false) is allowed to a loopback endpoint only"))
	case strings.Contains(msg, "malformed HTTP response"):
		return fail.Usage(fail.Hint(wrap("%s answered plain http with something else (TLS?): %v", s.endpoint, err),
			"the server speaks https: drop store.tls: false and the http:// scheme"))
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return fail.Hint(wrap("endpoint %s://%s did not answer in time", scheme, s.endpoint),
			"check store.endpoint, the network and that the S3 server runs")
	case errors.As(err, &dnsErr), errors.As(err, &opErr):
		var cause error = opErr
		if dnsErr != nil {
			cause = dnsErr
		}
		return fail.Hint(wrap("endpoint %s://%s is unreachable: %v", scheme, s.endpoint, cause),
			"check store.endpoint, the network and that the S3 server runs")
	case errors.Is(err, context.Canceled):
		return err
	}
	return wrap("%v", err)
}
