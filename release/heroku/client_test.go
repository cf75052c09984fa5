package heroku_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/release/heroku"
	"github.com/sokoban-deploy/sokoban/release/heroku/herokutest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "HRKU-tok-5ecret-9f8e7d6c" // must never show up in an error or a log line

// fixture is a fake Platform API with one account and one app, and a client
// whose logs are captured so tests can check the token stays out of them.
type fixture struct {
	srv  *herokutest.Server
	c    *heroku.Client
	logs *syncBuffer
}

func newFixture(t *testing.T, tweak func(*heroku.Config)) *fixture {
	t.Helper()
	srv := herokutest.New(t)
	srv.AddAccount("dev@example.com", token)
	srv.AddApp("my-app", token)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	logs := &syncBuffer{}
	cfg := heroku.Config{
		BaseURL:       srv.URL,
		Version:       "1.2.3-test",
		HTTPClient:    &http.Client{Transport: tr},
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		CallTimeout:   10 * time.Second, // failure guard only
		UploadTimeout: 10 * time.Second,
		RetryBudget:   10 * time.Second,
		MinBackoff:    time.Millisecond,
		MaxBackoff:    5 * time.Millisecond,
		RateLimitWait: 50 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := heroku.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: srv, c: c, logs: logs}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), token) {
			t.Errorf("the token appears in the client's logs:\n%s", logs.String())
		}
	})
	return f
}

// noToken fails the test if err's text carries the token.
func noToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), token) {
		t.Fatalf("the token appears in an error: %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newKey(t *testing.T) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " dev@laptop"
}

// SPEC G6: GET /account and GET /account/keys tie an SSH key to an account; a
// removed key stops matching.
func TestAccountAndKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := t.Context()
	pub, line := newKey(t)
	other, _ := newKey(t)
	f.srv.AddKey(token, line)

	acct, err := f.c.Account(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Email != "dev@example.com" || acct.ID == "" {
		t.Fatalf("account = %+v", acct)
	}
	keys, err := f.c.AccountKeys(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].ID == "" || keys[0].Fingerprint == "" || keys[0].PublicKey != line {
		t.Fatalf("keys = %+v", keys)
	}
	if !heroku.KeyMatches(keys[0], pub) {
		t.Fatal("the registered key does not match itself")
	}
	if heroku.KeyMatches(keys[0], other) {
		t.Fatal("another key matches")
	}

	f.srv.RemoveKey(token, line)
	keys, err = f.c.AccountKeys(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("after RemoveKey: %+v", keys)
	}
	f.srv.AssertClean(t)
}

// DESIGN.md: a key is matched by its public key (type + base64), not by a
// fingerprint string.
func TestKeyMatches(t *testing.T) {
	t.Parallel()
	pub, line := newKey(t)
	fields := strings.Fields(line)
	for _, tc := range []struct {
		name string
		k    heroku.Key
		pub  ssh.PublicKey
		want bool
	}{
		{"as uploaded", heroku.Key{PublicKey: line}, pub, true},
		{"no comment", heroku.Key{PublicKey: fields[0] + " " + fields[1]}, pub, true},
		{"options and spaces", heroku.Key{PublicKey: `no-pty,command="x"  ` + fields[0] + "\t" + fields[1] + " a b"}, pub, true},
		{"unpadded base64", heroku.Key{PublicKey: fields[0] + " " + strings.TrimRight(fields[1], "=")}, pub, true},
		{"fingerprint alone is not enough", heroku.Key{Fingerprint: ssh.FingerprintLegacyMD5(pub)}, pub, false},
		{"wrong type label", heroku.Key{PublicKey: "ssh-rsa " + fields[1]}, pub, false},
		{"garbage", heroku.Key{PublicKey: "ssh-ed25519 !!!notbase64"}, pub, false},
		{"empty", heroku.Key{}, pub, false},
		{"nil key", heroku.Key{PublicKey: line}, nil, false},
	} {
		if got := heroku.KeyMatches(tc.k, tc.pub); got != tc.want {
			t.Errorf("%s: KeyMatches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// SPEC G5: GET /apps/{app} with the user's token decides access; 403 and 404
// look the same to the pusher.
func TestApp(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := t.Context()
	f.srv.AddAccount("friend@example.com", "tok-friend")
	f.srv.AddAccount("stranger@example.com", "tok-stranger")
	f.srv.AddCollaborator("my-app", "tok-friend")

	for _, tok := range []string{token, "tok-friend"} {
		app, err := f.c.App(ctx, tok, "my-app")
		if err != nil {
			t.Fatal(err)
		}
		if app.Name != "my-app" || app.ID == "" || !strings.HasPrefix(app.WebURL, "https://my-app-") {
			t.Fatalf("app = %+v", app)
		}
	}
	for _, tc := range []struct {
		tok, app string
		status   int
	}{
		{"tok-stranger", "my-app", http.StatusForbidden},
		{token, "no-such-app", http.StatusNotFound},
	} {
		_, err := f.c.App(ctx, tc.tok, tc.app)
		if !errors.Is(err, heroku.ErrNoAccess) || err.Error() != "no such app or no access" {
			t.Fatalf("%s as %s: err = %v, want exactly ErrNoAccess's text", tc.app, tc.tok, err)
		}
		api, ok := errors.AsType[*heroku.APIError](err)
		if !ok || api.Status != tc.status {
			t.Fatalf("%s: the API's answer is lost behind ErrNoAccess: %#v", tc.app, api)
		}
		if heroku.UserMessage(err) != "no such app or no access" {
			t.Fatalf("UserMessage = %q", heroku.UserMessage(err))
		}
	}
	f.srv.AssertClean(t)
}

// SPEC G7: config vars feed ENV_DIR; the buildpack list comes in ordinal order.
func TestBuildSettings(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := t.Context()
	f.srv.SetConfig("my-app", map[string]string{"DATABASE_URL": "postgres://x", "EMPTY": "", "MULTI": "a\nb"})
	f.srv.SetNullConfig("my-app", "GONE")
	f.srv.SetBuildpacks("my-app", "heroku/nodejs", "https://github.com/heroku/heroku-buildpack-python", "heroku/python")

	vars, err := f.c.ConfigVars(ctx, token, "my-app")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"DATABASE_URL": "postgres://x", "EMPTY": "", "MULTI": "a\nb"}
	if len(vars) != len(want) {
		t.Fatalf("vars = %q, want %q (null values left out)", vars, want)
	}
	for k, v := range want {
		if vars[k] != v {
			t.Fatalf("vars[%s] = %q, want %q", k, vars[k], v)
		}
	}

	bps, err := f.c.BuildpackInstallations(ctx, token, "my-app")
	if err != nil {
		t.Fatal(err)
	}
	wantBP := []string{"heroku/nodejs", "https://github.com/heroku/heroku-buildpack-python", "heroku/python"}
	if strings.Join(bps, " ") != strings.Join(wantBP, " ") {
		t.Fatalf("buildpacks = %q, want %q", bps, wantBP)
	}

	f.srv.SetBuildpacks("my-app")
	if bps, err := f.c.BuildpackInstallations(ctx, token, "my-app"); err != nil || len(bps) != 0 {
		t.Fatalf("no buildpacks: %q, %v", bps, err)
	}
	f.srv.AssertClean(t)
}

func opener(data []byte, opens *atomic.Int32) heroku.Opener {
	return func() (io.ReadCloser, error) {
		if opens != nil {
			opens.Add(1)
		}
		return io.NopCloser(bytes.NewReader(data)), nil
	}
}

func checksum(b []byte) string {
	sum := sha256.Sum256(b)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// SPEC G4: create the slug, PUT it to blob.url with blob.method upper-cased and
// an empty Content-Type, then release it: versions count up.
func TestSlugUploadRelease(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := t.Context()
	data := bytes.Repeat([]byte("slug bytes "), 50_000)

	for wantVersion := 1; wantVersion <= 2; wantVersion++ {
		slug, err := f.c.CreateSlug(ctx, token, "my-app", heroku.SlugRequest{
			ProcessTypes: map[string]string{"web": "./bin/web -p $PORT", "worker-1": "bin/work"},
			Commit:       "60883d9e8947a57e04dc9124f25df004866a2051", CommitDescription: "fix it",
			BuildpackProvidedDescription: "Python", Checksum: checksum(data), Stack: "heroku-24",
		})
		if err != nil {
			t.Fatal(err)
		}
		if slug.ID == "" || slug.Blob.URL == "" || slug.Blob.Method != "put" {
			t.Fatalf("slug = %+v (the fake answers a lower-case method)", slug)
		}
		if err := f.c.UploadSlug(ctx, slug.Blob, opener(data, nil), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		rel, err := f.c.CreateRelease(ctx, token, "my-app", slug.ID, "Deploy 60883d9")
		if err != nil {
			t.Fatal(err)
		}
		if rel.Version != wantVersion || rel.ID == "" {
			t.Fatalf("release = %+v, want v%d", rel, wantVersion)
		}

		got, ok := f.srv.Slug(slug.ID)
		if !ok || !bytes.Equal(got.Blob, data) || got.BlobChecksum != checksum(data) {
			t.Fatalf("stored slug: ok=%v, %d bytes, %s", ok, len(got.Blob), got.BlobChecksum)
		}
		if len(got.ContentType) != 1 || got.ContentType[0] != "" {
			t.Fatalf("blob PUT Content-Type = %q, want present and empty", got.ContentType)
		}
		if got.ProcessTypes["web"] != "./bin/web -p $PORT" || got.Stack != "heroku-24" || got.Commit == "" {
			t.Fatalf("slug record = %+v", got)
		}
	}
	rels := f.srv.Releases("my-app")
	if len(rels) != 2 || rels[1].Version != 2 || rels[1].Description != "Deploy 60883d9" || rels[1].User != "dev@example.com" {
		t.Fatalf("releases = %+v", rels)
	}
	for _, r := range f.srv.Requests() {
		if r.Endpoint == herokutest.EndpointBlob && (r.Method != http.MethodPut || r.Header.Get("Authorization") != "") {
			t.Fatalf("blob request: %s with Authorization %q", r.Method, r.Header.Get("Authorization"))
		}
	}
	f.srv.AssertClean(t)
}

// A slug with no process types is still sent with process_types (required).
func TestCreateSlugNilProcessTypes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	if _, err := f.c.CreateSlug(t.Context(), token, "my-app", heroku.SlugRequest{}); err != nil {
		t.Fatal(err)
	}
	f.srv.AssertClean(t)
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// SPEC G1: Accept, Authorization, User-Agent and Request-Id on every request; a
// caller's request id is reused, also across retries.
func TestRequestHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := t.Context()
	if _, err := f.c.Account(ctx, token); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Account(ctx, token); err != nil {
		t.Fatal(err)
	}
	f.srv.FailNext(herokutest.EndpointApp, 1, herokutest.Fault{Status: http.StatusServiceUnavailable})
	if _, err := f.c.App(ctx, token, "my-app", heroku.WithRequestID("push-42")); err != nil {
		t.Fatal(err)
	}

	reqs := f.srv.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4", len(reqs))
	}
	for i, r := range reqs {
		h := r.Header
		if h.Get("Accept") != "application/vnd.heroku+json; version=3" ||
			h.Get("Authorization") != "Bearer "+token || h.Get("User-Agent") != "sokoban/1.2.3-test" {
			t.Fatalf("request %d headers: %v", i, h)
		}
	}
	id0, id1 := reqs[0].Header.Get("Request-Id"), reqs[1].Header.Get("Request-Id")
	if !uuidRE.MatchString(id0) || !uuidRE.MatchString(id1) || id0 == id1 {
		t.Fatalf("generated request ids %q, %q: want distinct UUIDs", id0, id1)
	}
	if reqs[2].Header.Get("Request-Id") != "push-42" || reqs[3].Header.Get("Request-Id") != "push-42" {
		t.Fatalf("caller's request id not reused: %q, %q", reqs[2].Header.Get("Request-Id"), reqs[3].Header.Get("Request-Id"))
	}
	f.srv.AssertClean(t)
}

// SPEC G3, F2: 5xx and 429 are retried within the budget, then the call succeeds.
func TestRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	for _, fault := range []herokutest.Fault{
		{Status: http.StatusServiceUnavailable},
		{Status: http.StatusInternalServerError},
		{Status: http.StatusBadGateway},
		{Status: http.StatusTooManyRequests, RetryAfter: "0"},
	} {
		t.Run(http.StatusText(fault.Status), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			ctx := t.Context()
			f.srv.FailNext(herokutest.EndpointCreateSlug, 2, fault)
			slug, err := f.c.CreateSlug(ctx, token, "my-app", heroku.SlugRequest{ProcessTypes: map[string]string{"web": "x"}})
			if err != nil {
				t.Fatal(err)
			}
			if n := f.srv.Count(herokutest.EndpointCreateSlug); n != 3 {
				t.Fatalf("%d attempts, want 3", n)
			}
			f.srv.FailNext(herokutest.EndpointCreateRelease, 2, fault)
			data := []byte("tiny slug")
			if err := f.c.UploadSlug(ctx, slug.Blob, opener(data, nil), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if _, err := f.c.CreateRelease(ctx, token, "my-app", slug.ID, ""); err != nil {
				t.Fatal(err)
			}
			if n := len(f.srv.Releases("my-app")); n != 1 {
				t.Fatalf("%d releases, want 1", n)
			}
			f.srv.AssertClean(t)
		})
	}
}

// SPEC G3: a Retry-After is honoured; one longer than the remaining budget ends
// the call at once with the API's message rather than sleeping past the budget.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *heroku.Config) { c.RetryBudget = 5 * time.Second })
	ctx := t.Context()

	f.srv.FailNext(herokutest.EndpointAccount, 1, herokutest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"})
	if _, err := f.c.Account(ctx, token); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.Count(herokutest.EndpointAccount); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}

	f.srv.FailNext(herokutest.EndpointApp, 1, herokutest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "120",
		Message: "Your account reached the API rate limit"})
	_, err := f.c.App(ctx, token, "my-app")
	if !errors.Is(err, heroku.ErrRetriesExhausted) || heroku.UserMessage(err) != "Your account reached the API rate limit" {
		t.Fatalf("err = %v", err)
	}
	if n := f.srv.Count(herokutest.EndpointApp); n != 1 {
		t.Fatalf("%d attempts, want 1 (Retry-After beyond the budget)", n)
	}
	f.srv.AssertClean(t)
}

// SPEC F2: when the budget runs out the error carries the API's message.
func TestRetryBudgetExhausted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *heroku.Config) { c.RetryBudget = 100 * time.Millisecond; c.MinBackoff = 10 * time.Millisecond })
	const msg = "Heroku is down for maintenance."
	f.srv.FailNext(herokutest.EndpointCreateRelease, -1, herokutest.Fault{Status: http.StatusServiceUnavailable, ID: "maintenance", Message: msg})
	_, err := f.c.CreateRelease(t.Context(), token, "my-app", "01234567-89ab-cdef-0123-456789abcdef", "")
	if err == nil {
		t.Fatal("want an error")
	}
	noToken(t, err)
	api, ok := errors.AsType[*heroku.APIError](err)
	if !errors.Is(err, heroku.ErrRetriesExhausted) || !ok || api.Status != 503 || api.ID != "maintenance" {
		t.Fatalf("err = %v (%#v)", err, api)
	}
	if heroku.UserMessage(err) != msg || !strings.Contains(err.Error(), msg) {
		t.Fatalf("err = %q, UserMessage = %q: want the API's message", err, heroku.UserMessage(err))
	}
	if n := f.srv.Count(herokutest.EndpointCreateRelease); n < 2 {
		t.Fatalf("%d attempts, want retries", n)
	}
	f.srv.AssertClean(t)
}

// SPEC F2: a slow API times out per attempt, is retried, and the call ends
// within the budget with a short reason.
func TestSlowAPITimesOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *heroku.Config) {
		c.CallTimeout = 50 * time.Millisecond
		c.RetryBudget = 200 * time.Millisecond
	})
	ctx := t.Context()
	f.srv.SetDelay(herokutest.EndpointConfigVars, time.Hour)
	_, err := f.c.ConfigVars(ctx, token, "my-app")
	if !errors.Is(err, heroku.ErrRetriesExhausted) || heroku.UserMessage(err) != "Heroku API did not answer in time" {
		t.Fatalf("err = %v, UserMessage %q", err, heroku.UserMessage(err))
	}
	noToken(t, err)
	if n := f.srv.Count(herokutest.EndpointConfigVars); n < 2 {
		t.Fatalf("%d attempts, want retries", n)
	}
	f.srv.SetDelay(herokutest.EndpointConfigVars, 0)
	if _, err := f.c.ConfigVars(ctx, token, "my-app"); err != nil {
		t.Fatal(err)
	}
	f.srv.AssertClean(t)
}

// The caller's context ends a call, also while it waits for a slow answer.
func TestContextCancel(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.srv.SetDelay(herokutest.EndpointAccount, time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for f.srv.Count(herokutest.EndpointAccount) == 0 {
			time.Sleep(time.Millisecond) // poll until the request is in flight
		}
		cancel()
	}()
	_, err := f.c.Account(ctx, token)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	f.srv.AssertClean(t)
}

// SPEC G2: a 401 is not retried; the error is an APIError with Heroku's
// message, and ErrUnauthorized tells the keys store the token is dead.
func TestUnauthorized(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := t.Context()
	f.srv.FailNext(herokutest.EndpointAccount, 1, herokutest.Fault{Status: http.StatusUnauthorized, Message: "Invalid credentials provided."})
	_, err := f.c.Account(ctx, token)
	api, ok := errors.AsType[*heroku.APIError](err)
	if !ok || api.Status != 401 || api.ID != "unauthorized" || api.Message != "Invalid credentials provided." {
		t.Fatalf("err = %v (%#v)", err, api)
	}
	if !errors.Is(err, heroku.ErrUnauthorized) || errors.Is(err, heroku.ErrRetriesExhausted) {
		t.Fatalf("err = %v: want ErrUnauthorized, no retries", err)
	}
	if heroku.UserMessage(err) != "Invalid credentials provided." {
		t.Fatalf("UserMessage = %q", heroku.UserMessage(err))
	}
	if n := f.srv.Count(herokutest.EndpointAccount); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}

	// A revoked token: the real 401 path of the fake, on every endpoint.
	f.srv.RevokeToken(token)
	_, err = f.c.AccountKeys(ctx, token)
	if !errors.Is(err, heroku.ErrUnauthorized) {
		t.Fatalf("revoked token: %v", err)
	}
	_, err = f.c.App(ctx, token, "my-app")
	if !errors.Is(err, heroku.ErrUnauthorized) || errors.Is(err, heroku.ErrNoAccess) {
		t.Fatalf("revoked token on App: %v", err)
	}
	f.srv.AssertClean(t)
}

// The token never appears in an error, whatever goes wrong — even when the API
// echoes it back.
func TestTokenNeverInErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *heroku.Config) { c.RetryBudget = 50 * time.Millisecond })
	ctx := t.Context()
	f.srv.FailNext(herokutest.EndpointAccount, 1, herokutest.Fault{Status: 401, Message: "token " + token + " expired"})
	_, err := f.c.Account(ctx, token)
	noToken(t, err)
	if !strings.Contains(err.Error(), "[token]") {
		t.Fatalf("err = %v", err)
	}
	f.srv.FailNext(herokutest.EndpointAccountKeys, -1, herokutest.Fault{Status: 503})
	_, err = f.c.AccountKeys(ctx, token)
	noToken(t, err)
	_, err = f.c.App(ctx, token, "nope-app")
	noToken(t, err)
	_, err = f.c.CreateSlug(ctx, token, "my-app", heroku.SlugRequest{ProcessTypes: map[string]string{"bad name!": "x"}})
	if err == nil {
		t.Fatal("want a 400 for an invalid process type")
	}
	noToken(t, err)
	f.srv.TakeViolations() // that last request was malformed on purpose

	f.srv.Close()
	_, err = f.c.ConfigVars(ctx, token, "my-app")
	if err == nil {
		t.Fatal("want an error from a closed server")
	}
	noToken(t, err)
}

// SPEC G3: RateLimit-Remaining: 0 makes the client hold its next request. The
// fake refuses, with 429, a request that comes sooner than refill after such an
// answer; refill is below the client's wait, so no 429 shows the client waited.
func TestRateLimitRemainingZero(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *heroku.Config) { c.RateLimitWait = 100 * time.Millisecond })
	ctx := t.Context()
	f.srv.SetRateLimit(0, 20*time.Millisecond)
	for range 3 {
		if _, err := f.c.Account(ctx, token); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range f.srv.Requests() {
		if r.Status == http.StatusTooManyRequests {
			t.Fatal("a request was sent before the rate limit allowed it")
		}
	}
	// Another token's requests are not held back: the pause is per token.
	f.srv.AddAccount("other@example.com", "tok-other")
	if _, err := f.c.Account(ctx, "tok-other"); err != nil {
		t.Fatal(err)
	}

	// Control: a client that does not wait long enough meets the 429 the test relies on.
	g := newFixture(t, func(c *heroku.Config) { c.RateLimitWait = time.Nanosecond; c.RetryBudget = 100 * time.Millisecond })
	g.srv.SetRateLimit(0, time.Hour)
	if _, err := g.c.Account(ctx, token); err != nil {
		t.Fatal(err)
	}
	_, err := g.c.Account(ctx, token)
	if api, ok := errors.AsType[*heroku.APIError](err); !ok || api.Status != http.StatusTooManyRequests {
		t.Fatalf("control: err = %v, want the fake's 429", err)
	}
	f.srv.AssertClean(t)
	g.srv.AssertClean(t)
}

// SPEC F12: a PUT that breaks halfway is retried from a fresh open; if it keeps
// breaking, the error says how far it got and the slug cannot be released.
func TestUploadFailsHalfway(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *heroku.Config) { c.RetryBudget = 200 * time.Millisecond })
	ctx := t.Context()
	data := bytes.Repeat([]byte{0xAB}, 4<<20)

	slug, err := f.c.CreateSlug(ctx, token, "my-app", heroku.SlugRequest{ProcessTypes: map[string]string{"web": "x"}, Checksum: checksum(data)})
	if err != nil {
		t.Fatal(err)
	}
	var opens atomic.Int32
	f.srv.FailBlobHalfway(1)
	if err := f.c.UploadSlug(ctx, slug.Blob, opener(data, &opens), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.srv.Slug(slug.ID); !bytes.Equal(got.Blob, data) || opens.Load() != 2 {
		t.Fatalf("after one broken PUT: %d bytes stored, %d opens", len(got.Blob), opens.Load())
	}

	slug2, err := f.c.CreateSlug(ctx, token, "my-app", heroku.SlugRequest{ProcessTypes: map[string]string{"web": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.FailBlobHalfway(-1)
	err = f.c.UploadSlug(ctx, slug2.Blob, opener(data, nil), int64(len(data)))
	if err == nil {
		t.Fatal("want an error")
	}
	if !strings.Contains(err.Error(), "slug upload broke after") || !errors.Is(err, heroku.ErrRetriesExhausted) ||
		heroku.UserMessage(err) != "slug upload to Heroku failed: connection broken" {
		t.Fatalf("err = %v: want a clear broken-upload error", err)
	}
	if strings.Contains(err.Error(), "signature=") {
		t.Fatalf("the presigned URL's signature leaks into the error: %v", err)
	}
	if got, _ := f.srv.Slug(slug2.ID); got.Uploaded {
		t.Fatal("a half upload was stored")
	}
	_, err = f.c.CreateRelease(ctx, token, "my-app", slug2.ID, "")
	if api, ok := errors.AsType[*heroku.APIError](err); !ok || api.Status != http.StatusUnprocessableEntity {
		t.Fatalf("release of an unuploaded slug: %v", err)
	}
	if len(f.srv.Releases("my-app")) != 0 {
		t.Fatal("a release was created")
	}
	f.srv.AssertClean(t)
}

// The blob store's error answers: 5xx retried, 4xx not, with its message shown.
func TestUploadRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := t.Context()
	slug, err := f.c.CreateSlug(ctx, token, "my-app", heroku.SlugRequest{ProcessTypes: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("slug")
	f.srv.FailNext(herokutest.EndpointBlob, 2, herokutest.Fault{Status: http.StatusServiceUnavailable, Message: "Please reduce your request rate."})
	if err := f.c.UploadSlug(ctx, slug.Blob, opener(data, nil), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	f.srv.FailNext(herokutest.EndpointBlob, 1, herokutest.Fault{Status: http.StatusForbidden, Message: "Request has expired"})
	err = f.c.UploadSlug(ctx, slug.Blob, opener(data, nil), int64(len(data)))
	api, ok := errors.AsType[*heroku.APIError](err)
	if !ok || api.Status != 403 || api.ID != "AccessDenied" || !strings.Contains(heroku.UserMessage(err), "Request has expired") {
		t.Fatalf("err = %v (%#v)", err, api)
	}
	if n := f.srv.Count(herokutest.EndpointBlob); n != 4 {
		t.Fatalf("%d blob requests, want 4", n)
	}

	// An opener that fails is not retried; an empty slug is sent with Content-Length 0.
	boom := errors.New("stow unreadable")
	err = f.c.UploadSlug(ctx, slug.Blob, func() (io.ReadCloser, error) { return nil, boom }, 4)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if err := f.c.UploadSlug(ctx, slug.Blob, opener(nil, nil), 0); err != nil {
		t.Fatal(err)
	}
	f.srv.AssertClean(t)
}

func TestNewRejectsBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"ftp://api.heroku.com", "api.heroku.com", "https://user:pw@api.heroku.com", "http://"} {
		if _, err := heroku.New(heroku.Config{BaseURL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	if _, err := heroku.New(heroku.Config{}); err != nil {
		t.Fatal(err)
	}
}
