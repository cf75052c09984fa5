package stow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

const (
	// DefaultPartSize is the multipart part size, and also the size below which
	// an object goes up in a single PUT.
	DefaultPartSize = 8 << 20
	// MinPartSize is S3's smallest allowed part (except the last one).
	MinPartSize = 5 << 20
	// uploadConcurrency bounds the parts in flight per Put, so a Put holds at
	// most about (uploadConcurrency+3) parts in memory, whatever the object's size.
	uploadConcurrency = 4
	// abortTimeout gives AbortMultipartUpload a fresh deadline when the Put's
	// own context is already cancelled, so a cancelled push leaves no parts.
	abortTimeout = 30 * time.Second
	// maxPresignTTL is SigV4's limit for presigned URLs.
	maxPresignTTL = 7 * 24 * time.Hour
	// sha256Meta is the user-metadata key (x-amz-meta-sha256) holding the hex
	// SHA-256 of objects that went up in a single PUT.
	sha256Meta = "sha256"
)

// S3Config selects a bucket and how to reach it. Credentials are not part of
// it on purpose: they come from the SDK's standard chain (environment, shared
// files, SSO, IMDS/ECS roles), so they never pass through flags or logs.
type S3Config struct {
	Bucket string
	// Prefix is prepended (with a slash) to every key; empty means the bucket root.
	Prefix string
	// Endpoint is a custom base URL (MinIO, SeaweedFS, ...). Empty means AWS.
	Endpoint string
	// Region overrides the SDK's region; us-east-1 when neither is set.
	Region string
	// PathStyle addresses the bucket as ENDPOINT/BUCKET instead of BUCKET.ENDPOINT,
	// which most S3-compatible servers need.
	PathStyle bool

	// HTTPClient replaces the SDK's HTTP client for S3 requests (optional). Its
	// TLS settings are its own: AWS_CA_BUNDLE applies only to the SDK's client.
	HTTPClient *http.Client
	// RetryMaxAttempts bounds the attempts per request, first one included
	// (default 3).
	RetryMaxAttempts int
	// RetryMaxBackoff caps the wait between attempts (default 20s).
	RetryMaxBackoff time.Duration
	// PartSize is the multipart part size (default DefaultPartSize, at least MinPartSize).
	PartSize int64
	// ListPageSize is the number of keys asked for per List request
	// (default: the server's, 1000 on S3).
	ListPageSize int32
	// Credentials replaces the standard chain. It exists for tests against a
	// fake server; the CLI must never fill it from flags.
	Credentials aws.CredentialsProvider
	// Logger receives the SDK's warnings (optional; silent without it).
	Logger *slog.Logger
}

// S3 stores objects in an S3 bucket under a prefix. Put streams through the
// transfer manager: small objects go up in one PUT, large ones as a multipart
// upload that is completed only after every part arrived, or aborted. Either
// way readers see the old object or the whole new one.
type S3 struct {
	client   *s3.Client
	uploader *transfermanager.Client
	presign  *s3.PresignClient
	bucket   string
	prefix   string // "" or ends with "/"
	partSize int64
	pageSize int32
}

var (
	_ Store     = (*S3)(nil)
	_ Presigner = (*S3)(nil)
)

// NewS3 builds an S3 store. It does not touch the network; call Ping to check
// that the bucket is reachable.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if err := checkBucket(cfg.Bucket); err != nil {
		return nil, err
	}
	prefix, err := cleanPrefix(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: S3 endpoint %q is not an http(s) URL", ErrBadURL, cfg.Endpoint)
		}
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	if partSize < MinPartSize {
		return nil, fmt.Errorf("stow: S3 part size %d is below S3's minimum %d", partSize, MinPartSize)
	}
	if cfg.RetryMaxAttempts < 0 || cfg.RetryMaxBackoff < 0 || cfg.ListPageSize < 0 {
		return nil, errors.New("stow: S3 retry and page settings must not be negative")
	}

	opts := []func(*config.LoadOptions) error{
		// Newer SDKs add CRC32 checksums (aws-chunked trailers) to every upload
		// and validate response checksums by default; MinIO, SeaweedFS and most
		// other S3-compatible servers reject or mangle those. WhenRequired keeps
		// plain requests; integrity is checked by Get itself (see verifyingReader).
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				if cfg.RetryMaxAttempts > 0 {
					o.MaxAttempts = cfg.RetryMaxAttempts
				}
				if cfg.RetryMaxBackoff > 0 {
					o.MaxBackoff = cfg.RetryMaxBackoff
				}
			})
		}),
		config.WithLogger(sdkLogger(cfg.Logger)),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("stow: load AWS config: %w", err)
	}
	if awsCfg.Region == "" {
		// Signing needs a region; S3-compatible servers conventionally accept this one.
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		if cfg.HTTPClient != nil {
			// Set here, not in LoadDefaultConfig: there it would also carry the
			// credential chain's requests, and a CA bundle from the environment
			// (AWS_CA_BUNDLE) can only be applied to the SDK's own client type.
			o.HTTPClient = cfg.HTTPClient
		}
	})
	uploader := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = partSize
		o.MultipartUploadThreshold = partSize
		o.Concurrency = uploadConcurrency
		o.FailTimeout = abortTimeout
		// The transfer manager has its own checksum default (CRC32 on every
		// part) that overrides the client's; turn it off for the same reason.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	return &S3{
		client:   client,
		uploader: uploader,
		presign:  s3.NewPresignClient(client),
		bucket:   cfg.Bucket,
		prefix:   prefix,
		partSize: partSize,
		pageSize: cfg.ListPageSize,
	}, nil
}

// ParseURL splits "s3://BUCKET/PREFIX" into its bucket and prefix (no leading
// or trailing slash; empty for the bucket root).
func ParseURL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrBadURL, raw, err)
	}
	if u.Scheme != "s3" || u.Opaque != "" || u.User != nil || u.Port() != "" ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", "", fmt.Errorf("%w: %q is not s3://BUCKET/PREFIX", ErrBadURL, raw)
	}
	if err := checkBucket(u.Host); err != nil {
		return "", "", fmt.Errorf("%w (in %q)", err, raw)
	}
	prefix, err = cleanPrefix(u.Path)
	if err != nil {
		return "", "", fmt.Errorf("%w (in %q)", err, raw)
	}
	return u.Host, strings.TrimSuffix(prefix, "/"), nil
}

// URL is the store's location as s3://BUCKET/PREFIX, for logs and status.
func (s *S3) URL() string {
	return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

// Ping checks that the bucket exists and the credentials may use it.
func (s *S3) Ping(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		return fmt.Errorf("stow: bucket %s: %w", s.bucket, err)
	}
	return nil
}

// Put implements Store. The body is streamed: at most a few parts are in memory
// at once. Objects smaller than the part size go up in one PUT and carry the
// SHA-256 of their content in metadata, which Get verifies. Larger objects go
// up as a multipart upload; their SHA-256 is only known after the last part,
// too late for metadata set when the upload is created, and hashing them twice
// would mean reading the source twice or buffering it, so Get verifies their
// length only. A failed multipart upload is aborted, also when ctx was cancelled.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, err
	}
	src := &countingReader{r: ctxReader{ctx, r}}
	// Read up to one part ourselves (growing as needed, so small objects stay
	// small): if the object ends within it, the transfer manager will send it
	// in a single PUT and we know its hash before sending.
	head, err := io.ReadAll(io.LimitReader(src, s.partSize))
	if err != nil {
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	var body io.Reader
	var meta map[string]string
	if int64(len(head)) < s.partSize {
		sum := sha256.Sum256(head)
		meta = map[string]string{sha256Meta: hex.EncodeToString(sum[:])}
		body = bytes.NewReader(head)
	} else {
		body = io.MultiReader(bytes.NewReader(head), src)
	}
	out, err := s.uploader.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket:   aws.String(s.bucket),
		Key:      aws.String(s.prefix + key),
		Body:     body,
		Metadata: meta,
	})
	if err != nil {
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	info, err := s.Stat(ctx, key)
	if err != nil {
		// The object is stored; describe it from what the upload reported.
		return Info{Key: key, Size: src.n, ModTime: time.Now(), ETag: trimETag(out.ETag)}, nil
	}
	return info, nil
}

// Create implements Store with a PUT carrying If-None-Match: *.
func (s *S3) Create(ctx context.Context, key string, r io.Reader) (Info, error) {
	return s.putIf(ctx, key, r, func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
}

// Swap implements Store with a PUT carrying If-Match: ETAG.
func (s *S3) Swap(ctx context.Context, key string, r io.Reader, etag string) (Info, error) {
	if etag == "" {
		return Info{}, fmt.Errorf("stow: swap %s: %w: no ETag to compare", key, ErrConflict)
	}
	return s.putIf(ctx, key, r, func(in *s3.PutObjectInput) { in.IfMatch = aws.String(`"` + etag + `"`) })
}

// putIf is a conditional single PUT. Conditional writes hold records, not
// bulk data: an object of a part size or more is refused rather than sent as
// a multipart upload (whose completion would need the condition instead).
func (s *S3) putIf(ctx context.Context, key string, r io.Reader, cond func(*s3.PutObjectInput)) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, err
	}
	body, err := io.ReadAll(io.LimitReader(ctxReader{ctx, r}, s.partSize))
	if err != nil {
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	if int64(len(body)) >= s.partSize {
		return Info{}, fmt.Errorf("stow: put %s: conditional writes are limited to objects under %d bytes", key, s.partSize)
	}
	sum := sha256.Sum256(body)
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.prefix + key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		Metadata:      map[string]string{sha256Meta: hex.EncodeToString(sum[:])},
	}
	cond(in)
	var attempts atomic.Int32
	out, err := s.client.PutObject(ctx, in, func(o *s3.Options) {
		o.HTTPClient = countingClient{o.HTTPClient, &attempts}
	})
	if err != nil {
		if !isConflict(err) {
			return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
		}
		// The SDK retries a PUT whose answer did not arrive. When an earlier
		// attempt was stored, the retry fails its own precondition; finding
		// our bytes under the key means that write was ours. (Another
		// writer's identical bytes, written in that window, look the same;
		// no S3 request can tell them apart.)
		if attempts.Load() > 1 {
			if info, ok := s.storedOwn(ctx, key, in.Metadata[sha256Meta]); ok {
				return info, nil
			}
		}
		return Info{}, fmt.Errorf("stow: put %s: %w", key, ErrConflict)
	}
	return Info{Key: key, Size: int64(len(body)), ModTime: time.Now(), ETag: trimETag(out.ETag)}, nil
}

// storedOwn reports whether the object under key carries the SHA-256 sum.
func (s *S3) storedOwn(ctx context.Context, key, sum string) (Info, bool) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil || !strings.EqualFold(metaValue(out.Metadata, sha256Meta), sum) {
		return Info{}, false
	}
	return Info{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
		ETag:    trimETag(out.ETag),
	}, true
}

// countingClient counts the HTTP attempts of one operation.
type countingClient struct {
	next s3.HTTPClient
	n    *atomic.Int32
}

func (c countingClient) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.Do(r)
}

// isConflict reports a failed precondition: 412 PreconditionFailed, 409
// ConditionalRequestConflict (AWS, when another conditional write to the key
// is in flight), or 404 on If-Match of a key that is gone.
func isConflict(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "NotFound":
			return true
		case "NoSuchBucket":
			return false
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusPreconditionFailed, http.StatusConflict, http.StatusNotFound:
			return true
		}
	}
	return false
}

// Get implements Store. The body streams from S3; reading it to EOF checks that
// exactly the reported number of bytes arrived (and the SHA-256, when the
// object carries one), so a cut connection is an error wrapping ErrCorrupt.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	if err := CheckKey(key); err != nil {
		return nil, Info{}, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		return nil, Info{}, s.fail("get", key, err)
	}
	if out.ContentLength == nil || *out.ContentLength < 0 {
		_ = out.Body.Close()
		return nil, Info{}, fmt.Errorf("stow: get %s: server did not report the object's size", key)
	}
	info := Info{
		Key:     key,
		Size:    *out.ContentLength,
		ModTime: aws.ToTime(out.LastModified),
		ETag:    trimETag(out.ETag),
	}
	vr := &verifyingReader{body: out.Body, key: key, size: info.Size}
	if want := metaValue(out.Metadata, sha256Meta); want != "" {
		vr.wantSHA = strings.ToLower(want)
		vr.hash = sha256.New()
	}
	return vr, info, nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		return Info{}, s.fail("stat", key, err)
	}
	return Info{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
		ETag:    trimETag(out.ETag),
	}, nil
}

// Delete implements Store. Deleting a missing object is not an error.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("stow: delete %s: %w", key, err)
	}
	return nil
}

// List implements Store. Keys come back relative to the store's prefix, sorted.
// Objects whose names are not valid keys (directory markers such as "a/",
// names written by other tools) are skipped, since no other method could
// address them.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + prefix),
	}
	pages := s3.NewListObjectsV2Paginator(s.client, in, func(o *s3.ListObjectsV2PaginatorOptions) {
		o.Limit = s.pageSize
		// A server that hands back the same token would otherwise loop forever.
		o.StopOnDuplicateToken = true
	})
	var out []Info
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("stow: list %s: %w", prefix, err)
		}
		for _, obj := range page.Contents {
			key, ok := strings.CutPrefix(aws.ToString(obj.Key), s.prefix)
			if !ok || !strings.HasPrefix(key, prefix) || CheckKey(key) != nil {
				continue
			}
			out = append(out, Info{
				Key:     key,
				Size:    aws.ToInt64(obj.Size),
				ModTime: aws.ToTime(obj.LastModified),
				ETag:    trimETag(obj.ETag),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// PresignGet implements Presigner: a URL that GETs key without credentials
// until ttl passes.
func (s *S3) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := checkPresign(key, ttl); err != nil {
		return "", err
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("stow: presign get %s: %w", key, err)
	}
	return req.URL, nil
}

// PresignPut implements Presigner: a URL that accepts one plain HTTP PUT of
// the whole object (no extra headers needed) until ttl passes.
func (s *S3) PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := checkPresign(key, ttl); err != nil {
		return "", err
	}
	req, err := s.presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("stow: presign put %s: %w", key, err)
	}
	return req.URL, nil
}

func checkPresign(key string, ttl time.Duration) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if ttl <= 0 || ttl > maxPresignTTL {
		return fmt.Errorf("stow: presign %s: ttl %s outside (0, %s]", key, ttl, maxPresignTTL)
	}
	return nil
}

func (s *S3) fail(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("stow: %s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("stow: %s %s: %w", op, key, err)
}

// isNotFound reports a missing object: NoSuchKey from GET, a bare 404
// (NotFound) from HEAD. NoSuchBucket is not one: that is a configuration error.
func isNotFound(err error) bool {
	var noKey *types.NoSuchKey
	var notFound *types.NotFound
	if errors.As(err, &noKey) || errors.As(err, &notFound) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		}
	}
	return false
}

// checkBucket accepts S3 bucket names (3-63 letters, digits, dots, hyphens,
// and the underscores some compatible servers allow), starting and ending
// with a letter or digit.
func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("%w: bucket name %q must be 3 to 63 characters", ErrBadURL, b)
	}
	for i, c := range b {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(b)-1 || (c != '.' && c != '-' && c != '_')) {
			return fmt.Errorf("%w: bad bucket name %q", ErrBadURL, b)
		}
	}
	return nil
}

// cleanPrefix turns "a/b", "/a/b/" or "" into "a/b/" or "", rejecting anything
// that would not be a clean key.
func cleanPrefix(p string) (string, error) {
	p = strings.TrimPrefix(p, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return "", nil
	}
	if err := CheckKey(p); err != nil {
		return "", fmt.Errorf("%w: prefix %q is not a clean path", ErrBadURL, p)
	}
	return p + "/", nil
}

func trimETag(etag *string) string {
	return strings.Trim(aws.ToString(etag), `"`)
}

func metaValue(meta map[string]string, name string) string {
	for k, v := range meta {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// verifyingReader turns a short, long or altered body into an error at EOF
// instead of a silent success.
type verifyingReader struct {
	body    io.ReadCloser
	key     string
	size    int64
	n       int64
	hash    hash.Hash // nil when the object carries no SHA-256
	wantSHA string
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.body.Read(p)
	v.n += int64(n)
	if v.hash != nil {
		v.hash.Write(p[:n])
	}
	if v.n > v.size {
		return n, fmt.Errorf("stow: get %s: %w: more than the %d bytes reported", v.key, ErrCorrupt, v.size)
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF):
		if v.n != v.size {
			return n, fmt.Errorf("stow: get %s: %w: got %d of %d bytes", v.key, ErrCorrupt, v.n, v.size)
		}
		if v.hash != nil {
			if got := hex.EncodeToString(v.hash.Sum(nil)); got != v.wantSHA {
				return n, fmt.Errorf("stow: get %s: %w: sha256 %s, want %s", v.key, ErrCorrupt, got, v.wantSHA)
			}
		}
		return n, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return n, fmt.Errorf("stow: get %s: %w: connection cut after %d of %d bytes: %w", v.key, ErrCorrupt, v.n, v.size, err)
	default:
		return n, fmt.Errorf("stow: get %s: %w", v.key, err)
	}
}

func (v *verifyingReader) Close() error { return v.body.Close() }

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// sdkLogger forwards the SDK's own messages to l, or drops them: the SDK's
// default writes to stderr, and we log only through a logger we were given.
func sdkLogger(l *slog.Logger) logging.Logger {
	if l == nil {
		return logging.Nop{}
	}
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		level := slog.LevelDebug
		if c == logging.Warn {
			level = slog.LevelWarn
		}
		l.Log(context.Background(), level, "aws sdk: "+fmt.Sprintf(format, v...))
	})
}
