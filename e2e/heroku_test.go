package e2e

import (
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sokoban-deploy/sokoban/release/heroku/herokutest"
)

// herokuFlags point a server at a fake Platform API with short limits, so a
// lasting fault ends a push in seconds.
func herokuFlags(api string) []string {
	return []string{
		"--release", "heroku", "--heroku-api", api, "--heroku-key-ttl", "1s",
		"--heroku-timeout", "2s", "--heroku-retry-budget", "2s",
	}
}

// startHeroku runs a fake Platform API in the test and `sokoban serve` in
// Heroku mode against it (loopback HTTP).
func startHeroku(t *testing.T, extra ...string) (*server, *herokutest.Server) {
	t.Helper()
	api := herokutest.New(t)
	return startServer(t, append(herokuFlags(api.URL), extra...)...), api
}

// herokuUser is a key pair linked to a Heroku account.
type herokuUser struct {
	*user
	token string
	pub   string // the authorized_keys line
}

// linkHeroku creates a Heroku account with a fresh key registered on it and
// links that key with `sokoban keys add --heroku-token-file`.
func (s *server) linkHeroku(api *herokutest.Server, email, token string) *herokuUser {
	s.t.Helper()
	api.AddAccount(email, token)
	u := s.newKey(email)
	pub, err := os.ReadFile(u.key + ".pub")
	if err != nil {
		s.t.Fatal(err)
	}
	api.AddKey(token, string(pub))
	tokenFile := filepath.Join(s.dir, "keys", strings.NewReplacer("@", "_", ".", "_").Replace(email)+".token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	out := s.sokoban("keys", "add", "--data", s.data, "--heroku-api", api.URL, "--heroku-token-file", tokenFile, u.key+".pub")
	if !strings.Contains(out, "to the Heroku account "+email) || strings.Contains(out, token) {
		s.t.Fatalf("keys add --heroku-token-file printed:\n%s", out)
	}
	waitFor(s.t, email+"'s linked key to be live", func() bool {
		return s.ssh(u, "whoami").Run() == nil
	})
	return &herokuUser{user: u, token: token, pub: string(pub)}
}

// gitHTTP serves the repositories under root over smart HTTP on loopback, so a
// Heroku app's buildpack installations can name a remote buildpack.
func gitHTTP(t *testing.T, root string) string {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is required: apt-get install git")
	}
	srv := httptest.NewServer(&cgi.Handler{
		Path: git, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	})
	t.Cleanup(srv.Close)
	return srv.URL
}

// remoteBuildpack publishes a buildpack as a git repository over HTTP and
// returns its URL.
func remoteBuildpack(t *testing.T, name, detect, compile string) string {
	t.Helper()
	dir := buildpack(t, name, detect, compile, "")
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-qm", "bp"}} {
		run(t, dir, nil, "git", args...)
	}
	return gitHTTP(t, filepath.Dir(dir)) + "/" + name
}

// push pushes dir's main to app as u.
func (s *server) push(u *user, dir, app string) result {
	s.t.Helper()
	return runResult(s.t, s.git(u, dir, "push", s.remote(app), "main"))
}

// SPEC G4, G6, G7: in Heroku mode a linked key pushes an app its account owns;
// config vars reach ENV_DIR, the app's buildpack installations choose the
// buildpack over the server's defaults, and the slug is released through the
// Platform API, which saw only requests its schema allows.
func TestHerokuModePushReleases(t *testing.T) {
	t.Parallel()
	def := buildpack(t, "default", "echo Default", `echo "DEFAULT BUILDPACK RAN"`, "")
	srv, api := startHeroku(t, "--buildpacks", def, "--user-fetch-allow", "127.0.0.0/8")
	const token = "HRKU-e2e-a1b2c3-secret"
	alice := srv.linkHeroku(api, "alice@example.com", token)

	bp := remoteBuildpack(t, "envbp", "echo EnvReader", `echo "greeting from heroku: $(cat "$3/GREETING")"`)
	api.AddApp("heroku-app", token)
	api.SetConfig("heroku-app", map[string]string{"GREETING": "hello from the config vars"})
	api.SetBuildpacks("heroku-app", bp)

	app := newApp(t, map[string]string{"Procfile": "web: ./server\n", "server": "#!/bin/sh\n"})
	res := srv.push(alice.user, app, "heroku-app")
	if res.code != 0 {
		t.Fatalf("push:\n%s", res)
	}
	for _, want := range []string{
		"Using buildpack: " + bp, "greeting from heroku: hello from the config vars", "Released v1",
	} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("push output lacks %q:\n%s", want, res.stderr)
		}
	}
	if !regexp.MustCompile(`remote:\s+https://heroku-app-[0-9a-f]{12}\.herokuapp\.com/ deployed to Heroku`).MatchString(res.stderr) {
		t.Errorf("push output lacks the app's web URL:\n%s", res.stderr)
	}
	if strings.Contains(res.stderr, "DEFAULT BUILDPACK RAN") {
		t.Errorf("the server's default buildpack ran despite the app's buildpack installations:\n%s", res.stderr)
	}

	rels := api.Releases("heroku-app")
	if len(rels) != 1 || rels[0].User != "alice@example.com" {
		t.Fatalf("Heroku's releases: %+v", rels)
	}
	slug, ok := api.Slug(rels[0].SlugID)
	if !ok || !slug.Uploaded || slug.Checksum != slug.BlobChecksum || slug.ProcessTypes["web"] != "./server" ||
		slug.BuildpackProvidedDescription != "EnvReader" || len(slug.Commit) != 40 {
		t.Fatalf("released slug: %+v", slug)
	}
	if len(slug.ContentType) != 1 || slug.ContentType[0] != "" {
		t.Errorf("slug PUT Content-Type %q, want empty", slug.ContentType)
	}

	// The token is stored privately and shown nowhere.
	links, err := filepath.Glob(filepath.Join(srv.data, "store", "keys", "heroku", "*.json"))
	if err != nil || len(links) != 1 {
		t.Fatalf("stored links: %v %v", links, err)
	}
	if fi, err := os.Stat(links[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("link file mode: %v %v", fi.Mode(), err)
	}
	if strings.Contains(srv.log.String(), token) || strings.Contains(res.stderr, token) {
		t.Error("the Heroku token appears in the server log or the push output")
	}
	api.AssertClean(t)
}

// SPEC G6, F1: a key removed from the Heroku account, or a token Heroku no
// longer accepts, stops working within the key TTL with a clear message; so
// does a key whose account cannot be checked, until Heroku answers again.
func TestHerokuModeKeyRevocation(t *testing.T) {
	t.Parallel()
	srv, api := startHeroku(t)
	bob := srv.linkHeroku(api, "bob@example.com", "HRKU-bob")
	carol := srv.linkHeroku(api, "carol@example.com", "HRKU-carol")
	dave := srv.linkHeroku(api, "dave@example.com", "HRKU-dave")
	api.AddApp("bobs-app", bob.token)

	refusedWith := func(u *herokuUser, msg string) func() bool {
		return func() bool {
			r := runResult(t, srv.ssh(u.user, "whoami"))
			return r.code != 0 && strings.Contains(r.stderr, "sokoban: "+msg)
		}
	}
	api.RemoveKey(bob.token, bob.pub)
	waitFor(t, "bob's removed key to be refused", refusedWith(bob,
		"your key SHA256:"))
	r := runResult(t, srv.ssh(bob.user, "whoami"))
	if !strings.Contains(r.stderr, "is no longer registered on the Heroku account bob@example.com") {
		t.Fatalf("removed key:\n%s", r)
	}
	push := srv.push(bob.user, newApp(t, map[string]string{"a": "b"}), "bobs-app")
	if push.code == 0 || !strings.Contains(push.stderr, "no longer registered on the Heroku account") {
		t.Fatalf("push with a removed key:\n%s", push)
	}

	api.RevokeToken(carol.token)
	waitFor(t, "carol's revoked token to stop her key", refusedWith(carol,
		"Heroku rejected the token linked to carol@example.com (expired or revoked)"))

	api.FailNext(herokutest.EndpointAccountKeys, -1, herokutest.Fault{Drop: true})
	waitFor(t, "an unverifiable key to be refused", refusedWith(dave,
		"your key could not be verified with Heroku (Heroku API unreachable); try again in a moment"))
	api.ClearFaults()
	waitFor(t, "dave's key to work again", func() bool { return srv.ssh(dave.user, "whoami").Run() == nil })
	if n := len(api.Releases("bobs-app")); n != 0 {
		t.Fatalf("%d releases", n)
	}
	api.AssertClean(t)
}

// SPEC G5: GET /apps/{app} with the pusher's token decides; an app of another
// account and an app that does not exist are refused alike.
func TestHerokuModeNoAccess(t *testing.T) {
	t.Parallel()
	srv, api := startHeroku(t, "--buildpacks", buildpack(t, "bp", "echo X", "true", ""))
	erin := srv.linkHeroku(api, "erin@example.com", "HRKU-erin")
	api.AddAccount("frank@example.com", "HRKU-frank")
	api.AddApp("franks-app", "HRKU-frank")
	app := newApp(t, map[string]string{"a": "b"})
	for _, name := range []string{"franks-app", "not-on-heroku"} {
		res := srv.push(erin.user, app, name)
		if res.code == 0 || !strings.Contains(res.stderr, "fatal: remote error: no such app or no access") {
			t.Errorf("push to %s:\n%s", name, res)
		}
	}
	if n := len(api.Releases("franks-app")); n != 0 {
		t.Fatalf("%d releases of franks-app", n)
	}
	api.AssertClean(t)
}

// SPEC F2, F12: whatever goes wrong with the release — API down, slow, 5xx, a
// 429 storm, an expired token, a slug upload that breaks halfway — the push is
// rejected with the API's message, Heroku's current release stays the previous
// one, and the lease is released: the next push goes through.
func TestHerokuModeReleaseFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		inject func(*herokutest.Server)
		want   string
	}{
		{"api-down", func(s *herokutest.Server) {
			s.FailNext(herokutest.EndpointCreateSlug, -1, herokutest.Fault{Drop: true})
		}, "Heroku API unreachable"},
		{"slow", func(s *herokutest.Server) {
			s.SetDelay(herokutest.EndpointCreateRelease, 20*time.Minute)
		}, "Heroku API did not answer in time"},
		{"5xx", func(s *herokutest.Server) {
			s.FailNext(herokutest.EndpointCreateSlug, -1, herokutest.Fault{Status: 503})
		}, "The Heroku API is temporarily unavailable."},
		{"429-storm", func(s *herokutest.Server) {
			s.FailNext(herokutest.EndpointCreateRelease, -1, herokutest.Fault{Status: 429, RetryAfter: "1"})
		}, "Your account reached the API rate limit."},
		{"expired-token", func(s *herokutest.Server) {
			s.FailNext(herokutest.EndpointCreateRelease, -1, herokutest.Fault{Status: 401})
		}, "Invalid credentials provided."},
		{"blob-halfway", func(s *herokutest.Server) { s.FailBlobHalfway(-1) }, "slug upload to Heroku failed: connection broken"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, api := startHeroku(t, "--buildpacks", buildpack(t, "bp", "echo Plain", "echo compiled", ""))
			gina := srv.linkHeroku(api, "gina@example.com", "HRKU-gina")
			api.AddApp("fault-app", gina.token)
			app := newApp(t, map[string]string{"a": "1"})
			if res := srv.push(gina.user, app, "fault-app"); res.code != 0 || !strings.Contains(res.stderr, "Released v1") {
				t.Fatalf("first push:\n%s", res)
			}
			commit(t, app, map[string]string{"a": "2"}, "second")

			tc.inject(api)
			res := srv.push(gina.user, app, "fault-app")
			if res.code == 0 || !strings.Contains(res.stderr, " !     Push rejected, the release failed: "+tc.want) {
				t.Fatalf("push during the fault:\n%s", res)
			}
			if !strings.Contains(res.stderr, "pre-receive hook declined") {
				t.Errorf("the ref moved despite the failed release:\n%s", res.stderr)
			}
			if rels := api.Releases("fault-app"); len(rels) != 1 || rels[0].Version != 1 {
				t.Fatalf("Heroku's releases after the failed push: %+v", rels)
			}

			api.ClearFaults()
			// A 401 also made the node distrust the token for up to the key TTL.
			waitFor(t, "gina's key to be accepted", func() bool { return srv.ssh(gina.user, "whoami").Run() == nil })
			res = srv.push(gina.user, app, "fault-app")
			if res.code != 0 || !strings.Contains(res.stderr, "Released v2") {
				t.Fatalf("push after the fault cleared:\n%s", res)
			}
			api.AssertClean(t)
		})
	}
}
