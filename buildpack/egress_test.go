package buildpack

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/netip"
	neturl "net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// guarded is a Builder with quick retries and the default egress rule:
// users' URLs reach public addresses only, as on a server started without
// --user-fetch-allow.
func guarded(cfg Config) *Builder {
	b := New(cfg)
	b.retryDelay = time.Millisecond
	return b
}

// tcpCounter listens on host (a loopback address) and counts connections,
// handing each to serve. Its goroutines end with the test.
func tcpCounter(t *testing.T, host string, serve func(net.Conn)) (addr string, count func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var n int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { _ = c.Close() }()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// gitDaemon serves the repositories under root over git:// (git daemon
// --inetd per connection) and counts connections.
func gitDaemon(t *testing.T, root string) (addr string, count func() int) {
	t.Helper()
	return tcpCounter(t, "127.0.0.1", func(c net.Conn) {
		cmd := exec.Command("git", "daemon", "--inetd", "--export-all", "--base-path="+root, root)
		cmd.Stdin, cmd.Stdout, cmd.Env, cmd.WaitDelay = c, c, gitEnv(), 5*time.Second
		_ = cmd.Run()
	})
}

// countingHTTP serves h on host (a loopback address) and counts requests.
func countingHTTP(t *testing.T, host string, h http.Handler) (url string, count func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var n int
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func gitBackend(t *testing.T, root string) http.Handler {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is required: apt-get install git")
	}
	return &cgi.Handler{Path: git, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
}

// bareBuildpack is a bare repository root/name whose compile prints marker.
func bareBuildpack(t *testing.T, root, name, marker string) {
	t.Helper()
	work := writeBuildpack(t, "echo Remote", "echo "+marker, "")
	gitBuildpack(t, work)
	gitRun(t, root, "clone", "-q", "--bare", work, filepath.Join(root, name))
}

// A user's buildpack URL used to be fetched with the server's own reach:
// `git://127.0.0.1:PORT/...`, `http://127.0.0.1:PORT/...` or
// `http://169.254.169.254/...` in a .buildpacks made the server connect to
// its own loopback services, a private network or the cloud metadata
// endpoint, and run or print what it found there in the attacker's build;
// `ssh://git@127.0.0.1:2299/myapp.git` cloned another server's private app
// with this server's SSH key. Now each is refused with the URL and the
// reason before anything connects.
func TestUserFetchRefusesSpecialDestinations(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	bareBuildpack(t, root, "bp.git", "FETCHED")
	tgz := tarball(t, buildpackFiles("echo T", "echo FETCHED", ""), "")
	tgzURL, tgzHits := countingHTTP(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(tgz) }))
	gitURL, gitHits := countingHTTP(t, "127.0.0.1", gitBackend(t, root))
	daemon, daemonHits := gitDaemon(t, root)
	sshd, sshHits := tcpCounter(t, "127.0.0.1", func(net.Conn) {})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(tgzURL, "http://"))

	const loop = "127.0.0.1 is a loopback address; the operator can allow it with --user-fetch-allow"
	const sshOff = "ssh URLs are turned off for users' buildpacks on this server; use an https URL (the operator can turn them on with --user-fetch-ssh)"
	for _, tc := range []struct {
		url, want string
		sentinel  error
	}{
		{tgzURL + "/bp.tgz", loop, ErrUserDestination},
		{"http://localhost:" + port + "/bp.tgz", "is a loopback address; the operator can allow it", ErrUserDestination},
		{"http://[::ffff:127.0.0.1]:" + port + "/bp.tgz", loop, ErrUserDestination},
		{"http://0.0.0.0:" + port + "/bp.tgz", "0.0.0.0 is an unspecified address", ErrUserDestination},
		{gitURL + "/bp.git", loop, ErrUserDestination},
		{"http://localhost:" + strings.Split(gitURL, ":")[2] + "/bp.git", "is a loopback address; the operator can allow it", ErrUserDestination},
		{"git://" + daemon + "/bp.git", loop, ErrUserDestination},
		{"ssh://git@" + sshd + "/myapp.git", sshOff, ErrUserSSH},
		{"git@127.0.0.1:myapp.git", sshOff, ErrUserSSH},
		// The metadata endpoint and private networks are TestEgressCheck's:
		// a test that named them here would reach the network whenever the
		// rule broke.
	} {
		f := newJob(t, map[string]string{".buildpacks": tc.url + "\n"})
		_, err := guarded(Config{}).Build(context.Background(), f.job)
		want := " !     Push rejected, could not fetch buildpack " + tc.url + ": "
		if !errors.Is(err, ErrFetch) || !errors.Is(err, tc.sentinel) || !strings.Contains(f.out.String(), want) ||
			!strings.Contains(f.out.String(), tc.want) || strings.Contains(f.out.String(), "FETCHED") {
			t.Errorf("%s: err = %v\n%s\nwant %q...%q", tc.url, err, f.out, want, tc.want)
		}
	}
	if n := tgzHits() + gitHits() + daemonHits() + sshHits(); n != 0 {
		t.Fatalf("refused URLs still reached their servers: http %d, git-http %d, git daemon %d, ssh %d",
			tgzHits(), gitHits(), daemonHits(), sshHits())
	}
}

// --user-fetch-allow lets users' URLs reach what the operator lists, over
// every transport; a redirect from an allowed host to one that is not is
// refused, and the second host sees nothing.
func TestUserFetchAllowList(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	bareBuildpack(t, root, "bp.git", "compiled-from-allowed")
	tgz := tarball(t, buildpackFiles("echo T", "echo compiled-from-allowed", ""), "")
	serveTgz := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(tgz) })
	tgzURL, _ := countingHTTP(t, "127.0.0.1", serveTgz)
	gitURL, _ := countingHTTP(t, "127.0.0.1", gitBackend(t, root))
	daemon, _ := gitDaemon(t, root)
	otherTgz, otherTgzHits := countingHTTP(t, "127.0.0.2", serveTgz)
	otherGit, otherGitHits := countingHTTP(t, "127.0.0.2", gitBackend(t, root))
	redirect, _ := countingHTTP(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to := otherTgz
		if strings.Contains(r.URL.Path, ".git") {
			to = otherGit
		}
		http.Redirect(w, r, to+r.URL.RequestURI(), http.StatusFound)
	}))
	only := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

	for _, url := range []string{tgzURL + "/bp.tgz", gitURL + "/bp.git", gitURL + "/bp.git#main", "git://" + daemon + "/bp.git"} {
		for _, cached := range []bool{false, true} {
			cfg := Config{UserFetchAllow: only}
			if cached {
				cfg.FetchCacheDir = t.TempDir()
			}
			f := newJob(t, map[string]string{".buildpacks": url + "\n"})
			if _, err := guarded(cfg).Build(context.Background(), f.job); err != nil || !strings.Contains(f.out.String(), "compiled-from-allowed") {
				t.Errorf("allowed %s (cache %v): %v\n%s", url, cached, err, f.out)
			}
		}
	}
	for _, tc := range []struct{ url, want string }{
		{redirect + "/bp.tgz", ": redirected to " + otherTgz + "/bp.tgz: 127.0.0.2 is a loopback address; the operator can allow it with --user-fetch-allow"},
		{redirect + "/bp.git", ": 127.0.0.2 is a loopback address; the operator can allow it with --user-fetch-allow"},
	} {
		f := newJob(t, map[string]string{".buildpacks": tc.url + "\n"})
		_, err := guarded(Config{UserFetchAllow: only}).Build(context.Background(), f.job)
		if !errors.Is(err, ErrUserDestination) || !strings.Contains(f.out.String(), "could not fetch buildpack "+tc.url+tc.want) {
			t.Errorf("redirect %s: %v\n%s\nwant %q", tc.url, err, f.out, tc.want)
		}
	}
	if otherTgzHits()+otherGitHits() != 0 {
		t.Fatalf("the redirect's target was reached: %d tarball, %d git requests", otherTgzHits(), otherGitHits())
	}
}

// The operator's choices keep reaching what the operator names: default
// buildpacks and --buildpack-map targets on loopback work on a server that
// allows users nothing special, also when a user names the short name.
func TestOperatorFetchesUnrestricted(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	bareBuildpack(t, root, "bp.git", "compiled-operator-git")
	fs := newFileServer(t)
	mapped := fs.put("/mapped.tgz", tarball(t, buildpackFiles("echo M", "echo compiled-operator-mapped", ""), ""), "")
	gitURL := gitHTTPServer(t, root) + "/bp.git"
	b := guarded(Config{Defaults: []string{gitURL}, ShortNames: map[string]string{"acme/mapped": mapped}})
	f := newJob(t, nil)
	if _, err := b.Build(context.Background(), f.job); err != nil || !strings.Contains(f.out.String(), "compiled-operator-git") {
		t.Fatalf("operator's loopback default: %v\n%s", err, f.out)
	}
	f = newJob(t, map[string]string{".buildpacks": "acme/mapped\n"})
	if _, err := b.Build(context.Background(), f.job); err != nil || !strings.Contains(f.out.String(), "compiled-operator-mapped") {
		t.Fatalf("operator's loopback short name, named by a user: %v\n%s", err, f.out)
	}
}

// The destination rule on its own: every special range is refused with a
// reason, public addresses pass, and the operator's list wins.
func TestEgressCheck(t *testing.T) {
	t.Parallel()
	e := newEgress(nil, false)
	for addr, want := range map[string]string{
		"127.0.0.1": "a loopback address", "127.9.9.9": "a loopback address", "::1": "a loopback address",
		"::ffff:127.0.0.1": "a loopback address", "169.254.169.254": "a link-local address", "fe80::1": "a link-local address",
		"fd00:ec2::254": "a private address", "10.0.0.1": "a private address", "172.16.5.4": "a private address",
		"192.168.1.1": "a private address", "100.64.0.1": "a private address", "fc00::1": "a private address",
		"0.0.0.0": "an unspecified address", "::": "an unspecified address", "239.1.2.3": "a multicast address",
		"ff02::1": "a link-local address", "192.0.2.1": "a special-purpose address", "64:ff9b::7f00:1": "a special-purpose address",
		"2001:db8::1": "a special-purpose address", "240.0.0.1": "a special-purpose address",
	} {
		err := e.check(netip.MustParseAddr(addr))
		if !errors.Is(err, ErrUserDestination) || !strings.Contains(err.Error(), " is "+want+";") {
			t.Errorf("%s: %v, want %q", addr, err, want)
		}
	}
	for _, addr := range []string{"93.184.215.14", "140.82.121.3", "2606:4700::6810:84e5"} {
		if err := e.check(netip.MustParseAddr(addr)); err != nil {
			t.Errorf("public %s: %v", addr, err)
		}
	}
	allow, err := ParseFetchAllow([]string{"10.0.0.0/8", " 127.0.0.1 ", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	e = newEgress(allow, false)
	for _, addr := range []string{"10.20.30.40", "127.0.0.1", "::ffff:127.0.0.1", "fd00:ec2::254"} {
		if err := e.check(netip.MustParseAddr(addr)); err != nil {
			t.Errorf("allowed %s: %v", addr, err)
		}
	}
	if err := e.check(netip.MustParseAddr("127.0.0.2")); err == nil {
		t.Error("127.0.0.2 passed an allow list of 127.0.0.1")
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "fe80::1%eth0", "10.0.0.0-10.0.0.9"} {
		if _, err := ParseFetchAllow([]string{bad}); !errors.Is(err, ErrFetchAllow) {
			t.Errorf("ParseFetchAllow(%q) = %v", bad, err)
		}
	}
}

// Git for a user's URL starts from nothing of the server's: ssh reads the
// account's ~/.ssh from its passwd entry whatever HOME says, so it gets no
// config file, no identity, no agent and no prompts; no credential helper,
// no netrc (HOME does not exist), no proxy of the server's. What this pins
// is argv and environment; e2e/userfetch_test.go shows the key a server
// account really has is not used.
func TestUserGitEnvCarriesNoCredential(t *testing.T) {
	t.Parallel()
	env := strings.Join(userGitEnv(nil), "\n")
	for _, want := range []string{
		"HOME=/nonexistent", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
		"GIT_SSH_COMMAND=ssh -F /dev/null -o IdentityFile=none -o IdentitiesOnly=yes -o IdentityAgent=none ",
		"-o BatchMode=yes", "-o PubkeyAuthentication=no", "-o GSSAPIAuthentication=no", "-o UserKnownHostsFile=/dev/null",
	} {
		if !strings.Contains(env, want) {
			t.Errorf("user git env lacks %q:\n%s", want, env)
		}
	}
	for _, never := range []string{"SSH_AUTH_SOCK", "_proxy=", "_PROXY=", "NETRC", "GIT_ASKPASS=/usr"} {
		if strings.Contains(env, never) {
			t.Errorf("user git env has %q:\n%s", never, env)
		}
	}
	// The fetch's proxy comes through the environment (its token stays out
	// of argv) and resets the credential helpers.
	p, err := newEgress(nil, false).startGitProxy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	env = strings.Join(userGitEnv(p), "\n")
	for _, want := range []string{"GIT_CONFIG_KEY_0=http.proxy", "GIT_CONFIG_VALUE_0=http://sokoban:" + p.token + "@127.0.0.1:",
		"GIT_CONFIG_KEY_1=http.proxyAuthMethod", "GIT_CONFIG_KEY_2=credential.helper\nGIT_CONFIG_VALUE_2=\n"} {
		if !strings.Contains(env+"\n", want) {
			t.Errorf("proxied env lacks %q:\n%s", want, env)
		}
	}
	// Without the token the proxy carries nothing.
	proxy, err := neturl.Parse("http://" + p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(proxy)}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:9/", nil) // refused anyway: nothing leaves the host
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("proxy without its token: %s", resp.Status)
	}
}

// With --user-fetch-ssh a user's ssh URL works against a server that lets
// anyone in, at the checked address, and still offers no key.
func TestUserFetchSSH(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	bareBuildpack(t, root, "bp.git", "compiled-over-ssh")
	addr, methods := anonSSHServer(t, root)
	for _, url := range []string{"ssh://git@" + addr + "/bp.git", "ssh://git@" + addr + "/bp.git#main"} {
		f := newJob(t, map[string]string{".buildpacks": url + "\n"})
		b := guarded(Config{UserFetchSSH: true, UserFetchAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
		if _, err := b.Build(context.Background(), f.job); err != nil || !strings.Contains(f.out.String(), "compiled-over-ssh") {
			t.Errorf("%s: %v\n%s", url, err, f.out)
		}
	}
	for _, m := range methods() {
		if m != "none" {
			t.Errorf("the client tried %q authentication; it has nothing to offer", m)
		}
	}
	// Allowed to use ssh, but not to reach a private address.
	f := newJob(t, map[string]string{".buildpacks": "ssh://git@" + addr + "/bp.git\n"})
	if _, err := guarded(Config{UserFetchSSH: true}).Build(context.Background(), f.job); !errors.Is(err, ErrUserDestination) {
		t.Fatalf("ssh to loopback without --user-fetch-allow: %v\n%s", err, f.out)
	}
}

// anonSSHServer is an SSH server on loopback that lets anyone run
// git-upload-pack on the repositories under root, recording the
// authentication methods clients try.
func anonSSHServer(t *testing.T, root string) (addr string, methods func() []string) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var tried []string
	cfg := &ssh.ServerConfig{NoClientAuth: true, AuthLogCallback: func(_ ssh.ConnMetadata, method string, _ error) {
		mu.Lock()
		tried = append(tried, method)
		mu.Unlock()
	}}
	cfg.AddHostKey(signer)
	addr, _ = tcpCounter(t, "127.0.0.1", func(c net.Conn) {
		_, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			if nc.ChannelType() != "session" {
				_ = nc.Reject(ssh.UnknownChannelType, "no")
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			for req := range creqs {
				if req.Type != "exec" {
					_ = req.Reply(req.Type == "env", nil)
					continue
				}
				var p struct{ Command string }
				_ = ssh.Unmarshal(req.Payload, &p)
				_ = req.Reply(true, nil)
				repo := strings.Trim(strings.TrimPrefix(p.Command, "git-upload-pack "), "'")
				cmd := exec.Command("git", "upload-pack", filepath.Join(root, filepath.Clean("/"+repo)))
				cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Env, cmd.WaitDelay = ch, ch, ch.Stderr(), gitEnv(), 5*time.Second
				status := uint32(0)
				if cmd.Run() != nil {
					status = 1
				}
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
				_ = ch.Close()
			}
		}
	})
	return addr, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), tried...) }
}

// A user's https git remote is reached through the fetch's proxy with
// CONNECT: the tunnel is dialled under the same check, so an allowed host
// gets through (TLS end to end) and a refused one is never connected to and
// is named for the pusher.
func TestGitProxyTunnels(t *testing.T) {
	t.Parallel()
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("hello over tls")) })
	allowed := httptest.NewTLSServer(hello)
	t.Cleanup(allowed.Close)
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	var refusedHits sync.Mutex
	hits := 0
	refused := httptest.NewUnstartedServer(hello)
	refused.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			refusedHits.Lock()
			hits++
			refusedHits.Unlock()
		}
	}
	_ = refused.Listener.Close()
	refused.Listener = ln
	refused.StartTLS()
	t.Cleanup(refused.Close)

	p, err := newEgress([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, false).startGitProxy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	proxy, err := neturl.Parse("http://sokoban:" + p.token + "@" + p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tr := allowed.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.InsecureSkipVerify = true // two test certificates; TLS itself is not the point
	tr.Proxy = http.ProxyURL(proxy)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	resp, err := client.Get(allowed.URL + "/")
	if err != nil {
		t.Fatalf("allowed https through the proxy: %v", err)
	}
	body := make([]byte, 64)
	n, _ := resp.Body.Read(body)
	_ = resp.Body.Close()
	if string(body[:n]) != "hello over tls" || p.refusal() != nil {
		t.Fatalf("allowed https: %q, refusal %v", body[:n], p.refusal())
	}
	if _, err := client.Get(refused.URL + "/"); err == nil {
		t.Fatal("a refused destination was tunnelled")
	}
	want := "127.0.0.2 is a loopback address; the operator can allow it with --user-fetch-allow"
	if r := p.refusal(); r == nil || r.Error() != want || !errors.Is(r, ErrUserDestination) {
		t.Fatalf("refusal = %v, want %q", r, want)
	}
	refusedHits.Lock()
	defer refusedHits.Unlock()
	if hits != 0 {
		t.Fatalf("the refused server got %d connections", hits)
	}
}

// pin hands git the checked address in place of the host name of git://
// and ssh URLs, keeping user, port and path, so git cannot resolve the name
// again to somewhere else; http(s) URLs go unchanged to the proxy.
func TestEgressPin(t *testing.T) {
	t.Parallel()
	e := newEgress(loopback, true)
	for in, want := range map[string]string{
		"git://localhost:9418/bp.git":             "git://127.0.0.1:9418/bp.git",
		"git://127.0.0.1/~alice/bp.git":           "git://127.0.0.1/~alice/bp.git",
		"ssh://git@localhost:2299/myapp.git":      "ssh://git@127.0.0.1:2299/myapp.git",
		"git@localhost:myapp.git":                 "git@127.0.0.1:myapp.git",
		"git@[::ffff:127.0.0.1]:myapp.git":        "git@127.0.0.1:myapp.git",
		"http://localhost:8080/bp.git":            "http://localhost:8080/bp.git",
		"https://user@127.0.0.1/bp.git?x=1":       "https://user@127.0.0.1/bp.git?x=1",
		"ssh://git@[::ffff:127.0.0.2]:22/a/b.git": "ssh://git@127.0.0.2:22/a/b.git",
	} {
		got, err := e.pin(context.Background(), in)
		v6 := strings.Contains(in, "localhost") && strings.Replace(want, "127.0.0.1", "[::1]", 1) == got // localhost may be ::1 first
		if err != nil || (got != want && !v6) {
			t.Errorf("pin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"git://10.0.0.1/bp.git", "ssh://git@169.254.169.254/x", "git@[fd00:ec2::254]:x.git", "git:///bp.git"} {
		if _, err := e.pin(context.Background(), in); !errors.Is(err, ErrUserDestination) {
			t.Errorf("pin(%q): %v, want a refusal", in, err)
		}
	}
	// git takes user@host as the host name of a git:// URL and would look
	// up that string, unchecked.
	if got, err := e.pin(context.Background(), "git://localhost@127.0.0.1/bp.git"); err == nil {
		t.Errorf("pin of a git:// URL with a user name = %q", got)
	}
}
