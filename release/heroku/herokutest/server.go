package herokutest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Endpoint names one endpoint the fake implements, for fault injection and
// request counts.
type Endpoint string

// The endpoints the fake implements: exactly those the heroku client calls, and
// the blob store's PUT.
const (
	EndpointAccount       Endpoint = "GET /account"
	EndpointAccountKeys   Endpoint = "GET /account/keys"
	EndpointApp           Endpoint = "GET /apps/{app}"
	EndpointConfigVars    Endpoint = "GET /apps/{app}/config-vars"
	EndpointBuildpacks    Endpoint = "GET /apps/{app}/buildpack-installations"
	EndpointCreateSlug    Endpoint = "POST /apps/{app}/slugs"
	EndpointCreateRelease Endpoint = "POST /apps/{app}/releases"
	EndpointBlob          Endpoint = "PUT /blobs/{slug}"
)

var apiEndpoints = []Endpoint{EndpointAccount, EndpointAccountKeys, EndpointApp, EndpointConfigVars,
	EndpointBuildpacks, EndpointCreateSlug, EndpointCreateRelease}

// The headers of SPEC G1.
const wantAccept = "application/vnd.heroku+json; version=3"

// Fault is an error answer to inject. Zero ID and Message take Heroku's usual
// ones for the status (401 → "unauthorized", 429 → "rate_limit", …).
type Fault struct {
	Status     int
	ID         string
	Message    string
	RetryAfter string // sent as Retry-After when set
	// Drop closes the connection without an answer, the way a client sees an
	// API that is down or a proxy that reset; Status and the rest are ignored.
	Drop bool
}

// Request is one request the fake received, as it arrived.
type Request struct {
	Endpoint   Endpoint // empty when it matched no implemented endpoint
	Method     string
	Path       string // escaped path, query left out
	Header     http.Header
	Body       []byte // API requests only; a blob's bytes are on its SlugRecord
	Status     int    // the answer's status; 0 when the fake dropped the connection or the client left
	Violations []string
}

// SlugRecord is a slug as the fake knows it.
type SlugRecord struct {
	ID, App                      string
	ProcessTypes                 map[string]string
	Commit, CommitDescription    string
	BuildpackProvidedDescription string
	Checksum                     string // as the client declared it
	Stack                        string // as the client named it (name or id)
	Uploaded                     bool
	Blob                         []byte   // the bytes of the last complete PUT
	BlobChecksum                 string   // SHA256:<hex> of Blob
	ContentType                  []string // Content-Type values of that PUT; nil when the header was absent
	CreatedAt                    time.Time
}

// ReleaseRecord is a release the fake created.
type ReleaseRecord struct {
	ID          string
	Version     int
	SlugID      string
	Description string
	User        string // the releasing account's email
	CreatedAt   time.Time
}

type account struct {
	id, email string
	created   time.Time
	keys      []*key
}

type key struct {
	id, fingerprint, publicKey, comment string
	blob                                []byte // the key's wire form, to match RemoveKey
	created                             time.Time
}

type app struct {
	id, name, webURL string
	owner            *account
	collaborators    map[*account]bool
	config           map[string]*string
	buildpacks       []string
	releases         []ReleaseRecord
	created          time.Time
}

// Server is the fake. Create it with New; seed it with the Add and Set methods.
type Server struct {
	// URL is the API's base URL (http://127.0.0.1:PORT), for heroku.Config.BaseURL.
	URL string

	t         testing.TB
	hs        *httptest.Server
	schema    *Schema
	done      chan struct{}
	closeOnce sync.Once

	mu         sync.Mutex
	accounts   map[string]*account // by email
	tokens     map[string]*account
	apps       map[string]*app // by name
	slugs      map[string]*SlugRecord
	secrets    map[string]string // slug id → the blob URL's signature
	requests   []Request
	violations []string
	faults     map[Endpoint][]Fault
	sticky     map[Endpoint]Fault
	halfway    int // blob PUTs still to break halfway; < 0: all of them
	delays     map[Endpoint]time.Duration
	rlLeft     int
	rlRefill   time.Duration
	rlEmptyAt  map[string]time.Time // token → when an answer last said the bucket was empty
}

// New starts a fake on 127.0.0.1 with the embedded schema. It is closed when t
// ends, and t fails then if violations remain that the test did not take with
// TakeViolations.
func New(t testing.TB) *Server {
	t.Helper()
	sch, err := LoadSchema(nil)
	if err != nil {
		t.Fatalf("herokutest: %v", err)
	}
	s := &Server{
		t:         t,
		schema:    sch,
		done:      make(chan struct{}),
		accounts:  map[string]*account{},
		tokens:    map[string]*account{},
		apps:      map[string]*app{},
		slugs:     map[string]*SlugRecord{},
		secrets:   map[string]string{},
		faults:    map[Endpoint][]Fault{},
		sticky:    map[Endpoint]Fault{},
		delays:    map[Endpoint]time.Duration{},
		rlLeft:    4500,
		rlEmptyAt: map[string]time.Time{},
	}
	s.hs = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.hs.URL
	t.Cleanup(func() {
		s.Close()
		for _, v := range s.Violations() {
			t.Errorf("herokutest: request violated the API contract: %s", v)
		}
	})
	return s
}

// Close stops the server; a delayed answer in flight is abandoned.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.hs.CloseClientConnections()
		s.hs.Close()
	})
}

// Violations returns every contract violation seen so far, oldest first.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations)
}

// TakeViolations returns the violations seen so far and forgets them, for a test
// that provokes them on purpose.
func (s *Server) TakeViolations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.violations
	s.violations = nil
	return v
}

// AssertClean fails t for every violation seen so far.
func (s *Server) AssertClean(t testing.TB) {
	t.Helper()
	for _, v := range s.Violations() {
		t.Errorf("herokutest: request violated the API contract: %s", v)
	}
}

// Requests returns every request received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		r.Header = r.Header.Clone()
		r.Body = slices.Clone(r.Body)
		r.Violations = slices.Clone(r.Violations)
		out[i] = r
	}
	return out
}

// Count returns how many requests reached ep, whatever their answer.
func (s *Server) Count(ep Endpoint) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Endpoint == ep {
			n++
		}
	}
	return n
}

// FailNext makes the next n requests to ep fail with f (after validation, before
// authentication). n < 0 fails every request until ClearFaults.
func (s *Server) FailNext(ep Endpoint, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f = f.withDefaults()
	if n < 0 {
		s.sticky[ep] = f
		return
	}
	for range n {
		s.faults[ep] = append(s.faults[ep], f)
	}
}

// FailBlobHalfway makes the next n blob PUTs break: the fake reads half the body,
// then drops the connection. n < 0 breaks every one until ClearFaults.
func (s *Server) FailBlobHalfway(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.halfway = n
}

// ClearFaults removes every injected fault and delay.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[Endpoint][]Fault{}
	s.sticky = map[Endpoint]Fault{}
	s.delays = map[Endpoint]time.Duration{}
	s.halfway = 0
}

// SetDelay holds every answer of ep for d (0 removes the delay), as a slow API
// would. A client that gives up is not waited for.
func (s *Server) SetDelay(ep Endpoint, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays[ep] = d
}

// SetRateLimit makes every API answer carry RateLimit-Remaining: remaining
// (4500 by default; < 0 omits the header). With remaining 0 and refill > 0, a
// request that arrives less than refill after an answer told its token the bucket
// was empty is refused with 429, as Heroku refuses requests it has no tokens for.
func (s *Server) SetRateLimit(remaining int, refill time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rlLeft, s.rlRefill = remaining, refill
	s.rlEmptyAt = map[string]time.Time{}
}

func (f Fault) withDefaults() Fault {
	if f.Status == 0 {
		f.Status = http.StatusServiceUnavailable
	}
	id, msg := "error", http.StatusText(f.Status)
	switch f.Status {
	case http.StatusUnauthorized:
		id, msg = "unauthorized", "Invalid credentials provided."
	case http.StatusForbidden:
		id, msg = "forbidden", "You do not have access to this resource."
	case http.StatusNotFound:
		id, msg = "not_found", "Couldn't find that resource."
	case http.StatusTooManyRequests:
		id, msg = "rate_limit", "Your account reached the API rate limit. Please wait a few minutes before making new requests."
	case http.StatusInternalServerError:
		id, msg = "internal_server_error", "Internal server error."
	case http.StatusServiceUnavailable:
		id, msg = "service_unavailable", "The Heroku API is temporarily unavailable."
	}
	if f.ID == "" {
		f.ID = id
	}
	if f.Message == "" {
		f.Message = msg
	}
	return f
}

// takeFault pops the next fault for ep, if any. Called with s.mu held.
func (s *Server) takeFault(ep Endpoint) (Fault, bool) {
	if q := s.faults[ep]; len(q) > 0 {
		s.faults[ep] = q[1:]
		return q[0], true
	}
	f, ok := s.sticky[ep]
	return f, ok
}

var placeholderRE = regexp.MustCompile(`\{[^/]*\}`)

// endpointFor maps a schema link (method + href) to the endpoint the fake serves.
func endpointFor(method, href string) Endpoint {
	if href == "" {
		return ""
	}
	got := method + " " + placeholderRE.ReplaceAllString(href, "{}")
	for _, ep := range apiEndpoints {
		if placeholderRE.ReplaceAllString(string(ep), "{}") == got {
			return ep
		}
	}
	return ""
}

// checkHeaders enforces SPEC G1 on an API request.
func checkHeaders(r *http.Request, body []byte) []string {
	var v []string
	if got := r.Header.Get("Accept"); got != wantAccept {
		v = append(v, fmt.Sprintf("Accept is %q, want %q", got, wantAccept))
	}
	auth := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(auth, "Bearer "); !ok || strings.TrimSpace(tok) == "" {
		v = append(v, "Authorization is not \"Bearer TOKEN\"")
	}
	switch ua := r.Header.Get("User-Agent"); {
	case ua == "":
		v = append(v, "User-Agent missing")
	case strings.HasPrefix(ua, "Go-http-client/"):
		v = append(v, fmt.Sprintf("User-Agent is Go's default %q", ua))
	}
	if r.Header.Get("Request-Id") == "" {
		v = append(v, "Request-Id missing")
	}
	if len(body) > 0 {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			v = append(v, fmt.Sprintf("body sent with Content-Type %q, want application/json", ct))
		}
	}
	return v
}

// arrive logs a request as soon as the fake knows its endpoint, so Count sees a
// request that is still being held; finish stores how it ended.
func (s *Server) arrive(r Request) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
	return len(s.requests) - 1
}

func (s *Server) finish(i int, r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[i] = r
	s.violations = append(s.violations, r.Violations...)
}

func (s *Server) record(r Request) { s.finish(s.arrive(r), r) }

// serveHTTP is the API: validate, delay, rate-limit, inject faults, authenticate,
// answer.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/blobs/") {
		s.serveBlob(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := Request{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body}
	if err != nil {
		s.record(rec) // the client went away mid-body
		return
	}
	rec.Violations = checkHeaders(r, body)
	href, bad := s.schema.Check(r.Method, r.URL.EscapedPath(), body)
	rec.Violations = append(rec.Violations, bad...)
	rec.Endpoint = endpointFor(r.Method, href)
	if len(rec.Violations) > 0 {
		rec.Status = http.StatusBadRequest
		s.record(rec)
		writeJSON(w, r, rec.Status, apiError{"bad_request", "herokutest: " + strings.Join(rec.Violations, "; ")}, -1)
		return
	}
	if rec.Endpoint == "" {
		rec.Status = http.StatusNotFound
		rec.Violations = []string{fmt.Sprintf("%s %s is in the schema but herokutest does not implement it", r.Method, rec.Path)}
		s.record(rec)
		writeJSON(w, r, rec.Status, apiError{"not_found", "herokutest: not implemented"}, -1)
		return
	}
	token := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))

	idx := s.arrive(rec)
	if !s.hold(r, rec.Endpoint) {
		s.finish(idx, rec)
		return
	}
	s.mu.Lock()
	left, refill := s.rlLeft, s.rlRefill
	emptyAt, wasEmpty := s.rlEmptyAt[token]
	fault, faulted := s.takeFault(rec.Endpoint)
	s.mu.Unlock()

	if faulted && fault.Drop {
		s.finish(idx, rec) // Status 0: the connection was dropped
		dropConn(w)
		return
	}
	var status int
	var answer any
	switch {
	case left == 0 && refill > 0 && wasEmpty && time.Since(emptyAt) < refill:
		f := Fault{Status: http.StatusTooManyRequests}.withDefaults()
		status, answer = f.Status, apiError{f.ID, f.Message}
	case faulted:
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		status, answer = fault.Status, apiError{fault.ID, fault.Message}
	default:
		status, answer = s.answer(rec.Endpoint, r, token, body)
	}
	rec.Status = status
	data, err := json.Marshal(answer)
	if err != nil {
		rec.Violations = append(rec.Violations, "herokutest: encode answer: "+err.Error())
		s.finish(idx, rec)
		return
	}
	if status/100 == 2 {
		for _, v := range s.schema.CheckAnswer(r.Method, href, data) {
			rec.Violations = append(rec.Violations, "herokutest's own answer breaks the schema (a bug in the fake): "+v)
		}
	}
	s.mu.Lock()
	if left == 0 && token != "" {
		s.rlEmptyAt[token] = time.Now()
	}
	s.mu.Unlock()
	s.finish(idx, rec)
	writeRaw(w, r, status, data, left)
}

// dropConn closes the request's connection without an answer.
func dropConn(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
	}
}

// hold waits out ep's delay; false when the client or the server went away.
func (s *Server) hold(r *http.Request, ep Endpoint) bool {
	s.mu.Lock()
	d := s.delays[ep]
	s.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.done:
	}
	return false
}

type apiError struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any, rateLeft int) {
	data, _ := json.Marshal(v)
	writeRaw(w, r, status, data, rateLeft)
}

func writeRaw(w http.ResponseWriter, r *http.Request, status int, data []byte, rateLeft int) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if id := r.Header.Get("Request-Id"); id != "" {
		h.Set("Request-Id", id)
	}
	if rateLeft >= 0 {
		h.Set("RateLimit-Remaining", fmt.Sprint(rateLeft))
	}
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// newID returns a random version-4 UUID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
