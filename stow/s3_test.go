package stow_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"go.uber.org/goleak"

	"github.com/sokoban-deploy/sokoban/internal/testkit"
	"github.com/sokoban-deploy/sokoban/stow"
	"github.com/sokoban-deploy/sokoban/stow/storetest"
)

// Every SDK client, transfer and fake server started by these tests must be
// gone when they end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testBucket = "sokoban-test"

// testCreds stand in for the SDK's standard chain, so no test has to set
// AWS_* variables (t.Setenv would forbid t.Parallel).
var testCreds = credentials.NewStaticCredentialsProvider("AKIDTEST", "secret-test", "")

// fakeS3 is gofakes3 served over HTTP on 127.0.0.1, path-style, with counters
// for the requests the tests reason about.
type fakeS3 struct {
	url     string
	raw     *s3.Client // the plain SDK, to look behind the store's back
	creates atomic.Int64
	aborts  atomic.Int64
	lists   atomic.Int64
	// wrap, when set before the first request, sees every request first.
	wrap func(w http.ResponseWriter, r *http.Request, next http.Handler)
}

func newFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	faker := gofakes3.New(backend).Server()
	f := &fakeS3{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.Method == http.MethodPost && q.Has("uploads"):
			f.creates.Add(1)
		case r.Method == http.MethodDelete && q.Has("uploadId"):
			f.aborts.Add(1)
		case r.Method == http.MethodGet && q.Get("list-type") == "2":
			f.lists.Add(1)
		}
		if f.wrap != nil {
			f.wrap(w, r, faker)
			return
		}
		faker.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	f.raw = s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(srv.URL),
		UsePathStyle:               true,
		Credentials:                testCreds,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	return f
}

// testConfig is what cmd would build from --store s3://sokoban-test/PREFIX
// --s3-endpoint URL --s3-path-style, plus test-only speedups.
func testConfig(endpoint, prefix string) stow.S3Config {
	return stow.S3Config{
		Bucket:          testBucket,
		Prefix:          prefix,
		Endpoint:        endpoint,
		Region:          "us-east-1",
		PathStyle:       true,
		Credentials:     testCreds,
		RetryMaxBackoff: 5 * time.Millisecond,
		PartSize:        stow.MinPartSize,
	}
}

func newS3(t *testing.T, cfg stow.S3Config) *stow.S3 {
	t.Helper()
	s, err := stow.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// largeSize crosses the multipart threshold with a short last part.
const largeSize = 2*stow.MinPartSize + 12345

// The S3 store passes the suite the local store passes. All stores share one
// server under sibling prefixes, next to decoys a sloppy prefix match would
// pick up ("s/1x/..." for the store at "s/1").
func TestS3Conformance(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	for _, k := range []string{"decoy", "s/decoy", "s/1x/y", "s/1"} {
		if _, err := f.raw.PutObject(context.Background(), &s3.PutObjectInput{
			Bucket: aws.String(testBucket), Key: aws.String(k), Body: strings.NewReader("decoy"),
		}); err != nil {
			t.Fatal(err)
		}
	}
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) stow.Store {
		return newS3(t, testConfig(f.url, fmt.Sprintf("s/%d", n.Add(1))))
	}, storetest.Options{LargeSize: largeSize})
}

// The conditional writes (Create, Swap, racing writers) against a real
// S3-protocol server that implements If-None-Match and If-Match: SeaweedFS.
// The whole suite runs there too, so the plain semantics hold on it as well.
func TestS3ConformanceSeaweedFS(t *testing.T) {
	t.Parallel()
	srv := testkit.StartSeaweedFS(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) stow.Store {
		return newS3(t, stow.S3Config{
			Bucket: srv.Bucket, Prefix: fmt.Sprintf("s/%d", n.Add(1)), Endpoint: srv.Endpoint,
			Region: srv.Region, PathStyle: true, PartSize: stow.MinPartSize,
			Credentials:     credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
			RetryMaxBackoff: 5 * time.Millisecond,
		})
	}, storetest.Options{LargeSize: largeSize})
}

// SPEC F11, DESIGN rule 7: a multipart upload whose source breaks after some
// parts went up is aborted; no incomplete upload remains and the old object
// is still the one readers get. Also when the failure is a cancelled context.
func TestS3FailedMultipartIsAborted(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s := newS3(t, testConfig(f.url, "apps"))
	ctx := context.Background()
	old, err := stow.PutBytes(ctx, s, "a/repo", []byte("old"))
	if err != nil {
		t.Fatal(err)
	}

	_, err = s.Put(ctx, "a/repo", &storetest.BrokenReader{R: storetest.NewPattern(3 * stow.MinPartSize)})
	if !errors.Is(err, storetest.ErrSourceBroke) {
		t.Fatalf("Put = %v, want ErrSourceBroke", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src := &cancelAfter{r: storetest.NewPattern(4 * stow.MinPartSize), after: 2 * stow.MinPartSize, cancel: cancel}
	if _, err := s.Put(cctx, "a/repo", src); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with ctx cancelled mid-upload = %v, want context.Canceled", err)
	}

	if c, a := f.creates.Load(), f.aborts.Load(); c != 2 || a != 2 {
		t.Fatalf("multipart uploads created %d, aborted %d; want 2 and 2", c, a)
	}
	ups, err := f.raw.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Fatalf("%d incomplete multipart uploads remain", len(ups.Uploads))
	}
	b, info, err := stow.ReadAll(ctx, s, "a/repo")
	if err != nil || string(b) != "old" || info.ETag != old.ETag {
		t.Fatalf("object after failed puts = %q %+v %v, want the old one", b, info, err)
	}
}

// cancelAfter cancels the context once `after` bytes were read, as a client
// hanging up in the middle of a push would.
type cancelAfter struct {
	r      io.Reader
	n      int64
	after  int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

// Objects below the part size carry their SHA-256 (single PUT, hash known
// before sending); multipart ones carry none and are verified by length.
func TestS3ChecksumMetadata(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s := newS3(t, testConfig(f.url, ""))
	ctx := context.Background()
	if _, err := stow.PutBytes(ctx, s, "small", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "large", storetest.NewPattern(largeSize)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("hello"))
	head, err := f.raw.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("small")})
	if err != nil {
		t.Fatal(err)
	}
	if got := head.Metadata["sha256"]; got != hex.EncodeToString(sum[:]) {
		t.Fatalf("small object sha256 metadata = %q, want %x (metadata %v)", got, sum, head.Metadata)
	}
	head, err = f.raw.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("large")})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := head.Metadata["sha256"]; ok {
		t.Fatalf("multipart object has sha256 metadata %q; it cannot be known when the upload starts", got)
	}
	if f.creates.Load() != 1 {
		t.Fatalf("large Put started %d multipart uploads, want 1", f.creates.Load())
	}
}

// MinIO, SeaweedFS and other S3-compatible servers reject or mangle the
// flexible checksums newer SDKs add by default (aws-chunked bodies with CRC32
// trailers). Neither single PUTs nor multipart parts may carry them.
func TestS3SendsNoFlexibleChecksums(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	var bad atomic.Value
	f.wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		for name, vals := range r.Header {
			v := strings.Join(vals, ",")
			lower := strings.ToLower(name)
			if lower == "x-amz-trailer" || lower == "x-amz-sdk-checksum-algorithm" ||
				strings.HasPrefix(lower, "x-amz-checksum-") ||
				strings.Contains(v, "aws-chunked") || strings.HasPrefix(v, "STREAMING-") {
				bad.Store(r.Method + " " + r.URL.RawQuery + ": " + name + ": " + v)
			}
		}
		next.ServeHTTP(w, r)
	}
	s := newS3(t, testConfig(f.url, ""))
	ctx := context.Background()
	if _, err := stow.PutBytes(ctx, s, "small", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "large", storetest.NewPattern(largeSize)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := stow.ReadAll(ctx, s, "small"); err != nil {
		t.Fatal(err)
	}
	if v := bad.Load(); v != nil {
		t.Fatalf("request carried a flexible-checksum header: %s", v)
	}
}

// SPEC F9: a stowed object whose content no longer matches its recorded
// SHA-256 is reported as corrupt at EOF, never passed on as good.
func TestS3GetDetectsWrongContent(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s := newS3(t, testConfig(f.url, ""))
	ctx := context.Background()
	other := sha256.Sum256([]byte("something else"))
	if _, err := f.raw.PutObject(ctx, &s3.PutObjectInput{
		Bucket:   aws.String(testBucket),
		Key:      aws.String("apps/a/repo"),
		Body:     strings.NewReader("tampered"),
		Metadata: map[string]string{"sha256": hex.EncodeToString(other[:])},
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := stow.ReadAll(ctx, s, "apps/a/repo"); !errors.Is(err, stow.ErrCorrupt) {
		t.Fatalf("ReadAll of a tampered object = %v, want ErrCorrupt", err)
	}
}

// SPEC F9: a body cut short is an error, never a silent short read. Three
// ways: the server drops the connection before Content-Length bytes; a
// middlebox ends the body cleanly but early; a middlebox alters a byte.
func TestS3GetDetectsTruncation(t *testing.T) {
	t.Parallel()
	payload := bytes.Repeat([]byte("0123456789"), 10_000)

	t.Run("ServerCutsConnection", func(t *testing.T) {
		t.Parallel()
		f := newFakeS3(t)
		f.wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/victim") {
				w = &shortWriter{ResponseWriter: w, left: int64(len(payload) / 2)}
			}
			next.ServeHTTP(w, r)
		}
		s := newS3(t, testConfig(f.url, ""))
		if _, err := stow.PutBytes(context.Background(), s, "victim", payload); err != nil {
			t.Fatal(err)
		}
		_, _, err := stow.ReadAll(context.Background(), s, "victim")
		if !errors.Is(err, stow.ErrCorrupt) {
			t.Fatalf("ReadAll of a cut body = %v, want ErrCorrupt", err)
		}
		t.Log(err)
	})

	for _, tc := range []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"CleanEarlyEOF", func(b []byte) []byte { return b[:len(b)/2] }},
		{"FlippedByte", func(b []byte) []byte { b[len(b)/3] ^= 1; return b }},
		{"TooLong", func(b []byte) []byte { return append(b, 'x') }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeS3(t)
			cfg := testConfig(f.url, "")
			cfg.HTTPClient = &http.Client{Transport: &mangler{base: http.DefaultTransport.(*http.Transport).Clone(), key: "/victim", mangle: tc.mangle}}
			s := newS3(t, cfg)
			if _, err := stow.PutBytes(context.Background(), s, "victim", payload); err != nil {
				t.Fatal(err)
			}
			_, _, err := stow.ReadAll(context.Background(), s, "victim")
			if !errors.Is(err, stow.ErrCorrupt) {
				t.Fatalf("ReadAll = %v, want ErrCorrupt", err)
			}
			t.Log(err)
			cfg.HTTPClient.CloseIdleConnections()
		})
	}
}

// shortWriter passes on only `left` bytes of the body and then swallows the
// rest, so the server closes the connection short of its Content-Length.
type shortWriter struct {
	http.ResponseWriter
	left int64
}

func (s *shortWriter) Write(p []byte) (int, error) {
	n := min(int64(len(p)), s.left)
	s.left -= n
	if _, err := s.ResponseWriter.Write(p[:n]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// mangler rewrites GET bodies for one key while keeping the original
// Content-Length, as a broken proxy would.
type mangler struct {
	base   *http.Transport
	key    string
	mangle func([]byte) []byte
}

func (m *mangler) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := m.base.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, m.key) || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(m.mangle(b)))
	return resp, nil
}

func (m *mangler) CloseIdleConnections() { m.base.CloseIdleConnections() }

// SPEC F11: a failing server gets a bounded number of attempts, then the
// caller gets an error that says what failed.
func TestS3RetriesAreBounded(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>disk on fire</Message></Error>`)
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL, "")
	cfg.RetryMaxAttempts = 4
	s := newS3(t, cfg)
	ctx := context.Background()

	ops := map[string]func() error{
		"stat": func() error { _, err := s.Stat(ctx, "k"); return err },
		"put":  func() error { _, err := stow.PutBytes(ctx, s, "k", []byte("data")); return err },
		"get":  func() error { _, _, err := s.Get(ctx, "k"); return err },
		"list": func() error { _, err := s.List(ctx, ""); return err },
	}
	for _, name := range []string{"stat", "put", "get", "list"} {
		before := hits.Load()
		err := ops[name]()
		var maxErr *retry.MaxAttemptsError
		if !errors.As(err, &maxErr) {
			t.Fatalf("%s against a failing server = %v, want a max-attempts error", name, err)
		}
		if got := hits.Load() - before; got != 4 {
			t.Errorf("%s made %d requests, want 4", name, got)
		}
		if !strings.Contains(err.Error(), "stow: "+name) || !strings.Contains(err.Error(), "500") {
			t.Errorf("%s error does not say what failed: %v", name, err)
		}
		if errors.Is(err, stow.ErrNotFound) {
			t.Errorf("%s: a 500 became ErrNotFound", name)
		}
		t.Log(err)
	}
}

// A transient failure is retried with the body rewound: the object that lands
// is the whole one.
func TestS3RetryRecovers(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	var failures atomic.Int64
	f.wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPut && failures.Add(1) <= 2 {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	}
	s := newS3(t, testConfig(f.url, ""))
	ctx := context.Background()
	if _, err := stow.PutBytes(ctx, s, "k", []byte("all of it")); err != nil {
		t.Fatal(err)
	}
	b, _, err := stow.ReadAll(ctx, s, "k")
	if err != nil || string(b) != "all of it" {
		t.Fatalf("after retried Put: %q, %v", b, err)
	}
}

// Cancelling the context stops the retry loop, even with a long backoff.
func TestS3RetryHonoursCancel(t *testing.T) {
	t.Parallel()
	second := make(chan struct{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 2 {
			close(second)
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL, "")
	cfg.RetryMaxAttempts = 50
	cfg.RetryMaxBackoff = time.Hour
	s := newS3(t, cfg)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := s.Stat(ctx, "k"); done <- err }()
	<-second
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Stat after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute): // failure guard only
		t.Fatal("Stat kept retrying after its context was cancelled")
	}
}

// List follows continuation tokens: a small page size forces many pages.
func TestS3ListPaginates(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	cfg := testConfig(f.url, "root")
	cfg.ListPageSize = 4
	s := newS3(t, cfg)
	ctx := context.Background()
	var want []string
	for i := 22; i >= 0; i-- {
		k := fmt.Sprintf("many/%02d", i)
		want = append(want, k)
		if _, err := stow.PutBytes(ctx, s, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stow.PutBytes(ctx, s, "other/x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	before := f.lists.Load()
	list, err := s.List(ctx, "many/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range list {
		got = append(got, i.Key)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	if pages := f.lists.Load() - before; pages < 6 {
		t.Fatalf("List used %d requests for 23 keys at 4 per page", pages)
	}
}

// A presigned PUT and GET work with plain net/http, no credentials, no
// extra headers.
func TestS3Presign(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	s := newS3(t, testConfig(f.url, "pre"))
	var _ stow.Presigner = s
	ctx := context.Background()
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer client.CloseIdleConnections()

	putURL, err := s.PresignPut(ctx, "apps/a/slugs/1.tgz", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(putURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("X-Amz-SignedHeaders") != "host" || q.Get("X-Amz-Expires") != "300" || u.Path != "/"+testBucket+"/pre/apps/a/slugs/1.tgz" {
		t.Fatalf("presigned PUT URL %s: signs %q for %q", u.Path, q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Expires"))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, putURL, strings.NewReader("slug via url"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("presigned PUT: %s", resp.Status)
	}

	getURL, err := s.PresignGet(ctx, "apps/a/slugs/1.tgz", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, getURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != "slug via url" {
		t.Fatalf("presigned GET: %s %q %v", resp.Status, body, err)
	}
	if b, _, err := stow.ReadAll(ctx, s, "apps/a/slugs/1.tgz"); err != nil || string(b) != "slug via url" {
		t.Fatalf("store sees %q, %v", b, err)
	}

	for _, ttl := range []time.Duration{0, -time.Second, 8 * 24 * time.Hour} {
		if _, err := s.PresignGet(ctx, "k", ttl); err == nil {
			t.Errorf("PresignGet with ttl %s succeeded", ttl)
		}
	}
	if _, err := s.PresignPut(ctx, "../k", time.Minute); !errors.Is(err, stow.ErrBadKey) {
		t.Errorf("PresignPut(../k) = %v, want ErrBadKey", err)
	}
}

func TestS3Ping(t *testing.T) {
	t.Parallel()
	f := newFakeS3(t)
	if err := newS3(t, testConfig(f.url, "")).Ping(context.Background()); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	cfg := testConfig(f.url, "")
	cfg.Bucket = "no-such-bucket"
	if err := newS3(t, cfg).Ping(context.Background()); err == nil {
		t.Fatal("Ping of a missing bucket succeeded")
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, bucket, prefix string
	}{
		{"s3://bucket", "bucket", ""},
		{"s3://bucket/", "bucket", ""},
		{"s3://my.bucket-1/sokoban", "my.bucket-1", "sokoban"},
		{"s3://bucket/a/b/", "bucket", "a/b"},
	} {
		b, p, err := stow.ParseURL(tc.in)
		if err != nil || b != tc.bucket || p != tc.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q", tc.in, b, p, err, tc.bucket, tc.prefix)
		}
	}
	for _, in := range []string{
		"", "bucket/prefix", "file:///tmp/store", "s3:bucket", "s3://", "s3:///prefix", "s3://b/x",
		"s3://-bucket/x", "s3://bucket:9000/x", "s3://user@bucket/x", "s3://bucket/x?y=1",
		"s3://bucket/x#frag", "s3://bucket/a/../b", "s3://bucket/a//b", "s3://bucket/.tmp-x",
		"s3://bu/cket", "s3://bucket with space/x",
	} {
		if b, p, err := stow.ParseURL(in); !errors.Is(err, stow.ErrBadURL) {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want ErrBadURL", in, b, p, err)
		}
	}
}

func TestNewS3RejectsBadConfig(t *testing.T) {
	t.Parallel()
	for name, mod := range map[string]func(*stow.S3Config){
		"no bucket":      func(c *stow.S3Config) { c.Bucket = "" },
		"bad prefix":     func(c *stow.S3Config) { c.Prefix = "a/../b" },
		"ftp endpoint":   func(c *stow.S3Config) { c.Endpoint = "ftp://example.invalid" },
		"no host":        func(c *stow.S3Config) { c.Endpoint = "http://" },
		"tiny parts":     func(c *stow.S3Config) { c.PartSize = 1 << 20 },
		"negative retry": func(c *stow.S3Config) { c.RetryMaxAttempts = -1 },
	} {
		cfg := testConfig("http://127.0.0.1:1", "")
		mod(&cfg)
		if _, err := stow.NewS3(context.Background(), cfg); err == nil {
			t.Errorf("%s: NewS3 succeeded", name)
		}
	}
}
