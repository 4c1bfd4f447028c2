package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Server is the S3 server scripts/start-versitygw.sh starts: plain http
// on loopback, with the root keys below.
type S3Server struct {
	Endpoint  string // host:port; VOLTAR_TEST_S3 [127.0.0.1:7070]
	AccessKey string // VOLTAR_TEST_S3_ACCESS_KEY [voltar-test]
	SecretKey string // VOLTAR_TEST_S3_SECRET_KEY [voltar-test-secret]
}

// S3 returns the test S3 server, or skips (fails under
// VOLTAR_TEST_REQUIRE_ALL=1) when it does not answer.
func S3(t testing.TB) S3Server {
	t.Helper()
	s := S3Server{
		Endpoint:  envOr("VOLTAR_TEST_S3", "127.0.0.1:7070"),
		AccessKey: envOr("VOLTAR_TEST_S3_ACCESS_KEY", "voltar-test"),
		SecretKey: envOr("VOLTAR_TEST_S3_SECRET_KEY", "voltar-test-secret"),
	}
	c, err := net.DialTimeout("tcp", s.Endpoint, 2*time.Second)
	if err != nil {
		Unavailable(t, "S3 server at %s: %v (scripts/start-versitygw.sh starts it)", s.Endpoint, err)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Client(t).ListBuckets(ctx); err != nil {
		Unavailable(t, "S3 server at %s does not take the test keys: %v (scripts/start-versitygw.sh starts it)", s.Endpoint, err)
	}
	return s
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Client is a plain S3 client of the server, to look at buckets as any S3
// client would.
func (s S3Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: "us-east-1",
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var nonBucket = regexp.MustCompile(`[^a-z0-9-]+`)

// Bucket creates an empty bucket for this test, and removes it with
// everything in it (objects and unfinished uploads) when the test ends.
func (s S3Server) Bucket(t testing.TB) string {
	t.Helper()
	var rnd [4]byte
	rand.Read(rnd[:])
	name := strings.Trim(nonBucket.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	bucket := strings.TrimSuffix("vt-"+hex.EncodeToString(rnd[:])+"-"+name, "-")
	c := s.Client(t)
	ctx := context.Background()
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	t.Cleanup(func() { s.RemoveBucket(t, bucket) })
	return bucket
}

// RemoveBucket empties and removes a bucket.
func (s S3Server) RemoveBucket(t testing.TB, bucket string) {
	t.Helper()
	c := s.Client(t)
	ctx := context.Background()
	for u := range c.ListIncompleteUploads(ctx, bucket, "", true) {
		if u.Err == nil {
			minio.Core{Client: c}.AbortMultipartUpload(ctx, bucket, u.Key, u.UploadID)
		}
	}
	objs := make(chan minio.ObjectInfo)
	go func() {
		defer close(objs)
		for o := range c.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err == nil {
				objs <- o
			}
		}
	}()
	for e := range c.RemoveObjects(ctx, bucket, objs, minio.RemoveObjectsOptions{}) {
		t.Errorf("remove %s/%s: %v", bucket, e.ObjectName, e.Err)
	}
	if err := c.RemoveBucket(ctx, bucket); err != nil {
		t.Errorf("remove bucket %s: %v", bucket, err)
	}
}
