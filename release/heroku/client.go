package heroku

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultBaseURL is Heroku's Platform API.
const DefaultBaseURL = "https://api.heroku.com"

// accept pins version 3 of the API (SPEC G1).
const accept = "application/vnd.heroku+json; version=3"

// maxResponse caps how much of an API answer is read; the largest we expect (a
// config-var map) is far below it.
const maxResponse = 16 << 20

// Config configures a Client. Zero fields take the defaults named beside them.
type Config struct {
	BaseURL    string       // DefaultBaseURL
	Version    string       // sokoban's version, sent as User-Agent sokoban/VERSION; "dev"
	HTTPClient *http.Client // a plain &http.Client{}; its Timeout should stay 0, the limits below apply
	Logger     *slog.Logger // discard

	CallTimeout   time.Duration // one API attempt, answer read included; 30s
	UploadTimeout time.Duration // one slug PUT attempt; 15m
	// RetryBudget bounds one call: no new attempt starts later than RetryBudget
	// after the call began, so a call takes at most RetryBudget + one attempt.
	RetryBudget time.Duration // 1m
	MinBackoff  time.Duration // first wait between attempts, doubled each time, with jitter; 500ms
	MaxBackoff  time.Duration // cap of one wait (a Retry-After answer may ask for longer); 8s
	// RateLimitWait is how long the client holds a token's next request after an
	// answer said RateLimit-Remaining: 0 (SPEC G3). Heroku refills about one
	// request per second.
	RateLimitWait time.Duration // 2s
}

// Client talks to the Platform API on behalf of whichever user's token a method
// is given. It is safe for concurrent use.
type Client struct {
	base   string
	ua     string
	http   *http.Client
	log    *slog.Logger
	cfg    Config
	mu     sync.Mutex
	paused map[string]time.Time // token digest → no request before this instant
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("heroku: API URL %q: want http(s)://HOST", cfg.BaseURL)
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&cfg.CallTimeout, 30*time.Second)
	setDefault(&cfg.UploadTimeout, 15*time.Minute)
	setDefault(&cfg.RetryBudget, time.Minute)
	setDefault(&cfg.MinBackoff, 500*time.Millisecond)
	setDefault(&cfg.MaxBackoff, 8*time.Second)
	setDefault(&cfg.RateLimitWait, 2*time.Second)
	return &Client{
		base:   strings.TrimRight(cfg.BaseURL, "/"),
		ua:     "sokoban/" + cfg.Version,
		http:   cfg.HTTPClient,
		log:    cfg.Logger,
		cfg:    cfg,
		paused: map[string]time.Time{},
	}, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Option adjusts one call.
type Option func(*callOptions)

type callOptions struct{ requestID string }

// WithRequestID sends id as the Request-Id header instead of a fresh one, so the
// API's logs line up with the push that caused the call.
func WithRequestID(id string) Option {
	return func(o *callOptions) { o.requestID = id }
}

// call is one Platform API request.
type call struct {
	method, path string
	token        string
	body         any // marshalled as JSON; nil sends no body
	out          any // answer decoded into it; nil discards
	opts         []Option
}

// do runs c with retries and returns the answer decoded into c.out, or an error
// that never contains the token.
func (c *Client) do(ctx context.Context, cl call) error {
	var o callOptions
	for _, opt := range cl.opts {
		opt(&o)
	}
	reqID := o.requestID
	if reqID == "" {
		reqID = newRequestID()
	}
	var body []byte
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = b
	}
	where := cl.method + " " + cl.path
	limitKey := tokenDigest(cl.token)
	return c.withRetries(ctx, where, limitKey, func(ctx context.Context) attempt {
		return c.apiAttempt(ctx, cl, body, reqID, limitKey)
	})
}

// attempt is the outcome of one try.
type attempt struct {
	err        error
	retry      bool          // another attempt may succeed (429, 5xx, transport error)
	retryAfter time.Duration // the server's Retry-After, 0 when absent
}

func (c *Client) apiAttempt(ctx context.Context, cl call, body []byte, reqID, limitKey string) attempt {
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.CallTimeout, errAttemptTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, c.base+cl.path, rd)
	if err != nil {
		return attempt{err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("Authorization", "Bearer "+cl.token)
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Request-Id", reqID)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportFailure(ctx, err, c.cfg.CallTimeout)
	}
	defer func() { _ = resp.Body.Close() }()
	c.noteRateLimit(limitKey, resp.Header)
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	c.log.Debug("heroku request", "method", cl.method, "path", cl.path, "status", resp.StatusCode,
		"request_id", reqID, "duration", time.Since(start))
	if err != nil {
		return c.transportFailure(ctx, fmt.Errorf("read answer: %w", err), c.cfg.CallTimeout)
	}
	if resp.StatusCode/100 == 2 {
		if cl.out == nil {
			return attempt{}
		}
		if err := json.Unmarshal(data, cl.out); err != nil {
			return attempt{err: fmt.Errorf("decode answer: %w", err)}
		}
		return attempt{}
	}
	api := &APIError{Status: resp.StatusCode, RequestID: reqID}
	var e struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &e) == nil {
		api.ID, api.Message = e.ID, e.Message
	}
	if cl.token != "" {
		// Defensive: nothing the API says may echo the token into a log or a pusher's terminal.
		api.Message = strings.ReplaceAll(api.Message, cl.token, "[token]")
	}
	return attempt{err: api, retry: retryable(resp.StatusCode), retryAfter: retryAfter(resp.Header)}
}

// transportFailure classifies an error from the transport: the caller's own
// cancellation ends the call; anything else (a timed-out attempt, a reset
// connection) may be retried.
func (c *Client) transportFailure(ctx context.Context, err error, timeout time.Duration) attempt {
	// url.Error repeats the URL; we say where ourselves, and a presigned URL's
	// query is a credential.
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if context.Cause(ctx) == errAttemptTimeout {
		return attempt{err: fmt.Errorf("%w (%s)", errAttemptTimeout, timeout), retry: true}
	}
	return attempt{err: err, retry: ctx.Err() == nil}
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// withRetries runs try until it succeeds, fails for good, or the budget is spent.
// limitKey, when set, names the token whose rate limit is honoured before each try;
// where names the call in logs (the caller wraps the returned error).
func (c *Client) withRetries(ctx context.Context, where, limitKey string, try func(context.Context) attempt) error {
	start := time.Now()
	deadline := start.Add(c.cfg.RetryBudget)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		// Sleeping into the caller's deadline would trade the API's message for
		// "context deadline exceeded".
		deadline = d
	}
	for n := 1; ; n++ {
		if limitKey != "" {
			if err := c.waitRateLimit(ctx, limitKey); err != nil {
				return err
			}
		}
		a := try(ctx)
		if a.err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (after: %w)", context.Cause(ctx), a.err)
		}
		if !a.retry {
			return a.err
		}
		wait := a.retryAfter
		if wait <= 0 {
			wait = c.backoff(n)
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("%w after %d %s in %s: %w", ErrRetriesExhausted, n, plural(n, "attempt"),
				time.Since(start).Round(time.Millisecond), a.err)
		}
		c.log.Info("heroku: retrying", "call", where, "attempt", n, "wait", wait, "err", a.err)
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("%w (after: %w)", err, a.err)
		}
	}
}

// backoff is the wait before attempt n+1: exponential from MinBackoff, capped at
// MaxBackoff, with jitter so many pushes retrying together spread out.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.MinBackoff
	for i := 1; i < n && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxBackoff)
	half := d / 2
	return half + mrand.N(half+1)
}

// retryAfter reads Retry-After as seconds or an HTTP date; 0 when absent or bad.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// noteRateLimit pauses the token's next request when the API says its bucket is
// empty (RateLimit-Remaining: 0).
func (c *Client) noteRateLimit(key string, h http.Header) {
	v := strings.TrimSpace(h.Get("RateLimit-Remaining"))
	if v == "" {
		return
	}
	left, err := strconv.Atoi(v)
	if err != nil || left > 0 {
		return
	}
	c.mu.Lock()
	c.paused[key] = time.Now().Add(c.cfg.RateLimitWait)
	c.mu.Unlock()
	c.log.Debug("heroku: rate limit reached, pausing this token", "wait", c.cfg.RateLimitWait)
}

// waitRateLimit holds the caller until the token's pause (at most RateLimitWait) is over.
func (c *Client) waitRateLimit(ctx context.Context, key string) error {
	c.mu.Lock()
	until, ok := c.paused[key]
	now := time.Now()
	if ok && !until.After(now) {
		delete(c.paused, key)
		ok = false
	}
	// Drop other expired pauses so the map stays as small as the set of busy tokens.
	for k, t := range c.paused {
		if !t.After(now) {
			delete(c.paused, k)
		}
	}
	c.mu.Unlock()
	if !ok {
		return nil
	}
	return sleep(ctx, min(until.Sub(now), c.cfg.RateLimitWait))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// tokenDigest names a token in memory without keeping the token itself.
func tokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

// newRequestID returns a random version-4 UUID.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
