package heroku_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/release"
	"github.com/sokoban-deploy/sokoban/release/heroku"
	"github.com/sokoban-deploy/sokoban/release/heroku/herokutest"
	"github.com/sokoban-deploy/sokoban/stow"
)

// clock is a settable time source for the key cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const ttl = 5 * time.Minute

// modeFixture is Heroku mode over the fake API and a local stow.
type modeFixture struct {
	*fixture
	stow   *stow.Local
	store  *keys.Store
	links  *keys.HerokuLinks
	mode   *heroku.Mode
	linker *heroku.Linker
	clock  *clock
}

// fastRetries keeps a test that injects a lasting fault from waiting out the
// default retry budget.
func fastRetries(c *heroku.Config) { c.RetryBudget = 200 * time.Millisecond }

func newModeFixture(t *testing.T, tweak func(*heroku.Config)) *modeFixture {
	t.Helper()
	f := newFixture(t, tweak)
	st, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := &modeFixture{fixture: f, stow: st, store: keys.NewStore(st, 0), links: keys.NewHerokuLinks(st),
		clock: &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	m.mode, err = heroku.NewMode(heroku.ModeConfig{Client: f.c, Keys: m.store, Links: m.links, Slugs: st, KeyTTL: ttl, Now: m.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	m.linker = heroku.NewLinker(f.c, m.store, m.links)
	return m
}

// link registers a fresh key on dev@example.com's Heroku account and links it.
func (m *modeFixture) link(t *testing.T) (keys.Key, string) {
	t.Helper()
	_, line := newKey(t)
	m.srv.AddKey(token, line)
	k, err := m.linker.LinkKey(context.Background(), token, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return k, line
}

func refusal(t *testing.T, err error) string {
	t.Helper()
	var r *keys.RefusedError
	if !errors.As(err, &r) {
		t.Fatalf("want a *keys.RefusedError, got %v", err)
	}
	noToken(t, err)
	return r.UserMessage()
}

// SPEC G6: linking proves the key is on the token's account; the account's
// email becomes the user and the token is stored for it.
func TestLinkKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModeFixture(t, nil)
	k, line := m.link(t)
	if k.User != "dev@example.com" || k.Role != keys.RoleUser || k.Comment != "dev@laptop" {
		t.Fatalf("linked key = %+v", k)
	}
	pk, _, err := keys.ParsePublicKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.store.Lookup(ctx, pk); err != nil || got.User != "dev@example.com" {
		t.Fatalf("key store after linking: %+v, %v", got, err)
	}
	l, err := m.links.Get(ctx, "dev@example.com")
	if err != nil || l.Token != token || l.AccountID == "" {
		t.Fatalf("link = %v, %v", l, err)
	}

	// Linking the same key again with another token of the account replaces the token.
	m.srv.AddAccount("dev@example.com", "second-token")
	if _, err := m.linker.LinkKey(ctx, "second-token\n", []byte(line)); err != nil {
		t.Fatal(err)
	}
	if l, _ := m.links.Get(ctx, "dev@example.com"); l.Token != "second-token" {
		t.Fatal("re-linking kept the old token")
	}
	m.srv.AssertClean(t)
}

func TestLinkKeyRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModeFixture(t, nil)
	m.srv.AddAccount("other@example.com", "other-token")

	// A key that is on another account.
	_, line := newKey(t)
	m.srv.AddKey("other-token", line)
	_, err := m.linker.LinkKey(ctx, token, []byte(line))
	if msg := heroku.UserMessage(err); !strings.Contains(msg, "is not registered on the Heroku account dev@example.com") {
		t.Fatalf("key of another account: %v", err)
	}
	// A rejected token.
	m.srv.RevokeToken("other-token")
	_, err = m.linker.LinkKey(ctx, "other-token", []byte(line))
	if msg := heroku.UserMessage(err); !strings.Contains(msg, "Heroku rejected the token") || strings.Contains(msg, "other-token") {
		t.Fatalf("revoked token: %v", err)
	}
	// A key registered here to someone else.
	pk, _, _ := keys.ParsePublicKey([]byte(line))
	if _, err := m.store.Add(ctx, "mallory", keys.RoleUser, pk, ""); err != nil {
		t.Fatal(err)
	}
	m.srv.AddKey(token, line)
	_, err = m.linker.LinkKey(ctx, token, []byte(line))
	if msg := heroku.UserMessage(err); !strings.Contains(msg, "already registered to mallory") {
		t.Fatalf("key of another user: %v", err)
	}
	// Nothing linked on any refusal.
	if _, err := m.links.Get(ctx, "dev@example.com"); !errors.Is(err, keys.ErrNotLinked) {
		t.Fatalf("a refused link stored a token: %v", err)
	}
	for _, bad := range []string{"", "two words"} {
		if _, err := m.linker.LinkKey(ctx, bad, []byte(line)); err == nil {
			t.Errorf("token %q accepted", bad)
		}
	}
	if _, err := m.linker.LinkKey(ctx, token, []byte("not a key")); err == nil {
		t.Error("a malformed key was linked")
	}
	noToken(t, err)
	m.srv.AssertClean(t)
}

func TestParseLinkInput(t *testing.T) {
	t.Parallel()
	tok, key, err := heroku.ParseLinkInput(strings.NewReader("\n  HRKU-abc  \nssh-ed25519 AAAA x@y\n"))
	if err != nil || tok != "HRKU-abc" || string(bytes.TrimSpace(key)) != "ssh-ed25519 AAAA x@y" {
		t.Fatalf("got %q %q %v", tok, key, err)
	}
	for _, in := range []string{"", "HRKU-abc\n", "\n\n"} {
		if _, _, err := heroku.ParseLinkInput(strings.NewReader(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// SPEC G6: the link is re-verified against GET /account/keys at most once per
// TTL; a key removed from the account stops working when the TTL ends.
func TestKeysReverifiedAfterTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModeFixture(t, nil)
	k, line := m.link(t)
	pk := k.PublicKey
	calls := m.srv.Count(herokutest.EndpointAccountKeys)
	for range 3 {
		if got, err := m.mode.Keys.Lookup(ctx, pk); err != nil || got.Fingerprint != k.Fingerprint {
			t.Fatalf("Lookup = %+v, %v", got, err)
		}
	}
	if n := m.srv.Count(herokutest.EndpointAccountKeys) - calls; n != 1 {
		t.Fatalf("three lookups within the TTL asked Heroku %d times, want 1", n)
	}
	m.srv.RemoveKey(token, line)
	if _, err := m.mode.Keys.Lookup(ctx, pk); err != nil {
		t.Fatalf("within the TTL the cached link holds: %v", err)
	}
	m.clock.Add(ttl)
	_, err := m.mode.Keys.Lookup(ctx, pk)
	if msg := refusal(t, err); !strings.Contains(msg, "no longer registered on the Heroku account dev@example.com") {
		t.Fatalf("removed key: %q", msg)
	}
	m.srv.AssertClean(t)
}

// SPEC G6, F1: a revoked token stops every key linked through it.
func TestKeysRevokedToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModeFixture(t, nil)
	k, _ := m.link(t)
	if _, err := m.mode.Keys.Lookup(ctx, k.PublicKey); err != nil {
		t.Fatal(err)
	}
	m.srv.RevokeToken(token)
	m.clock.Add(ttl)
	_, err := m.mode.Keys.Lookup(ctx, k.PublicKey)
	if msg := refusal(t, err); !strings.Contains(msg, "Heroku rejected the token linked to dev@example.com") {
		t.Fatalf("revoked token: %q", msg)
	}
}

// A 401 during a push is remembered, so the next connection is refused with
// the reason at once rather than after the TTL.
func TestKeysLearnOfRejectedTokenDuringPush(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModeFixture(t, nil)
	k, _ := m.link(t)
	if _, err := m.mode.Keys.Lookup(ctx, k.PublicKey); err != nil {
		t.Fatal(err)
	}
	m.srv.RevokeToken(token)
	u := keys.User{Name: k.User, Role: k.Role, Fingerprint: k.Fingerprint}
	if _, err := m.mode.Access.Level(ctx, u, "my-app"); err == nil {
		t.Fatal("Level with a revoked token succeeded")
	}
	_, err := m.mode.Keys.Lookup(ctx, k.PublicKey)
	if msg := refusal(t, err); !strings.Contains(msg, "rejected the token") {
		t.Fatalf("after a 401: %q", msg)
	}
}

func TestKeysUnlinkedAndUnreachable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModeFixture(t, fastRetries)
	user, admin := newKeyPK(t), newKeyPK(t)
	if _, err := m.store.Add(ctx, "plain", keys.RoleUser, user, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.store.Add(ctx, "operator", keys.RoleAdmin, admin, ""); err != nil {
		t.Fatal(err)
	}
	_, err := m.mode.Keys.Lookup(ctx, user)
	if msg := refusal(t, err); !strings.Contains(msg, "not linked to a Heroku account") {
		t.Fatalf("unlinked user key: %q", msg)
	}
	if k, err := m.mode.Keys.Lookup(ctx, admin); err != nil || k.User != "operator" {
		t.Fatalf("an operator's admin key: %+v, %v", k, err)
	}
	if _, err := m.mode.Keys.Lookup(ctx, newKeyPK(t)); !errors.Is(err, keys.ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}

	// Heroku unreachable: refused with the reason, and tried again soon after.
	k, _ := m.link(t)
	m.srv.FailNext(herokutest.EndpointAccountKeys, -1, herokutest.Fault{Status: 503})
	_, err = m.mode.Keys.Lookup(ctx, k.PublicKey)
	if msg := refusal(t, err); !strings.Contains(msg, "could not be verified with Heroku (The Heroku API is temporarily unavailable.)") {
		t.Fatalf("API down: %q", msg)
	}
	m.srv.ClearFaults()
	m.clock.Add(3 * time.Second)
	if _, err := m.mode.Keys.Lookup(ctx, k.PublicKey); err != nil {
		t.Fatalf("after the API recovered: %v", err)
	}
}

func newKeyPK(t *testing.T) ssh.PublicKey {
	t.Helper()
	pk, _ := newKey(t)
	return pk
}

// SPEC G5: GET /apps/{app} with the user's token decides; 403 and 404 are the
// same "no such app or no access".
func TestAccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModeFixture(t, fastRetries)
	k, _ := m.link(t)
	u := keys.User{Name: k.User, Role: k.Role, Fingerprint: k.Fingerprint}
	m.srv.AddAccount("other@example.com", "other-token")
	m.srv.AddApp("their-app", "other-token")
	m.srv.AddApp("shared-app", "other-token")
	m.srv.AddCollaborator("shared-app", token)
	a := m.mode.Access
	for app, want := range map[string]keys.Level{
		"my-app": keys.Owner, "shared-app": keys.Collaborator, "their-app": keys.NoAccess, "no-such-app": keys.NoAccess,
	} {
		if got, err := a.Level(ctx, u, app); err != nil || got != want {
			t.Errorf("Level(%s) = %v, %v; want %v", app, got, err, want)
		}
	}
	if got := keys.NoAccessMessage(a, "their-app"); got != "no such app or no access" {
		t.Errorf("refusal text %q", got)
	}
	if ok, err := a.MayCreate(ctx, u, "new-app"); ok || err != nil {
		t.Errorf("MayCreate = %v, %v; apps are created on Heroku", ok, err)
	}
	if got, _ := a.Level(ctx, keys.User{Name: "nobody", Role: keys.RoleUser}, "my-app"); got != keys.NoAccess {
		t.Errorf("an unlinked user has %v", got)
	}
	if got, _ := a.Level(ctx, keys.User{Name: "operator", Role: keys.RoleAdmin}, "my-app"); got != keys.Admin {
		t.Errorf("an operator has %v", got)
	}
	m.srv.FailNext(herokutest.EndpointApp, -1, herokutest.Fault{Status: 500})
	if _, err := a.Level(ctx, u, "my-app"); err == nil {
		t.Error("a 500 was taken as an answer")
	}
	m.srv.AssertClean(t)
}

// SPEC G7: config vars and buildpack installations, read with the pusher's token.
func TestSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModeFixture(t, fastRetries)
	k, _ := m.link(t)
	m.srv.SetConfig("my-app", map[string]string{"GREETING": "hello", "EMPTY": ""})
	m.srv.SetNullConfig("my-app", "GONE")
	m.srv.SetBuildpacks("my-app", "heroku/python", "https://example.com/bp.git")
	s, err := m.mode.Settings.BuildSettings(ctx, k.User, "my-app")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Config) != 2 || s.Config["GREETING"] != "hello" || s.Config["EMPTY"] != "" {
		t.Errorf("config = %v", s.Config)
	}
	if strings.Join(s.Buildpacks, " ") != "heroku/python https://example.com/bp.git" {
		t.Errorf("buildpacks = %v", s.Buildpacks)
	}
	_, err = m.mode.Settings.BuildSettings(ctx, "nobody", "my-app")
	if msg := heroku.UserMessage(err); !strings.Contains(msg, "no Heroku account is linked to nobody") {
		t.Errorf("unlinked user: %v", err)
	}
	m.srv.FailNext(herokutest.EndpointConfigVars, -1, herokutest.Fault{Status: 401})
	_, err = m.mode.Settings.BuildSettings(ctx, k.User, "my-app")
	if msg := heroku.UserMessage(err); !strings.Contains(msg, "Invalid credentials provided.") {
		t.Errorf("401: %v", err)
	}
	m.srv.AssertClean(t)
}

// stowSlug puts a slug into the fixture's stow and returns the release request
// the receiver would make for it.
func (m *modeFixture) stowSlug(t *testing.T, user string) (release.Request, []byte) {
	t.Helper()
	data := bytes.Repeat([]byte("slug bytes "), 50_000)
	key := "apps/my-app/slugs/b1.tgz"
	if _, err := stow.PutBytes(context.Background(), m.stow, key, data); err != nil {
		t.Fatal(err)
	}
	return release.Request{
		BuildID: "b1", Slug: key, SlugSize: int64(len(data)), Checksum: checksum(data),
		Commit: "60883d9e8947a57e04dc9124f25df004866a2051", ProcessTypes: map[string]string{"web": "./server"},
		Stack: "heroku-24", User: user, Description: "Deploy 60883d9", BuildpackDescription: "Python",
	}, data
}

// SPEC G4: slug → blob PUT streamed from stow with an empty Content-Type →
// release; the version and the app's web URL come back.
func TestReleaserCreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newModeFixture(t, nil)
	k, _ := m.link(t)
	req, data := m.stowSlug(t, k.User)
	rel, err := m.mode.Releaser.Create(ctx, "my-app", req)
	if err != nil {
		t.Fatal(err)
	}
	got := m.srv.Releases("my-app")
	if rel.Version != 1 || len(got) != 1 || got[0].User != "dev@example.com" || got[0].Description != "Deploy 60883d9" {
		t.Fatalf("release %+v; fake has %+v", rel, got)
	}
	if !strings.HasPrefix(rel.URL, "https://my-app-") || !strings.HasSuffix(rel.URL, ".herokuapp.com/") {
		t.Errorf("URL = %q", rel.URL)
	}
	sl, ok := m.srv.Slug(got[0].SlugID)
	if !ok || !bytes.Equal(sl.Blob, data) || sl.Checksum != req.Checksum || sl.BlobChecksum != req.Checksum {
		t.Fatalf("slug as uploaded: ok=%v checksum %s / %s", ok, sl.Checksum, sl.BlobChecksum)
	}
	if len(sl.ContentType) != 1 || sl.ContentType[0] != "" {
		t.Errorf("blob Content-Type = %q, want one empty value", sl.ContentType)
	}
	if sl.Commit != req.Commit || sl.Stack != "heroku-24" || sl.ProcessTypes["web"] != "./server" ||
		sl.BuildpackProvidedDescription != "Python" || sl.CommitDescription != "Deploy 60883d9" {
		t.Errorf("slug = %+v", sl)
	}
	m.srv.AssertClean(t)
}

// SPEC F2, F12: every fault ends in an error that carries the API's message,
// and no release is created.
func TestReleaserFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		inject func(*herokutest.Server)
		want   string
	}{
		{"5xx", func(s *herokutest.Server) {
			s.FailNext(herokutest.EndpointCreateSlug, -1, herokutest.Fault{Status: 503})
		}, "The Heroku API is temporarily unavailable."},
		{"429 storm", func(s *herokutest.Server) {
			s.FailNext(herokutest.EndpointCreateRelease, -1, herokutest.Fault{Status: 429})
		}, "reached the API rate limit"},
		{"expired token", func(s *herokutest.Server) {
			s.FailNext(herokutest.EndpointCreateSlug, -1, herokutest.Fault{Status: 401})
		}, "Invalid credentials provided. (Heroku rejected the linked token"},
		{"down", func(s *herokutest.Server) {
			s.FailNext(herokutest.EndpointCreateRelease, -1, herokutest.Fault{Drop: true})
		}, "Heroku API unreachable"},
		{"slow", func(s *herokutest.Server) {
			s.SetDelay(herokutest.EndpointCreateRelease, time.Minute)
		}, "Heroku API did not answer in time"},
		{"blob halfway", func(s *herokutest.Server) { s.FailBlobHalfway(-1) }, "slug upload to Heroku failed: connection broken"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			m := newModeFixture(t, func(c *heroku.Config) {
				c.CallTimeout, c.UploadTimeout, c.RetryBudget = 200*time.Millisecond, 2*time.Second, 300*time.Millisecond
			})
			k, _ := m.link(t)
			req, _ := m.stowSlug(t, k.User)
			if _, err := m.mode.Releaser.Create(ctx, "my-app", req); err != nil {
				t.Fatal(err)
			}
			tc.inject(m.srv)
			_, err := m.mode.Releaser.Create(ctx, "my-app", req)
			noToken(t, err)
			var ue *heroku.UserError
			if !errors.As(err, &ue) || !strings.Contains(ue.UserMessage(), tc.want) {
				t.Fatalf("error %v; want a UserError saying %q", err, tc.want)
			}
			if n := len(m.srv.Releases("my-app")); n != 1 {
				t.Fatalf("%d releases after a failed one, want 1", n)
			}
			m.srv.ClearFaults()
			if rel, err := m.mode.Releaser.Create(ctx, "my-app", req); err != nil || rel.Version != 2 {
				t.Fatalf("after the fault cleared: %+v, %v", rel, err)
			}
			m.srv.AssertClean(t)
		})
	}
}
