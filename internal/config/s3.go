package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	"voltar/internal/fail"
)

// Part sizes of multipart uploads: S3 takes parts of at least 5 MiB (but
// the last); above 512 MiB the two buffered parts cost too much memory.
const (
	DefaultPartSize = 16 << 20
	MinPartSize     = 5 << 20
	MaxPartSize     = 512 << 20
)

// S3 is an s3:// store's settings, parsed and checked.
type S3 struct {
	Bucket string
	Prefix string // no leading or trailing slash; "" = the whole bucket
	// Endpoint is host:port (or host) without a scheme.
	Endpoint string
	Secure   bool
	Region   string
	// AccessKeyFile and SecretKeyFile are both set or both empty (then
	// the keys come from the environment).
	AccessKeyFile, SecretKeyFile string
	CAFile                       string
	PathStyle                    bool
	PartSize                     int64
}

// IsS3 reports whether a store name is an S3 URL.
func IsS3(name string) bool { return strings.HasPrefix(name, "s3://") }

var bucketName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$`)

// ParseS3URL splits s3://bucket/prefix.
func ParseS3URL(name string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(name, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3://bucket/prefix URL", name)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if strings.Contains(bucket, "@") {
		return "", "", fail.Hint(errors.New("the store URL must not carry credentials"),
			"put the keys in files named by store.access_key_file and store.secret_key_file, or in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if !bucketName.MatchString(bucket) || strings.Contains(bucket, "..") {
		return "", "", fmt.Errorf("%q is not a valid bucket name (3-63 letters, digits, dots and hyphens)", bucket)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" && (path.Clean(prefix) != prefix || strings.HasPrefix(prefix, "/") ||
		strings.HasPrefix(prefix, "../") || prefix == ".." || prefix == "." || strings.Contains(prefix, "\\")) {
		return "", "", fmt.Errorf("prefix %q: want folder names separated by single slashes, no . or ..", prefix)
	}
	return bucket, prefix, nil
}

// S3 returns the settings for the S3 store name, which is s.Path or a
// store named elsewhere (backup --to, a dead run's journal): the endpoint,
// keys and TLS settings always come from the store section.
func (s Store) S3(name string) (S3, error) {
	out, err := s.s3Settings()
	var uerr error
	out.Bucket, out.Prefix, uerr = ParseS3URL(name)
	return out, errors.Join(uerr, err)
}

// s3Settings checks everything but the store's URL.
func (s Store) s3Settings() (S3, error) {
	var errs []error
	out := S3{Region: s.Region, AccessKeyFile: s.AccessKeyFile, SecretKeyFile: s.SecretKeyFile, CAFile: s.CAFile}
	var err error
	if s.Endpoint == "" {
		errs = append(errs, fail.Hint(errors.New("store.endpoint is not set"),
			"an s3:// store takes its S3 settings from the store section of the config file (--config, default %s): set store.endpoint to the server's host:port or https:// URL; examples/voltar.yaml shows every key", DefaultPath))
	} else if out.Endpoint, out.Secure, err = parseEndpoint(s.Endpoint, s.TLS); err != nil {
		errs = append(errs, err)
	}
	if (s.AccessKeyFile == "") != (s.SecretKeyFile == "") {
		errs = append(errs, fail.Hint(errors.New("store.access_key_file and store.secret_key_file go together"),
			"set both, or neither to take the keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"))
	}
	switch s.Addressing {
	case "", "path":
		out.PathStyle = true
	case "virtual-host":
	default:
		errs = append(errs, fmt.Errorf("store.addressing %q: want path or virtual-host", s.Addressing))
	}
	out.PartSize = DefaultPartSize
	if s.PartSize != "" {
		n, err := parseBytes(s.PartSize)
		if err == nil && (n < MinPartSize || n > MaxPartSize) {
			err = fmt.Errorf("want 5M to 512M")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("store.part_size %q: %w", s.PartSize, err))
		}
		out.PartSize = n
	}
	return out, errors.Join(errs...)
}

// parseEndpoint returns host[:port] and whether to use TLS.
func parseEndpoint(ep string, tls *bool) (string, bool, error) {
	secure := tls == nil || *tls
	host := ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return "", false, fmt.Errorf("store.endpoint: %w", err)
		}
		if u.User != nil {
			return "", false, fail.Hint(errors.New("store.endpoint must not carry credentials"),
				"put the keys in files named by store.access_key_file and store.secret_key_file")
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", false, fmt.Errorf("store.endpoint %q: want host:port, https://host:port or http://host:port", ep)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return "", false, fail.Hint(fmt.Errorf("store.endpoint %q has a path", ep),
				"the endpoint is the server alone; the bucket and prefix go in store.path: s3://bucket/prefix")
		}
		if tls != nil && *tls != (u.Scheme == "https") {
			return "", false, fmt.Errorf("store.endpoint %q and store.tls %v disagree", ep, *tls)
		}
		secure, host = u.Scheme == "https", u.Host
	}
	if host == "" || strings.ContainsAny(host, "/@ \t?#") {
		return "", false, fmt.Errorf("store.endpoint %q: want host:port, https://host:port or http://host:port", ep)
	}
	name := host
	if h, port, err := net.SplitHostPort(host); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", false, fmt.Errorf("store.endpoint %q: bad port %q", ep, port)
		}
		name = h
	}
	if !secure && !isLoopback(name) {
		return "", false, fail.Hint(fmt.Errorf("store.endpoint %s without TLS: plain http is allowed only to a loopback address, where keys and backups cannot be read on the wire", host),
			"use https (the default: drop tls: false or the http:// scheme); for a server with a private CA set store.ca_file")
	}
	return host, secure, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// parseBytes parses "16M", "64MiB", "8388608".
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	mult, ok := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}[strings.ToLower(unit)]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("want a size such as 16M or 64MiB")
	}
	return n * mult, nil
}

// validate checks the store section for the kind of store its path names.
func (s Store) validate() []error {
	var errs []error
	if !IsS3(s.Path) {
		// S3 settings next to a directory serve `backup --to s3://...`:
		// check them now rather than at the first such backup.
		if s.Endpoint != "" || s.Region != "" || s.AccessKeyFile != "" || s.SecretKeyFile != "" ||
			s.TLS != nil || s.CAFile != "" || s.Addressing != "" || s.PartSize != "" {
			if _, err := s.s3Settings(); err != nil {
				errs = append(errs, err)
			}
		}
		return errs
	}
	if s.RequireMount != "" {
		errs = append(errs, fail.Hint(errors.New("store.require_mount makes no sense for an s3:// store: it checks a local mount point"),
			"remove require_mount from the store section"))
	}
	if s.MinFreePercent != 0 {
		errs = append(errs, fail.Hint(errors.New("store.min_free_percent makes no sense for an s3:// store: an object store reports no free space"),
			"remove min_free_percent from the store section; watch the bucket's quota on the storage side"))
	}
	if _, err := s.S3(s.Path); err != nil {
		errs = append(errs, err)
	}
	return errs
}
