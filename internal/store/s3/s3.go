// Package s3 keeps backups in an S3-compatible object store (Ceph RGW,
// MinIO, versitygw, AWS S3). The keys under the store's prefix are exactly
// the local store's paths, so many volume hosts can share one bucket, each
// under its own <host>/ folder, and any S3 client can read a backup back.
//
// Objects are written with a single PUT when they fit in one part, else as a
// multipart upload that is completed only after every part arrived: a
// reader never sees a partial object, and a Put that fails aborts its upload.
// A killed writer's upload stays invisible but billable until RemoveTemp
// aborts it.
package s3

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"voltar/internal/store"
)

// DefaultPartSize is the multipart part size when Config.PartSize is 0.
const DefaultPartSize = 16 << 20

// Config says which bucket to use and how to reach it.
type Config struct {
	// Endpoint is host[:port] of the S3 server, without a scheme.
	Endpoint string
	// Secure: https. Without it requests and keys travel in plain text.
	Secure bool
	// Region for request signatures; "" = us-east-1. Set, so the client
	// never needs to ask the server (GetBucketLocation) for it.
	Region string
	Bucket string
	// Prefix is the folder in the bucket the store keeps its keys under,
	// without leading or trailing slash; "" = the bucket's root.
	Prefix string
	Credentials
	// CAFile names PEM certificates trusted besides the system's roots.
	CAFile string
	// VirtualHost puts the bucket in the host name; default path style.
	VirtualHost bool
	// PartSize of multipart uploads; 0 = DefaultPartSize. See Put.
	PartSize int64
	// Transport replaces the HTTP transport, e.g. to inject faults in tests.
	Transport http.RoundTripper
}

// Store is a prefix in an S3 bucket.
type Store struct {
	client   *minio.Client
	core     minio.Core
	check    *minio.Client // no retries: open-time checks fail fast and clearly
	endpoint string
	secure   bool
	bucket   string
	prefix   string
	partSize int64
	// maxParts is S3's limit of parts per upload (tests lower it).
	maxParts int
	bufs     sync.Pool
	// held and peak count the part buffers in use, to test the memory bound.
	held, peak atomic.Int64
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.TempRemover = (*Store)(nil)
	_ store.RangeReader = (*Store)(nil)
)

// New returns the store described by c. It makes no request; Check does.
func New(c Config) (*Store, error) {
	if c.Bucket == "" || c.Endpoint == "" {
		return nil, errors.New("s3 store: bucket and endpoint are required")
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	tr := c.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(c.Secure)
		if err != nil {
			return nil, err
		}
		if c.CAFile != "" {
			pool, err := certPool(c.CAFile)
			if err != nil {
				return nil, err
			}
			t.TLSClientConfig.RootCAs = pool
		}
		tr = t
	}
	lookup := minio.BucketLookupPath
	if c.VirtualHost {
		lookup = minio.BucketLookupDNS
	}
	creds := credentials.NewStaticV4(c.AccessKey, c.SecretKey, c.SessionToken)
	opts := func(retries int) *minio.Options {
		return &minio.Options{Creds: creds, Secure: c.Secure, Transport: tr, Region: c.Region, BucketLookup: lookup, MaxRetries: retries}
	}
	client, err := minio.New(c.Endpoint, opts(0))
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %s: %w", c.Endpoint, err)
	}
	check, err := minio.New(c.Endpoint, opts(1))
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %s: %w", c.Endpoint, err)
	}
	s := &Store{
		client: client, core: minio.Core{Client: client}, check: check,
		endpoint: c.Endpoint, secure: c.Secure, bucket: c.Bucket, prefix: c.Prefix, partSize: c.PartSize,
		maxParts: maxParts,
	}
	s.bufs.New = func() any {
		b := make([]byte, s.partSize)
		return &b
	}
	return s, nil
}

func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("store.ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("store.ca_file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// String is s3://bucket/prefix: never the endpoint's credentials.
func (s *Store) String() string {
	if s.prefix == "" {
		return "s3://" + s.bucket
	}
	return "s3://" + s.bucket + "/" + s.prefix
}

// object is the bucket key for a store key.
func (s *Store) object(key string) (string, error) {
	if err := store.CheckKey(key); err != nil {
		return "", err
	}
	return s.full(key), nil
}

// full puts the store's prefix before a key or key prefix, with one slash.
func (s *Store) full(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := s.object(key)
	if err != nil {
		return nil, err
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, obj, minio.GetObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%s: %w", key, store.ErrNotFound)
		}
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return rc, nil
}

// GetRange implements store.RangeReader with a GET of the range (an HTTP
// Range request). The response's Content-Range says how big the object is,
// so a range that ends past it fails at once; a server that ignores the
// Range header and sends the whole object is read up to the range.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	obj, err := s.object(key)
	if err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("get %s: invalid range: offset %d", key, off)
	}
	if n == 0 {
		// No Range header asks for nothing: the size tells whether the
		// empty range is in the object.
		return s.emptyRange(ctx, key, off, n)
	}
	var opts minio.GetObjectOptions
	switch {
	case n > 0:
		if n > math.MaxInt64-off {
			return nil, fmt.Errorf("get %s: %d bytes at offset %d: %w", key, n, off, store.ErrRange)
		}
		err = opts.SetRange(off, off+n-1)
	case off > 0:
		err = opts.SetRange(off, 0) // bytes=off-
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	rc, info, header, err := s.core.GetObject(ctx, s.bucket, obj, opts)
	if err != nil {
		switch r := minio.ToErrorResponse(err); {
		case isNotFound(err):
			return nil, fmt.Errorf("%s: %w", key, store.ErrNotFound)
		case r.StatusCode == http.StatusRequestedRangeNotSatisfiable || r.Code == "InvalidRange":
			// The range starts at or past the end; at the end it is empty
			// when it goes (only) up to the end.
			if n < 0 {
				return s.emptyRange(ctx, key, off, n)
			}
			return nil, fmt.Errorf("get %s: %d bytes at offset %d: %w (the server answered %d %s)", key, n, off, store.ErrRange, r.StatusCode, r.Code)
		}
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	first, size, ok := contentRange(header.Get("Content-Range"))
	if !ok {
		if header.Get("Content-Range") != "" {
			rc.Close()
			return nil, fmt.Errorf("get %s: the server answered a range request with Content-Range %q", key, header.Get("Content-Range"))
		}
		// The whole object (200 OK): skip to the range.
		size = info.Size
	}
	length, err := store.CheckRange(size, off, n)
	if err == nil && ok && first != off {
		err = fmt.Errorf("the server sent bytes from %d, not %d", first, off)
	}
	if err == nil && !ok {
		_, err = io.CopyN(io.Discard, rc, off)
	}
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, length), rc}, nil
}

// emptyRange is the range off, n of key that holds no bytes: n == 0, or
// from the object's end to its end. It is an error when key is missing or
// shorter than off, or the range is not empty after all.
func (s *Store) emptyRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	o, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	length, err := store.CheckRange(o.Size, off, n)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if length != 0 {
		return nil, fmt.Errorf("get %s: the server refused the bytes from %d of %d", key, off, o.Size)
	}
	return http.NoBody, nil
}

// contentRange parses a Content-Range header, "bytes first-last/size".
func contentRange(h string) (first, size int64, ok bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, false
	}
	span, total, ok := strings.Cut(rest, "/")
	from, _, ok2 := strings.Cut(span, "-")
	first, err := strconv.ParseInt(from, 10, 64)
	size, err2 := strconv.ParseInt(total, 10, 64)
	if !ok || !ok2 || err != nil || err2 != nil || first < 0 || size < first {
		return 0, 0, false
	}
	return first, size, true
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Object, error) {
	obj, err := s.object(key)
	if err != nil {
		return store.Object{}, err
	}
	info, err := s.client.StatObject(ctx, s.bucket, obj, minio.StatObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return store.Object{}, fmt.Errorf("%s: %w", key, store.ErrNotFound)
		}
		return store.Object{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return store.Object{Key: key, Size: info.Size, ModTime: info.LastModified}, nil
}

// List implements store.Store. The server pages through the keys a
// thousand at a time.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	full := s.full(prefix)
	noOwner := false
	var out []store.Object
	for o := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: full, Recursive: true, FetchOwner: &noOwner}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %s/%s: %w", s, prefix, o.Err)
		}
		key, ok := strings.CutPrefix(o.Key, full)
		if !ok || strings.HasSuffix(o.Key, "/") {
			continue // a folder marker some servers show; never a store key
		}
		out = append(out, store.Object{Key: prefix + key, Size: o.Size, ModTime: o.LastModified})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements store.Store. S3 deletes a missing key without error;
// servers that report NoSuchKey are taken to agree.
func (s *Store) Delete(ctx context.Context, key string) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, obj, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// RemoveTemp aborts the multipart uploads a killed writer left in the
// folder prefix: their parts are invisible to List but stored, and billed,
// until aborted. It implements store.TempRemover.
func (s *Store) RemoveTemp(ctx context.Context, prefix string) error {
	if strings.Trim(prefix, "/") == "" {
		return fmt.Errorf("invalid folder %q", prefix)
	}
	if _, err := s.object(strings.TrimSuffix(prefix, "/")); err != nil {
		return err
	}
	full := s.full(strings.TrimSuffix(prefix, "/") + "/")
	type upload struct{ key, id string }
	var ups []upload
	for u := range s.client.ListIncompleteUploads(ctx, s.bucket, full, true) {
		if u.Err != nil {
			return fmt.Errorf("list unfinished uploads in %s/%s: %w", s, prefix, u.Err)
		}
		ups = append(ups, upload{u.Key, u.UploadID})
	}
	var errs []error
	for _, u := range ups {
		if err := s.core.AbortMultipartUpload(ctx, s.bucket, u.key, u.id); err != nil && !isNoSuchUpload(err) {
			errs = append(errs, fmt.Errorf("abort unfinished upload of %s: %w", strings.TrimPrefix(u.key, s.full("")), err))
		}
	}
	return errors.Join(errs...)
}

func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "NoSuchKey" || (r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket")
}

func isNoSuchUpload(err error) bool {
	return minio.ToErrorResponse(err).Code == "NoSuchUpload"
}
