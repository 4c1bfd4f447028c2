package s3_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"voltar/internal/fail"
	"voltar/internal/store"
	"voltar/internal/store/s3"
	"voltar/internal/store/storetest"
	"voltar/internal/testutil"
)

const partSize = 5 << 20 // S3's smallest, so tests cross part boundaries cheaply

// open returns a store on a new bucket of the test server.
func open(t *testing.T, srv testutil.S3Server, prefix string, mod ...func(*s3.Config)) (*s3.Store, string) {
	t.Helper()
	bucket := srv.Bucket(t)
	return openIn(t, srv, bucket, prefix, mod...), bucket
}

func openIn(t *testing.T, srv testutil.S3Server, bucket, prefix string, mod ...func(*s3.Config)) *s3.Store {
	t.Helper()
	c := s3.Config{
		Endpoint: srv.Endpoint, Bucket: bucket, Prefix: prefix, PartSize: partSize,
		Credentials: s3.Credentials{AccessKey: srv.AccessKey, SecretKey: srv.SecretKey},
	}
	for _, m := range mod {
		m(&c)
	}
	st, err := s3.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// rawKeys lists a bucket as any S3 client sees it.
func rawKeys(t *testing.T, srv testutil.S3Server, bucket string) []string {
	t.Helper()
	var keys []string
	for o := range srv.Client(t).ListObjectsIter(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// uploads lists the unfinished multipart uploads in a bucket.
func uploads(t *testing.T, srv testutil.S3Server, bucket string) []string {
	t.Helper()
	var out []string
	for u := range srv.Client(t).ListIncompleteUploads(context.Background(), bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		out = append(out, u.Key)
	}
	return out
}

func TestContract(t *testing.T) {
	srv := testutil.S3(t)
	for _, prefix := range []string{"site/a", ""} {
		t.Run(fmt.Sprintf("prefix=%q", prefix), func(t *testing.T) {
			st, bucket := open(t, srv, prefix+"/")
			if err := st.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			storetest.Run(t, st)
			// Exactly the store's keys under the prefix, joined by one slash.
			want := []string{"h/vg/vol/ts1/SHA256SUMS", "h/vg/vol/ts1/manifest.json", "h/vg/vol/ts1/p1.tar.zst", "h/vg/volume/ts1/x"}
			got := rawKeys(t, srv, bucket)
			for i := range want {
				if prefix != "" {
					want[i] = prefix + "/" + want[i]
				}
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("bucket holds %q, want %q", got, want)
			}
			if u := uploads(t, srv, bucket); len(u) != 0 {
				t.Errorf("unfinished uploads left: %v", u)
			}
		})
	}
}

func TestString(t *testing.T) {
	for prefix, want := range map[string]string{"": "s3://bucket1", "a/b": "s3://bucket1/a/b", "/a/b/": "s3://bucket1/a/b"} {
		st, err := s3.New(s3.Config{Endpoint: "127.0.0.1:1", Bucket: "bucket1", Prefix: prefix,
			Credentials: s3.Credentials{AccessKey: "AKIAEXAMPLE", SecretKey: "s3cr3t"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := st.String(); got != want {
			t.Errorf("String() with prefix %q = %q, want %q", prefix, got, want)
		}
	}
}

// Objects of every size around the part boundaries come back whole, from a
// reader that returns short reads.
func TestPutSizes(t *testing.T) {
	srv := testutil.S3(t)
	st, bucket := open(t, srv, "p")
	ctx := context.Background()
	for _, size := range []int{0, 1, partSize - 1, partSize, partSize + 1, 2 * partSize, 2*partSize + partSize/2} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + i>>13)
		}
		key := fmt.Sprintf("h/sizes/%d", size)
		n, err := st.Put(ctx, key, &shortReader{r: bytes.NewReader(data)}, store.PutOptions{})
		if err != nil || n != int64(size) {
			t.Fatalf("Put %d bytes = %d, %v", size, n, err)
		}
		rc, err := st.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get %s: %d bytes, %v; want the %d bytes put", key, len(got), err, size)
		}
	}
	if u := uploads(t, srv, bucket); len(u) != 0 {
		t.Errorf("unfinished uploads left: %v", u)
	}
}

// A Put whose reader fails after several parts leaves neither an object nor
// an unfinished upload, and reports the reader's error.
func TestFailedPutAbortsUpload(t *testing.T) {
	srv := testutil.S3(t)
	st, bucket := open(t, srv, "p")
	src := errors.New("snapshot vanished")
	r := io.MultiReader(io.LimitReader(zeros{}, 3*partSize+123), errReader{src})
	_, err := st.Put(context.Background(), "h/vg/vol/ts/p1.tar.zst", r, store.PutOptions{})
	if !errors.Is(err, src) {
		t.Fatalf("Put = %v, want the reader's error", err)
	}
	if _, err := st.Stat(context.Background(), "h/vg/vol/ts/p1.tar.zst"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat after failed Put: %v, want ErrNotFound", err)
	}
	if k := rawKeys(t, srv, bucket); len(k) != 0 {
		t.Errorf("bucket holds %v after a failed Put", k)
	}
	if u := uploads(t, srv, bucket); len(u) != 0 {
		t.Errorf("unfinished uploads left after a failed Put: %v", u)
	}
}

// Cancelling the context mid-upload aborts the upload too, although the
// abort itself runs after the cancel.
func TestCancelledPutAbortsUpload(t *testing.T) {
	srv := testutil.S3(t)
	st, bucket := open(t, srv, "p")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &cancelAfter{r: zeros{}, n: 2*partSize + 10, cancel: cancel}
	_, err := st.Put(ctx, "h/vg/vol/ts/p1.tar.zst", r, store.PutOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
	if k := rawKeys(t, srv, bucket); len(k) != 0 {
		t.Errorf("bucket holds %v after a cancelled Put", k)
	}
	if u := uploads(t, srv, bucket); len(u) != 0 {
		t.Errorf("unfinished uploads left after a cancelled Put: %v", u)
	}
}

// A writer killed mid-upload leaves an upload nobody sees in List, but
// whose parts are stored; RemoveTemp aborts it and no other folder's.
func TestRemoveTempAbortsKilledUpload(t *testing.T) {
	srv := testutil.S3(t)
	st, bucket := open(t, srv, "site")
	core := minio.Core{Client: srv.Client(t)}
	ctx := context.Background()
	start := func(key string) {
		id, err := core.NewMultipartUpload(ctx, bucket, key, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("x"), partSize)
		if _, err := core.PutObjectPart(ctx, bucket, key, id, 1, bytes.NewReader(data), int64(len(data)), minio.PutObjectPartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	start("site/h1/vg/vol/2026-11-25T013000Z/p1.tar.zst")
	start("site/h1/vg/vol/2026-11-25T013000Z0/p1.tar.zst") // a sibling whose name extends the folder's
	start("site/h2/vg/vol/2026-11-25T013000Z/p1.tar.zst")  // another host's upload in progress
	if objs, err := st.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("List = %v, %v; an unfinished upload must not be listed", objs, err)
	}
	if err := st.RemoveTemp(ctx, "h1/vg/vol/2026-11-25T013000Z/"); err != nil {
		t.Fatal(err)
	}
	got := uploads(t, srv, bucket)
	want := "site/h1/vg/vol/2026-11-25T013000Z0/p1.tar.zst site/h2/vg/vol/2026-11-25T013000Z/p1.tar.zst"
	if strings.Join(got, " ") != want {
		t.Errorf("uploads after RemoveTemp: %v, want only %s", got, want)
	}
	if err := st.RemoveTemp(ctx, ""); err == nil {
		t.Error("RemoveTemp(\"\") succeeded; it would abort every host's uploads")
	}
}

// List pages through more than the 1000 keys S3 returns per request.
func TestListOverThousandKeys(t *testing.T) {
	srv := testutil.S3(t)
	st, _ := open(t, srv, "p")
	ctx := context.Background()
	const n = 1234
	keys := make(chan string)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				if _, err := st.Put(ctx, k, strings.NewReader(k), store.PutOptions{}); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for _, i := range rand.Perm(n) {
		keys <- fmt.Sprintf("h/vg/vol/%04d/manifest.json", i)
	}
	close(keys)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "other/x", strings.NewReader("x"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(ctx, "h/")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != n {
		t.Fatalf("List = %d objects, want %d", len(objs), n)
	}
	for i, o := range objs {
		if want := fmt.Sprintf("h/vg/vol/%04d/manifest.json", i); o.Key != want || o.Size != int64(len(want)) {
			t.Fatalf("List[%d] = %+v, want %s of %d bytes", i, o, want, len(want))
		}
	}
}

// Bytes corrupted between voltar and the server are refused by the server,
// in single PUTs and in parts, and nothing remains: a byte flipped after
// voltar computed its checksums breaks the payload's SHA-256.
func TestCorruptedTransferFails(t *testing.T) {
	srv := testutil.S3(t)
	var flipped atomic.Int32
	st, bucket := open(t, srv, "p", func(c *s3.Config) {
		c.Transport = flipTransport{next: http.DefaultTransport, flipped: &flipped}
	})
	ctx := context.Background()
	for _, size := range []int{100000, 2*partSize + 100000} {
		flipped.Store(0)
		key := fmt.Sprintf("h/corrupt/%d", size)
		_, err := st.Put(ctx, key, io.LimitReader(zeros{}, int64(size)), store.PutOptions{})
		if flipped.Load() == 0 {
			t.Fatalf("size %d: no request was corrupted", size)
		}
		if err == nil {
			t.Fatalf("size %d: Put of corrupted data succeeded", size)
		}
		t.Logf("size %d: %v", size, err)
		if _, err := st.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("size %d: Stat after corrupted Put: %v, want ErrNotFound", size, err)
		}
	}
	if u := uploads(t, srv, bucket); len(u) != 0 {
		t.Errorf("unfinished uploads left: %v", u)
	}
}

// The server checks the Content-MD5 Put sends with a single PUT and with
// every part (besides the payload's SHA-256): a signed request whose body
// does not match it is refused.
func TestServerChecksContentMD5(t *testing.T) {
	srv := testutil.S3(t)
	bucket := srv.Bucket(t)
	core := minio.Core{Client: srv.Client(t)}
	ctx := context.Background()
	data := bytes.Repeat([]byte("voltar"), 100000)
	other := md5.Sum([]byte("other bytes"))
	wrong := base64.StdEncoding.EncodeToString(other[:])
	if _, err := core.PutObject(ctx, bucket, "single", bytes.NewReader(data), int64(len(data)), wrong, "", minio.PutObjectOptions{}); err == nil {
		t.Error("PUT with a wrong Content-MD5 succeeded")
	} else {
		t.Log(err)
	}
	id, err := core.NewMultipartUpload(ctx, bucket, "multi", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer core.AbortMultipartUpload(ctx, bucket, "multi", id)
	if _, err := core.PutObjectPart(ctx, bucket, "multi", id, 1, bytes.NewReader(data), int64(len(data)), minio.PutObjectPartOptions{Md5Base64: wrong}); err == nil {
		t.Error("part upload with a wrong Content-MD5 succeeded")
	} else {
		t.Log(err)
	}
}

// A Put holds at most two parts in memory, however large the object: one
// uploading while the next fills. Every Put of a store reuses them.
func TestPutMemoryBound(t *testing.T) {
	srv := testutil.S3(t)
	var inFlight, peak atomic.Int32
	st, _ := open(t, srv, "p", func(c *s3.Config) {
		c.Transport = countTransport{next: http.DefaultTransport, n: &inFlight, peak: &peak}
	})
	ctx := context.Background()
	const size = 12*partSize + 1
	for i := range 2 {
		if _, err := st.Put(ctx, fmt.Sprintf("h/big%d", i), io.LimitReader(zeros{}, size), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s3.PeakPartBuffers(st); n != 2 {
		t.Errorf("Puts of 13 parts held up to %d part buffers at once, want 2", n)
	}
	if p := peak.Load(); p > 2 {
		t.Errorf("%d part uploads ran at once, want at most 2", p)
	}
}

// A size hint beyond what maxParts parts of the configured size hold makes
// the parts larger up front: 13 MiB with a hint just over 9900 x 5 MiB goes
// up in parts of 6 MiB, not 5.
func TestSizeHintGrowsParts(t *testing.T) {
	srv := testutil.S3(t)
	var mu sync.Mutex
	var sizes []int64
	st, _ := open(t, srv, "p", func(c *s3.Config) {
		c.Transport = partSizeTransport{next: http.DefaultTransport, record: func(n int64) {
			mu.Lock()
			sizes = append(sizes, n)
			mu.Unlock()
		}}
	})
	const size = 13 << 20
	put := func(hint int64) []int64 {
		t.Helper()
		sizes = nil
		if n, err := st.Put(context.Background(), "h/hinted", io.LimitReader(zeros{}, size), store.PutOptions{SizeHint: hint}); err != nil || n != size {
			t.Fatalf("Put = %d, %v", n, err)
		}
		slices.Sort(sizes)
		return sizes
	}
	if got, want := put(0), []int64{3 << 20, 5 << 20, 5 << 20}; !slices.Equal(got, want) {
		t.Errorf("parts without a hint: %v, want %v", got, want)
	}
	if got, want := put(9900*partSize+1), []int64{1 << 20, 6 << 20, 6 << 20}; !slices.Equal(got, want) {
		t.Errorf("parts with a hint: %v, want %v", got, want)
	}
	if got, want := put(9900*partSize), []int64{3 << 20, 5 << 20, 5 << 20}; !slices.Equal(got, want) {
		t.Errorf("parts with a hint that fits: %v, want %v", got, want)
	}
}

// An object of unknown size (a dump: no size hint) larger than maxParts
// parts of the configured size goes up in parts that grow as the upload
// goes on: here S3's limit lowered to 6 parts, so 5 MiB parts would stop at
// 30 MiB; 60 MiB goes up as 5, 5, 5, 10, 20 and 15 MiB and reads back
// intact, still with two part buffers. Past what the growing parts hold,
// the Put fails naming the limit and leaves no upload.
func TestPartsGrowPastMaxParts(t *testing.T) {
	srv := testutil.S3(t)
	var mu sync.Mutex
	var sizes []int64
	st, bucket := open(t, srv, "p", func(c *s3.Config) {
		c.Transport = partSizeTransport{next: http.DefaultTransport, record: func(n int64) {
			mu.Lock()
			sizes = append(sizes, n)
			mu.Unlock()
		}}
	})
	s3.SetMaxParts(st, 6)
	ctx := context.Background()
	const size = 60 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	n, err := st.Put(ctx, "h/dumps/db/2026-11-25T013000Z/dump.sql.zst", bytes.NewReader(data), store.PutOptions{})
	if err != nil || n != size {
		t.Fatalf("Put of 60 MiB with 6 parts = %d, %v", n, err)
	}
	slices.Sort(sizes)
	if want := []int64{5 << 20, 5 << 20, 5 << 20, 10 << 20, 15 << 20, 20 << 20}; !slices.Equal(sizes, want) {
		t.Errorf("part sizes %v, want %v", sizes, want)
	}
	rc, err := st.Get(ctx, "h/dumps/db/2026-11-25T013000Z/dump.sql.zst")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: %d bytes, %v; want the 60 MiB put", len(got), err)
	}
	if n := s3.PeakPartBuffers(st); n != 2 {
		t.Errorf("held up to %d part buffers at once, want 2", n)
	}
	// Exactly what the 6 parts hold fits; one byte more does not.
	if got := s3.PartsHold(6, partSize); got != 85<<20 {
		t.Errorf("6 parts from 5 MiB hold %d bytes, want 85 MiB", got)
	}
	if _, err := st.Put(ctx, "h/full", io.LimitReader(zeros{}, 85<<20), store.PutOptions{}); err != nil {
		t.Errorf("Put of exactly 85 MiB: %v", err)
	}
	_, err = st.Put(ctx, "h/toobig", io.LimitReader(zeros{}, 85<<20+1), store.PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "larger than S3's 6 parts hold") || !strings.Contains(err.Error(), "store.part_size") {
		t.Errorf("Put past the limit: %v, want an error naming it", err)
	}
	if u := uploads(t, srv, bucket); len(u) != 0 {
		t.Errorf("unfinished uploads left: %v", u)
	}
	if _, err := st.Stat(ctx, "h/toobig"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat of the failed object: %v, want not found", err)
	}
}

// partSizeTransport records the payload size of every part upload.
type partSizeTransport struct {
	next   http.RoundTripper
	record func(int64)
}

func (p partSizeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
		n := r.ContentLength
		if d := r.Header.Get("X-Amz-Decoded-Content-Length"); d != "" {
			n, _ = strconv.ParseInt(d, 10, 64)
		}
		p.record(n)
	}
	return p.next.RoundTrip(r)
}

func TestCheckMissingBucket(t *testing.T) {
	srv := testutil.S3(t)
	st := openIn(t, srv, "vt-no-such-bucket-here", "p")
	err := st.Check(context.Background())
	assertErr(t, err, true, `bucket "vt-no-such-bucket-here" does not exist`, "create the bucket")
	if !strings.HasPrefix(err.Error(), "store s3://vt-no-such-bucket-here/p: ") {
		t.Errorf("error %q does not name the store first", err)
	}
}

func TestCheckWrongSecret(t *testing.T) {
	srv := testutil.S3(t)
	bucket := srv.Bucket(t)
	st := openIn(t, srv, bucket, "p", func(c *s3.Config) { c.SecretKey = "wrong-secret" })
	err := st.Check(context.Background())
	assertErr(t, err, true, "rejected the keys", "store.secret_key_file")
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("error shows the secret: %v", err)
	}
	st = openIn(t, srv, bucket, "p", func(c *s3.Config) { c.AccessKey = "nobody" })
	assertErr(t, st.Check(context.Background()), true, "rejected the keys", "AWS_ACCESS_KEY_ID")
}

func TestCheckUnreachable(t *testing.T) {
	// A port nothing listens on any more.
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	st, err := s3.New(s3.Config{Endpoint: addr, Bucket: "bucket1", Credentials: s3.Credentials{AccessKey: "a", SecretKey: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err = st.Check(ctx)
	assertErr(t, err, false, "is unreachable", "check store.endpoint")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Check took %v to notice a refused connection", d)
	}
}

// https to a plain-http server, and a certificate no configured CA signed.
func TestCheckTLS(t *testing.T) {
	srv := testutil.S3(t)
	st := openIn(t, srv, "bucket1", "", func(c *s3.Config) { c.Secure = true })
	assertErr(t, st.Check(context.Background()), true, "does not speak TLS", "https port")

	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket1</Name><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`)
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	ts.StartTLS()
	defer ts.Close()
	cfg := s3.Config{Endpoint: strings.TrimPrefix(ts.URL, "https://"), Secure: true, Bucket: "bucket1", Credentials: s3.Credentials{AccessKey: "a", SecretKey: "b"}}
	st, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	assertErr(t, st.Check(context.Background()), true, "is not trusted", "store.ca_file")

	// With the server's certificate as ca_file, the same check passes.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pemCert(ts), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.CAFile = ca
	if st, err = s3.New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := st.Check(context.Background()); err != nil {
		t.Fatalf("Check with ca_file: %v", err)
	}
}

func TestLoadCredentials(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	_, err := s3.LoadCredentials("", "", getenv, nil)
	assertErr(t, err, true, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are empty", "store.access_key_file")
	env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "ak", "sk"
	if c, err := s3.LoadCredentials("", "", getenv, nil); err != nil || c.AccessKey != "ak" || c.SecretKey != "sk" {
		t.Errorf("from the environment: %+v, %v", c, err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "access"), []byte("AKFILE\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("  SKFILE \n"), 0o644)
	var loose []string
	c, err := s3.LoadCredentials(filepath.Join(dir, "access"), filepath.Join(dir, "secret"), getenv, func(f string) { loose = append(loose, f) })
	if err != nil || c.AccessKey != "AKFILE" || c.SecretKey != "SKFILE" {
		t.Errorf("from files: %+v, %v; want the files' keys, not the environment's", c, err)
	}
	if len(loose) != 1 || filepath.Base(loose[0]) != "secret" {
		t.Errorf("files readable by others: %v, want the secret file", loose)
	}
	_, err = s3.LoadCredentials(filepath.Join(dir, "access"), filepath.Join(dir, "missing"), getenv, nil)
	assertErr(t, err, true, "store.secret_key_file", "chmod 0600")
}

func assertErr(t *testing.T, err error, usage bool, msg, hint string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", msg)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not contain %q", err, msg)
	}
	hints := strings.Join(fail.Hints(err), "\n")
	if !strings.Contains(hints, hint) {
		t.Errorf("hints %q of %q do not contain %q", hints, err, hint)
	}
	if fail.IsUsage(err) != usage {
		t.Errorf("IsUsage(%q) = %v, want %v", err, !usage, usage)
	}
}

func pemCert(ts *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// shortReader returns at most 100 kB per Read, like a pipe.
type shortReader struct{ r io.Reader }

func (s *shortReader) Read(p []byte) (int, error) {
	if len(p) > 100000 {
		p = p[:100000]
	}
	return s.r.Read(p)
}

// cancelAfter cancels after n bytes and keeps returning data, like a
// producer that does not watch the context.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// countTransport tracks how many part uploads run at once.
type countTransport struct {
	next    http.RoundTripper
	n, peak *atomic.Int32
}

func (c countTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPut || !r.URL.Query().Has("partNumber") {
		return c.next.RoundTrip(r)
	}
	n := c.n.Add(1)
	defer c.n.Add(-1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return c.next.RoundTrip(r)
}

// flipTransport flips one byte deep in the body of every object PUT (whole
// or part): corruption after voltar computed its checksums.
type flipTransport struct {
	next    http.RoundTripper
	flipped *atomic.Int32
}

func (f flipTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && r.Body != nil && r.ContentLength > 70000 {
		r2 := r.Clone(r.Context())
		r2.Body = &flipBody{ReadCloser: r.Body, at: 65536, flipped: f.flipped}
		return f.next.RoundTrip(r2)
	}
	return f.next.RoundTrip(r)
}

type flipBody struct {
	io.ReadCloser
	off, at int64
	flipped *atomic.Int32
}

func (b *flipBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.off <= b.at && b.at < b.off+int64(n) {
		p[b.at-b.off] ^= 0x01
		b.flipped.Add(1)
	}
	b.off += int64(n)
	return n, err
}

// A server that ignores the Range header and sends the whole object (200
// OK) still gives ranged reads their range; one that sends another range
// than asked for is an error.
func TestGetRangeOfOtherServers(t *testing.T) {
	const data = "0123456789"
	var contentRange atomic.Value // what a 206 answer says it holds
	contentRange.Store("")
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/bucket1/k" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"e"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if cr := contentRange.Load().(string); cr != "" && r.Header.Get("Range") != "" {
			w.Header().Set("Content-Range", cr)
			w.WriteHeader(http.StatusPartialContent)
		}
		io.WriteString(w, data)
	}))
	defer ts.Close()
	st, err := s3.New(s3.Config{Endpoint: strings.TrimPrefix(ts.URL, "http://"), Bucket: "bucket1", Credentials: s3.Credentials{AccessKey: "a", SecretKey: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		off, n int64
		want   string
		err    error
	}{
		{3, 4, "3456", nil},
		{7, -1, "789", nil},
		{0, -1, data, nil},
		{10, -1, "", nil},
		{6, 5, "", store.ErrRange},
		{11, -1, "", store.ErrRange},
	} {
		var got []byte
		rc, err := st.GetRange(ctx, "k", tc.off, tc.n)
		if err == nil {
			got, err = io.ReadAll(rc)
			rc.Close()
		}
		if string(got) != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("GetRange(%d, %d) = %q, %v; want %q, %v", tc.off, tc.n, got, err, tc.want, tc.err)
		}
	}
	contentRange.Store("bytes 0-9/10")
	if _, err := st.GetRange(ctx, "k", 2, 3); err == nil || !strings.Contains(err.Error(), "not 2") {
		t.Errorf("GetRange answered with another range: %v, want an error", err)
	}
}
