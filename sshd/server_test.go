package sshd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/receiver"
)

// fakeKeys registers exactly the keys in the map.
type fakeKeys map[string]keys.Key

func (f fakeKeys) Lookup(_ context.Context, pk gossh.PublicKey) (keys.Key, error) {
	if k, ok := f[gossh.FingerprintSHA256(pk)]; ok {
		return k, nil
	}
	return keys.Key{}, keys.ErrUnknownKey
}

type fakeAccess struct{}

func (fakeAccess) Level(context.Context, keys.User, string) (keys.Level, error) {
	return keys.Owner, nil
}
func (fakeAccess) MayCreate(context.Context, keys.User, string) (bool, error) { return true, nil }
func (fakeAccess) Exists(context.Context, keys.User, string) (bool, error)    { return true, nil }

// fakeGit stands in for the receiver: it records requests and runs fn.
type fakeGit struct {
	mu   sync.Mutex
	reqs []receiver.Request
	fn   func(ctx context.Context, req receiver.Request) int
}

func (f *fakeGit) ReceivePack(ctx context.Context, req receiver.Request) int {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	return f.fn(ctx, req)
}
func (f *fakeGit) UploadPack(ctx context.Context, req receiver.Request) int {
	return f.ReceivePack(ctx, req)
}

type testServer struct {
	addr   string
	signer gossh.Signer
	srv    *Server
}

func newSigner(t *testing.T) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startTestServer(t *testing.T, cfg Config, git *fakeGit) *testServer {
	t.Helper()
	user := newSigner(t)
	cfg.HostKeys = []gossh.Signer{newSigner(t)}
	srv := New(cfg, Deps{
		Keys:   fakeKeys{gossh.FingerprintSHA256(user.PublicKey()): {User: "alice", Role: keys.RoleUser, Fingerprint: gossh.FingerprintSHA256(user.PublicKey())}},
		Access: fakeAccess{}, Git: git,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &testServer{addr: ln.Addr().String(), signer: user, srv: srv}
}

func (ts *testServer) dial(t *testing.T) *gossh.Client {
	t.Helper()
	c, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
		User:            "git",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(ts.signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// run executes cmd and returns stdout, stderr and the exit status.
func (ts *testServer) run(t *testing.T, cmd string, env map[string]string) (string, string, int) {
	t.Helper()
	sess, err := ts.dial(t).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range env {
		_ = sess.Setenv(k, v)
	}
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	err = sess.Run(cmd)
	var exit *gossh.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitStatus()
	}
	t.Fatalf("run %q: %v", cmd, err)
	return "", "", -1
}

// DESIGN rule 3 (tailscale's TestExitStatusPrecedesEOF): all output arrives,
// then exactly one exit status — the real one — on every run.
func TestExitStatusAfterAllOutput(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB, more than a channel window
	git := &fakeGit{fn: func(_ context.Context, req receiver.Request) int {
		_, _ = req.Stdout.Write(big)
		_, _ = req.Stderr.Write([]byte("remote: failed\n"))
		return 3
	}}
	ts := startTestServer(t, Config{}, git)
	for i := range 25 {
		stdout, stderr, code := ts.run(t, "git-receive-pack 'myapp.git'", nil)
		if code != 3 || len(stdout) != len(big) || stderr != "remote: failed\n" {
			t.Fatalf("run %d: exit %d, %d bytes of stdout, stderr %q", i, code, len(stdout), stderr)
		}
	}
}

// The exit-status request is sent before the channel closes, and only once.
func TestExitStatusPrecedesClose(t *testing.T) {
	t.Parallel()
	git := &fakeGit{fn: func(_ context.Context, req receiver.Request) int {
		_, _ = io.WriteString(req.Stdout, "bye\n")
		return 1
	}}
	ts := startTestServer(t, Config{}, git)
	client := ts.dial(t)
	ch, reqs, err := client.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := ch.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{"git-upload-pack 'myapp.git'"}))
	if err != nil || !ok {
		t.Fatalf("exec: %v %v", ok, err)
	}
	out, err := io.ReadAll(ch)
	if err != nil || string(out) != "bye\n" {
		t.Fatalf("output %q, %v", out, err)
	}
	// The close that ended ReadAll was processed after the exit-status
	// request, which is therefore already queued.
	var statuses []uint32
	for done := false; !done; {
		select {
		case r, ok := <-reqs:
			if !ok {
				done = true
				break
			}
			if r.Type == "exit-status" {
				var st struct{ Status uint32 }
				if err := gossh.Unmarshal(r.Payload, &st); err != nil {
					t.Fatal(err)
				}
				statuses = append(statuses, st.Status)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("requests channel never closed")
		}
	}
	if len(statuses) != 1 || statuses[0] != 1 {
		t.Fatalf("exit statuses = %v, want exactly [1]", statuses)
	}
}

// DESIGN rule 2: refusals of git commands are ERR pkt-lines on stdout, and no
// git process (here: the fake) is started.
func TestGitRefusalIsPktLine(t *testing.T) {
	t.Parallel()
	git := &fakeGit{fn: func(context.Context, receiver.Request) int { return 0 }}
	ts := startTestServer(t, Config{}, git)
	stdout, stderr, code := ts.run(t, "git-receive-pack '../x.git'", nil)
	n, perr := strconv.ParseUint(stdout[:min(4, len(stdout))], 16, 16)
	if code != 1 || stderr != "" || perr != nil || int(n) != len(stdout) || stdout[4:8] != "ERR " || !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("stdout %q stderr %q exit %d", stdout, stderr, code)
	}
	if len(git.reqs) != 0 {
		t.Fatal("git ran for a refused command")
	}
}

// Only GIT_PROTOCOL, and only well-formed, reaches git.
func TestOnlyGitProtocolFromClientEnv(t *testing.T) {
	t.Parallel()
	git := &fakeGit{fn: func(context.Context, receiver.Request) int { return 0 }}
	ts := startTestServer(t, Config{}, git)
	ts.run(t, "git-upload-pack 'myapp.git'", map[string]string{"GIT_PROTOCOL": "version=2", "LD_PRELOAD": "/tmp/x.so"})
	if len(git.reqs) != 1 || git.reqs[0].GitProtocol != "version=2" || git.reqs[0].App != "myapp" || git.reqs[0].User.Name != "alice" {
		t.Fatalf("requests = %+v", git.reqs)
	}
}

// A client that disconnects ends the session's context (the receiver then
// kills the build).
func TestDisconnectEndsSessionContext(t *testing.T) {
	t.Parallel()
	started, ended := make(chan struct{}), make(chan struct{})
	git := &fakeGit{fn: func(ctx context.Context, _ receiver.Request) int {
		close(started)
		<-ctx.Done()
		close(ended)
		return 1
	}}
	ts := startTestServer(t, Config{}, git)
	client := ts.dial(t)
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("git-receive-pack 'myapp.git'"); err != nil {
		t.Fatal(err)
	}
	<-started
	_ = client.Close()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the session's context did not end after the client went away")
	}
}

// A client that connects and never completes the handshake is dropped.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	git := &fakeGit{fn: func(context.Context, receiver.Request) int { return 0 }}
	ts := startTestServer(t, Config{HandshakeTimeout: 200 * time.Millisecond}, git)
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("server did not close the idle connection: %v", err)
	}
}

// An unknown key is refused during the handshake.
func TestUnknownKeyRefused(t *testing.T) {
	t.Parallel()
	git := &fakeGit{fn: func(context.Context, receiver.Request) int { return 0 }}
	ts := startTestServer(t, Config{}, git)
	_, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
		User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(newSigner(t))},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("dial with an unknown key: %v", err)
	}
}

func TestParseGitCommand(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"git-receive-pack 'myapp.git'":   "git-receive-pack myapp",
		"git-receive-pack '/myapp.git'":  "git-receive-pack myapp",
		"git-receive-pack myapp":         "git-receive-pack myapp",
		"git receive-pack 'myapp.git'":   "git-receive-pack myapp",
		"git-upload-pack '/my-app2.git'": "git-upload-pack my-app2",
		"git-receive-pack '//myapp.git'": "",
		"git-receive-pack 'a/b.git'":     "",
		"git-receive-pack '~/app.git'":   "",
		"git-receive-pack 'app.git.git'": "",
		"git-receive-pack":               "",
		"git-upload-archive 'app.git'":   "",
		"git-receive-pack 'app' 'x'":     "",
		"git-receive-pack 'unterminated": "",
	} {
		verb, app, err := ParseGitCommand(raw)
		got := ""
		if err == nil {
			got = verb + " " + app
		} else if !errors.Is(err, ErrBadCommand) {
			t.Errorf("%q: error %v is not ErrBadCommand", raw, err)
		}
		if got != want {
			t.Errorf("ParseGitCommand(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
}
