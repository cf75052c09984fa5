package heroku

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Opener opens the slug's bytes from the start. UploadSlug calls it once per
// attempt and closes what it returns, which is what lets a failed PUT be retried
// without holding the slug in memory (a stowed slug or a file opens again cheaply).
type Opener func() (io.ReadCloser, error)

// UploadSlug sends the size bytes that open yields to blob.URL with blob.Method
// upper-cased (SPEC G4). The request carries an empty Content-Type (the URL is
// presigned with one; set explicitly so nothing fills it in), an exact
// Content-Length, no Authorization header, and streams the body. 5xx, 429 and
// broken connections are retried within Config.RetryBudget, each attempt bounded
// by Config.UploadTimeout. Errors name the blob's host and path, never its query
// (the signature).
func (c *Client) UploadSlug(ctx context.Context, blob Blob, open Opener, size int64) error {
	method := strings.ToUpper(strings.TrimSpace(blob.Method))
	if method == "" {
		method = http.MethodPut
	}
	u, err := url.Parse(blob.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("heroku: upload slug: blob URL is not an http(s) URL")
	}
	if size < 0 {
		return fmt.Errorf("heroku: upload slug: negative size %d", size)
	}
	where := u.Host + u.Path
	err = c.withRetries(ctx, method+" "+where, "", func(ctx context.Context) attempt {
		return c.uploadAttempt(ctx, method, blob.URL, open, size)
	})
	if err != nil {
		return fmt.Errorf("heroku: upload slug to %s: %w", where, err)
	}
	return nil
}

func (c *Client) uploadAttempt(ctx context.Context, method, target string, open Opener, size int64) attempt {
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.UploadTimeout, errAttemptTimeout)
	defer cancel()
	rc, err := open()
	if err != nil {
		return attempt{err: fmt.Errorf("open slug: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		_ = rc.Close()
		return attempt{err: fmt.Errorf("build request: %w", err)}
	}
	body := &countingReader{r: rc}
	if size == 0 {
		// A non-nil body with ContentLength 0 would be sent chunked, which
		// presigned PUTs refuse.
		_ = rc.Close()
		req.Body = http.NoBody
	} else {
		req.Body = struct {
			io.Reader
			io.Closer
		}{body, rc}
	}
	req.ContentLength = size
	req.Header["Content-Type"] = []string{""}
	start := time.Now()
	resp, err := c.http.Do(req) // closes req.Body
	if err != nil {
		a := c.transportFailure(ctx, err, c.cfg.UploadTimeout)
		// n counts what the transport took from the body, which may still have
		// been in socket buffers when the connection broke.
		a.err = fmt.Errorf("%w after %d of %d bytes: %w", errUploadBroken, body.n.Load(), size, a.err)
		return a
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	c.log.Debug("heroku slug upload", "status", resp.StatusCode, "bytes", size, "duration", time.Since(start))
	if resp.StatusCode/100 == 2 {
		return attempt{}
	}
	api := &APIError{Status: resp.StatusCode}
	// Blob stores answer errors in S3's XML shape.
	var e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if xml.Unmarshal(data, &e) == nil {
		api.ID = e.Code
		if e.Message != "" {
			api.Message = "slug upload refused: " + e.Message
		}
	}
	if api.Message == "" {
		api.Message = fmt.Sprintf("slug upload refused: %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return attempt{err: api, retry: retryable(resp.StatusCode), retryAfter: retryAfter(resp.Header)}
}

// countingReader counts what the transport has taken from the body, so a broken
// upload can say how far it got. The transport reads from its own goroutine.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.n.Add(int64(n))
	return n, err
}
