package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/sokoban-deploy/sokoban/cluster/clustertest"
	"github.com/sokoban-deploy/sokoban/internal/testkit"
	"github.com/sokoban-deploy/sokoban/stow"
)

// Issue 5: several identical nodes behind a load balancer, sharing a real
// redis-server and an S3-protocol server, are one service.

const (
	s3Bucket = "sokoban"
	s3Prefix = "cluster"
	// The nodes find these in their environment, as they would find an
	// instance role's: never on the command line.
	s3Key    = "AKIDCLUSTERTEST"
	s3Secret = "cluster-test-secret"
)

// s3Server is gofakes3 (in memory) over HTTP on 127.0.0.1, with a switch that
// makes chosen requests fail as an unwell S3 would.
type s3Server struct {
	url   string
	store *stow.S3 // the test's own view of the bucket, under the nodes' prefix

	mu   sync.Mutex
	fail func(r *http.Request) bool
}

func startS3(t *testing.T) *s3Server {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(s3Bucket); err != nil {
		t.Fatal(err)
	}
	faker := gofakes3.New(backend).Server()
	s := &s3Server{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		fail := s.fail != nil && s.fail(r)
		s.mu.Unlock()
		if fail {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>injected by the test</Message></Error>`))
			return
		}
		faker.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	st, err := stow.NewS3(context.Background(), stow.S3Config{
		Bucket: s3Bucket, Prefix: s3Prefix, Endpoint: srv.URL, Region: "us-east-1", PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s3Key, s3Secret, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.store = st
	return s
}

// failWrites makes PUTs and multipart uploads of keys under prefix (relative
// to the nodes' store) fail until the returned func is called.
func (s *s3Server) failWrites(prefix string) (heal func()) {
	path := "/" + s3Bucket + "/" + s3Prefix + "/" + prefix
	s.mu.Lock()
	s.fail = func(r *http.Request) bool {
		return (r.Method == http.MethodPut || r.Method == http.MethodPost) && strings.HasPrefix(r.URL.Path, path)
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.fail = nil
		s.mu.Unlock()
	}
}

func (s *s3Server) keys(t *testing.T, prefix string) []string {
	t.Helper()
	list, err := s.store.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, info := range list {
		out = append(out, info.Key)
	}
	return out
}

// stowedRepo is the part of apps/APP/repo.json the tests look at.
type stowedRepo struct {
	Generation int64 `json:"generation"`
	Bundles    []struct {
		Key string `json:"key"`
	} `json:"bundles"`
	Refs map[string]string `json:"refs"`
}

func (s *s3Server) repo(t *testing.T, app string) *stowedRepo {
	t.Helper()
	var m stowedRepo
	if _, err := stow.GetJSON(context.Background(), s.store, "apps/"+app+"/repo.json", &m); err != nil {
		t.Fatalf("read %s's stowed repository: %v", app, err)
	}
	return &m
}

// fleet is what the nodes share: the store, and optionally Redis.
type fleet struct {
	t  *testing.T
	s3 *s3Server
	// key, secret and bucket are the S3 server's (gofakes3's constants, or
	// SeaweedFS's).
	key, secret, bucket string
	// store replaces the S3 store's flags (a shared file:// store).
	store []string
	redis *clustertest.RedisServer // nil: each node coordinates in process
	keys  string                   // --data of `sokoban keys`
}

func newFleet(t *testing.T, withRedis bool) *fleet {
	t.Helper()
	f := &fleet{t: t, s3: startS3(t), keys: t.TempDir(), key: s3Key, secret: s3Secret, bucket: s3Bucket}
	if withRedis {
		f.redis = clustertest.StartRedis(t)
	}
	return f
}

// newSeaweedFleet is a fleet on SeaweedFS, a real S3 server that implements
// conditional writes, for the stories that depend on them. It has no fault injection.
func newSeaweedFleet(t *testing.T, withRedis bool) *fleet {
	t.Helper()
	srv := testkit.StartSeaweedFS(t)
	st, err := stow.NewS3(context.Background(), stow.S3Config{
		Bucket: srv.Bucket, Prefix: s3Prefix, Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, s3: &s3Server{url: srv.Endpoint, store: st}, keys: t.TempDir(),
		key: srv.AccessKey, secret: srv.SecretKey, bucket: srv.Bucket}
	if withRedis {
		f.redis = clustertest.StartRedis(t)
	}
	return f
}

// env is what a node's environment adds to PATH and HOME: the S3 credentials.
func (f *fleet) env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + f.key, "AWS_SECRET_ACCESS_KEY=" + f.secret, "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

func (f *fleet) storeArgs() []string {
	if f.store != nil {
		return f.store
	}
	return []string{"--store", "s3://" + f.bucket + "/" + s3Prefix, "--s3-endpoint", f.s3.url, "--s3-path-style"}
}

// node starts `sokoban serve` as one identical node of the fleet.
func (f *fleet) node(name string, extra ...string) *server {
	f.t.Helper()
	args := append([]string{"--node", name, "--host-keys-from-store"}, f.storeArgs()...)
	if f.redis != nil {
		args = append(args, "--redis", f.redis.URL, "--lease-ttl", fleetLeaseTTL.String())
	}
	args = append(args, sandboxNone(f.t)...)
	return startFleetNode(f.t, f.env(), append(args, extra...)...)
}

// addUser registers a key in the shared store with `sokoban keys add` and
// waits until every node lets it in.
func (f *fleet) addUser(nodes []*server, name string, admin bool) *user {
	f.t.Helper()
	u := nodes[0].newKey(name)
	args := append([]string{"keys", "add", "--data", f.keys}, f.storeArgs()...)
	if admin {
		args = append(args, "--admin")
	}
	run(f.t, "", f.env(), sokobanBin, append(args, name, u.key+".pub")...)
	for _, n := range nodes {
		waitFor(f.t, name+"'s key to be live on "+n.data, func() bool { return n.ssh(u, "whoami").Run() == nil })
	}
	return u
}

// startFleetNode is startServer with more environment for the server: the
// harness's server starts from PATH and HOME only.
func startFleetNode(t *testing.T, env []string, extra ...string) *server {
	t.Helper()
	return startServerOpts(t, t.TempDir(), serviceOpts{env: env, args: extra})
}

// powerCut ends the node as a power cut would: SIGKILL to its process group.
func (s *server) powerCut() {
	s.t.Helper()
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

var (
	sandboxOnce sync.Once
	sandboxArgs []string
)

// sandboxNone turns the build sandbox off where the binary has one: the gated
// buildpack talks to the test through host paths.
func sandboxNone(t *testing.T) []string {
	sandboxOnce.Do(func() {
		out, _ := exec.Command(sokobanBin, "serve", "-h").CombinedOutput()
		if bytes.Contains(out, []byte("-sandbox")) {
			sandboxArgs = []string{"--sandbox", "none"}
		}
	})
	return sandboxArgs
}

// sameHostKey connects to each node under one host alias with strict host key
// checking, as a client behind a load balancer does: the first connection
// learns the key, the others must present the same one.
func sameHostKey(t *testing.T, u *user, nodes ...*server) {
	t.Helper()
	known := filepath.Join(t.TempDir(), "known_hosts")
	for i, n := range nodes {
		check := "yes"
		if i == 0 {
			check = "accept-new"
		}
		cmd := exec.Command("ssh", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
			"-o", "HostKeyAlias=sokoban-cluster", "-o", "UserKnownHostsFile="+known, "-o", "StrictHostKeyChecking="+check,
			"-o", "LogLevel=ERROR", "-i", u.key, "-p", n.port, "git@127.0.0.1", "whoami")
		cmd.Env = cleanEnv(n.dir)
		if res := runResult(t, cmd); res.code != 0 {
			t.Fatalf("node %d presents another host key:\n%s", i, res)
		}
	}
}

func drainLines(lines <-chan string) string {
	var all []string
	for l := range lines {
		all = append(all, l)
	}
	return strings.Join(all, "\n")
}

func setGate(t *testing.T, dir string, open bool) {
	t.Helper()
	p := filepath.Join(dir, "gate")
	var err error
	if open {
		err = os.WriteFile(p, nil, 0o644)
	} else if err = os.Remove(p); os.IsNotExist(err) {
		err = nil
	}
	if err != nil {
		t.Fatal(err)
	}
}

// The whole story of issue 5 on two nodes: a push on node A and a clone from
// node B; a second push on B refused while A builds (SPEC A11); status, logs -f
// and cancel on B acting on A's build (SPEC H1-H3); A killed mid-build, after
// which B's push succeeds on the stowed repository (SPEC F7); Redis stopped →
// a clear refusal (SPEC F3).
func TestClusterTwoNodes(t *testing.T) {
	t.Parallel()
	f := newFleet(t, true)
	gates := t.TempDir()
	bp := gatedBuildpack(t, gates)
	t.Cleanup(func() { setGate(t, gates, true) })
	a := f.node("node-a", "--buildpacks", bp)
	b := f.node("node-b", "--buildpacks", bp)
	nodes := []*server{a, b}
	alice := f.addUser(nodes, "alice@example.com", false)
	bob := f.addUser(nodes, "bob@example.com", false)
	// Issue 5 item 5: both nodes present the host keys stowed by the first.
	sameHostKey(t, alice, a, b)
	if got := f.s3.keys(t, "secrets/host_keys/"); len(got) != 2 {
		t.Fatalf("stowed host keys: %v", got)
	}

	// A push on node A, a clone from node B.
	app := newApp(t, map[string]string{"index.html": "v1"})
	setGate(t, gates, true)
	if res := runResult(t, a.git(alice, app, "push", a.remote("shop"), "main")); res.code != 0 || !strings.Contains(res.stderr, "Released v1") {
		t.Fatalf("first push on node A:\n%s", res)
	}
	expect(t, a.run(alice, "access:add", "shop", "bob@example.com"), 0, `may now push`, `^$`)
	clone := filepath.Join(t.TempDir(), "clone")
	if res := runResult(t, b.git(bob, filepath.Dir(clone), "clone", "-q", b.remote("shop"), clone)); res.code != 0 {
		t.Fatalf("clone from node B:\n%s", res)
	}
	if body, _ := os.ReadFile(filepath.Join(clone, "index.html")); string(body) != "v1" {
		t.Fatalf("clone from node B holds %q", body)
	}

	// A builds; a second push on B is refused at once, and B's status and
	// logs -f show A's build.
	setGate(t, gates, false)
	commit(t, app, map[string]string{"index.html": "v2"}, "second")
	lines, wait := followPush(t, a.git(alice, app, "push", a.remote("shop"), "main"))
	waitLine(t, lines, `^remote: first line`)
	commit(t, clone, map[string]string{"other": "x"}, "bob's")
	second := runResult(t, b.git(bob, clone, "push", b.remote("shop"), "main"))
	if second.code == 0 || !regexp.MustCompile(`fatal: remote error: shop is being deployed by alice@example\.com since .*cancel shop`).MatchString(second.stderr) {
		t.Fatalf("second push on node B:\n%s", second)
	}
	expect(t, b.run(bob, "status"), 0, `Running:\n\s+APP\s+BUILD\s+USER\s+NODE\s+STAGE\s+ELAPSED\n\s+shop\s+\S+\s+alice@example.com\s+node-a\s+compiling`, `^$`)
	follow := b.ssh(bob, "logs", "shop", "-f")
	out, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followed := startLines(t, out)
	waitLine(t, followed, `^-----> Following build \S+ of shop by alice@example.com on node-a`)
	waitLine(t, followed, `^first line`)
	setGate(t, gates, true)
	waitLine(t, followed, `^second line`)
	waitLine(t, followed, `^       Released v2`)
	waitLine(t, followed, `^-----> Build \S+ succeeded$`)
	drainLines(followed)
	if err := follow.Wait(); err != nil {
		t.Fatalf("logs -f on node B: %v", err)
	}
	rest := drainLines(lines)
	if err := wait(); err != nil || !strings.Contains(rest, "Released v2") {
		t.Fatalf("second push on node A: %v\n%s", err, rest)
	}

	// cancel on B reaches the build on A (SPEC H2).
	setGate(t, gates, false)
	commit(t, app, map[string]string{"index.html": "v3"}, "third")
	lines, wait = followPush(t, a.git(alice, app, "push", a.remote("shop"), "main"))
	waitLine(t, lines, `^remote: first line`)
	expect(t, b.run(bob, "cancel", "shop"), 0, `Cancelling build \S+ of shop \(by alice@example.com on node-a, compiling since \d+s\)...\nBuild \S+ cancelled.`, `^$`)
	waitLine(t, lines, `^remote:  !     Build cancelled by bob@example.com`)
	if rest := drainLines(lines); wait() == nil || strings.Contains(rest, "Released") {
		t.Fatalf("the cancelled push succeeded:\n%s", rest)
	}
	expect(t, b.run(bob, "releases", "shop"), 0, `\*\s+v2\s`, `^$`)

	// Node A dies mid-build (SPEC F7): its build leaves status and its lease
	// expires within the TTL; then B takes the push, on the stowed history.
	commit(t, app, map[string]string{"index.html": "v4"}, "fourth")
	_ = os.Remove(filepath.Join(gates, "compile.pid"))
	lines, wait = followPush(t, a.git(alice, app, "push", a.remote("shop"), "main"))
	waitLine(t, lines, `^remote: first line`)
	compilePID := readPID(t, gates, "compile.pid")
	a.powerCut()
	// The buildpack ran in its own process group, which the node's death does
	// not reach without a sandbox; end it as the next boot would.
	_ = syscall.Kill(-compilePID, syscall.SIGKILL)
	drainLines(lines)
	if wait() == nil {
		t.Fatal("the push to the killed node succeeded")
	}
	waitFor(t, "node A's build to leave status on node B", func() bool {
		return strings.Contains(b.run(bob, "status").stdout, "No builds running.")
	})
	setGate(t, gates, true)
	var res result
	waitFor(t, "node A's lease to expire", func() bool {
		res = runResult(t, b.git(alice, app, "push", b.remote("shop"), "main"))
		return !strings.Contains(res.stderr, "is being deployed by")
	})
	// A fast-forward from v2's commit: B restored what A stowed.
	if res.code != 0 || !regexp.MustCompile(`[0-9a-f]+\.\.[0-9a-f]+\s+main -> main`).MatchString(res.stderr) || !strings.Contains(res.stderr, "Released v3") {
		t.Fatalf("push on node B after node A died:\n%s", res)
	}
	if m := f.s3.repo(t, "shop"); m.Refs["refs/heads/main"] != strings.TrimSpace(run(t, app, nil, "git", "rev-parse", "HEAD")) {
		t.Fatalf("stowed main is %s", m.Refs["refs/heads/main"])
	}

	// Redis stops (SPEC F3): a new push is refused with the fixed text.
	f.redis.Stop()
	commit(t, app, map[string]string{"index.html": "v5"}, "fifth")
	res = runResult(t, b.git(alice, app, "push", b.remote("shop"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "fatal: remote error: coordination unavailable") {
		t.Fatalf("push with Redis down:\n%s", res)
	}
}

// SPEC F3: Redis lost while a build runs → the lease cannot be renewed, the
// build is cancelled with a reason, nothing is released; once Redis is back,
// pushes work again.
func TestClusterRedisLostMidBuild(t *testing.T) {
	t.Parallel()
	f := newFleet(t, true)
	gates := t.TempDir()
	t.Cleanup(func() { setGate(t, gates, true) })
	a := f.node("node-a", "--buildpacks", gatedBuildpack(t, gates))
	alice := f.addUser([]*server{a}, "alice@example.com", false)
	app := newApp(t, map[string]string{"x": "y"})

	lines, wait := followPush(t, a.git(alice, app, "push", a.remote("shop"), "main"))
	waitLine(t, lines, `^remote: first line`)
	compilePID := readPID(t, gates, "compile.pid")
	f.redis.Stop()
	waitLine(t, lines, `^remote:  !     Build cancelled: coordination unavailable: this server lost the app's lease, so the build was stopped and nothing was released; push again in a moment`)
	rest := drainLines(lines)
	if wait() == nil || strings.Contains(rest, "Released") {
		t.Fatalf("push that lost Redis:\n%s", rest)
	}
	waitGone(t, compilePID)
	if got := f.s3.keys(t, "apps/shop/releases"); len(got) != 0 {
		t.Fatalf("released without a lease: %v", got)
	}

	f.redis.Restart(t)
	setGate(t, gates, true)
	var res result
	waitFor(t, "pushes to work again", func() bool {
		res = runResult(t, a.git(alice, app, "push", a.remote("shop"), "main"))
		return !strings.Contains(res.stderr, "coordination unavailable")
	})
	if res.code != 0 || !strings.Contains(res.stderr, "Released v1") {
		t.Fatalf("push after Redis came back:\n%s", res)
	}
}

// SPEC F11, F9 and issue 5 item 4 through the binary on S3: a slug that cannot
// be stowed rejects the push before release; a repository that cannot be
// stowed after release is reported and stowed by the next push; a corrupt
// stowed repository is refused on a fresh node, never replaced by an empty one.
func TestClusterStoreFaults(t *testing.T) {
	t.Parallel()
	f := newFleet(t, false)
	a := f.node("node-a", "--buildpacks", buildpack(t, "ok", "echo Ok", "true", ""))
	alice := f.addUser([]*server{a}, "alice@example.com", false)
	// Large enough that a small push's incremental bundle stays below half of it.
	app := newApp(t, map[string]string{"x": "1", "data.txt": randomText(64 << 10)})

	heal := f.s3.failWrites("apps/shop/slugs/")
	res := runResult(t, a.git(alice, app, "push", a.remote("shop"), "main"))
	heal()
	if res.code == 0 || !strings.Contains(res.stderr, "Push rejected, the slug could not be stored") {
		t.Fatalf("push while S3 refuses the slug:\n%s", res)
	}
	if got := f.s3.keys(t, "apps/shop/releases"); len(got) != 0 {
		t.Fatalf("released without a slug: %v", got)
	}

	heal = f.s3.failWrites("apps/shop/repo")
	res = runResult(t, a.git(alice, app, "push", a.remote("shop"), "main"))
	heal()
	if res.code != 0 || !strings.Contains(res.stderr, "Released v1") || !strings.Contains(res.stderr, "warning: the repository could not be stowed") {
		t.Fatalf("push while S3 refuses the repository:\n%s", res)
	}
	if got := f.s3.keys(t, "apps/shop/repo"); len(got) != 0 {
		t.Fatalf("repository objects after a failed stow: %v", got)
	}
	// The next push has nothing to send, and stows what the last one could not.
	head := strings.TrimSpace(run(t, app, nil, "git", "rev-parse", "HEAD"))
	if res := runResult(t, a.git(alice, app, "push", a.remote("shop"), "main")); res.code != 0 {
		t.Fatalf("up-to-date push:\n%s", res)
	}
	if m := f.s3.repo(t, "shop"); m.Refs["refs/heads/main"] != head || len(m.Bundles) != 1 {
		t.Fatalf("stowed repository after the retry: %+v", m)
	}
	commit(t, app, map[string]string{"x": "2"}, "second")
	if res := runResult(t, a.git(alice, app, "push", a.remote("shop"), "main")); res.code != 0 || !strings.Contains(res.stderr, "Released v2") {
		t.Fatalf("second push:\n%s", res)
	}
	m := f.s3.repo(t, "shop")
	if len(m.Bundles) != 2 {
		t.Fatalf("a small push did not add an incremental bundle: %+v", m)
	}

	// A fresh node restores the chain; after the newest bundle is damaged,
	// another fresh node refuses to serve or build on it (SPEC F9).
	c := f.node("node-c", "--buildpacks", buildpack(t, "ok", "echo Ok", "true", ""))
	waitFor(t, "alice's key on node C", func() bool { return c.ssh(alice, "whoami").Run() == nil })
	if res := runResult(t, c.git(alice, t.TempDir(), "clone", "-q", c.remote("shop"), "c")); res.code != 0 {
		t.Fatalf("clone from a fresh node:\n%s", res)
	}
	last := m.Bundles[len(m.Bundles)-1].Key
	body, _, err := stow.ReadAll(context.Background(), f.s3.store, last)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stow.PutBytes(context.Background(), f.s3.store, last, body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	d := f.node("node-d", "--buildpacks", buildpack(t, "ok", "echo Ok", "true", ""))
	waitFor(t, "alice's key on node D", func() bool { return d.ssh(alice, "whoami").Run() == nil })
	res = runResult(t, d.git(alice, t.TempDir(), "clone", "-q", d.remote("shop"), "c"))
	if res.code == 0 || !strings.Contains(res.stderr, "fatal: remote error: the app's stowed repository failed verification") {
		t.Fatalf("clone of a corrupt repository:\n%s", res)
	}
	commit(t, app, map[string]string{"x": "3"}, "third")
	res = runResult(t, d.git(alice, app, "push", d.remote("shop"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "stowed repository failed verification and was not replaced") {
		t.Fatalf("push onto a corrupt repository:\n%s", res)
	}
	if got := f.s3.repo(t, "shop"); got.Generation != m.Generation {
		t.Fatalf("the corrupt repository was replaced: generation %d → %d", m.Generation, got.Generation)
	}
}

// randomText is n bytes of hex that git cannot compress much.
func randomText(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
