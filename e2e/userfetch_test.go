package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// door listens on host (a loopback address) and counts the connections it
// accepts, handing each to serve; it is how a test sees whether anything
// connected at all.
func door(t *testing.T, host string, serve func(net.Conn)) (addr string, count func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
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

// forwardTo is a door's serve that relays to target.
func forwardTo(target string) func(net.Conn) {
	return func(c net.Conn) {
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer func() { _ = up.Close() }()
		done := make(chan struct{})
		go func() { _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite(); close(done) }()
		_, _ = io.Copy(c, up)
		_ = c.Close()
		<-done
	}
}

// gitDaemonDoor serves the repositories under root over git:// (`git daemon
// --inetd` per connection) and counts connections.
func gitDaemonDoor(t *testing.T, root string) (addr string, count func() int) {
	t.Helper()
	return door(t, "127.0.0.1", func(c net.Conn) {
		cmd := exec.Command("git", "daemon", "--inetd", "--export-all", "--base-path="+root, root)
		cmd.Stdin, cmd.Stdout, cmd.Env, cmd.WaitDelay = c, c, cleanEnv(root), 5*time.Second
		_ = cmd.Run()
	})
}

// asAccount is a command prefix that runs a command as though the server
// account's home directory (its passwd entry's, which ssh reads whatever
// HOME says) were home: a private user and mount namespace in which the
// account is uid 0 and home is bind-mounted over uid 0's home directory.
func asAccount(t *testing.T, home string) []string {
	t.Helper()
	root, err := osuser.LookupId("0")
	if err != nil {
		t.Fatal(err)
	}
	wrap := []string{"unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
		`mount --bind "$1" "$2" && shift 2 && exec "$@"`, "sh", home, root.HomeDir}
	if out, err := exec.Command(wrap[0], append(wrap[1:len(wrap):len(wrap)], "true")...).CombinedOutput(); err != nil {
		t.Fatalf("this test needs unshare (util-linux) and unprivileged user namespaces: %v\n%s", err, out)
	}
	return wrap
}

// A user's buildpack URL was fetched with the server's own identity: a
// .buildpacks line `ssh://git@127.0.0.1:2299/myapp.git` made one Sokoban
// clone a private app from another with its service account's SSH key (ssh
// takes ~/.ssh from the passwd entry, not from $HOME), and the app's
// bin/compile then ran and printed in the attacker's build. A git:// URL on
// loopback likewise reached a git daemon that only the host should see.
//
// Here the server account really holds a key that reads a private app on a
// second server (the control proves it), and the attacker names it by ssh
// and a loopback git daemon by git://: both are refused with the reason and
// neither sees a connection. With ssh and loopback allowed by the operator,
// the fetch connects but carries no key, so the private app stays private.
func TestUserBuildpackURLsCarryNoServerCredential(t *testing.T) {
	t.Parallel()
	def := buildpack(t, "any", "echo Any", "true", "")
	victim := startServer(t, "--buildpacks", def)
	svc := victim.addUser("svc@example.com", false)
	private := newApp(t, map[string]string{
		"bin/detect": "#!/bin/sh\necho Private\n", "bin/compile": "#!/bin/sh\necho SECRET-OF-THE-VICTIM\n"})
	if res := runResult(t, victim.git(svc, private, "push", victim.remote("private"), "main")); res.code != 0 {
		t.Fatalf("push the private app:\n%s", res)
	}
	sshDoor, sshConns := door(t, "127.0.0.1", forwardTo("127.0.0.1:"+victim.port))

	// The attacker's server account: svc's key, and the victim's host key
	// as a known host.
	home := t.TempDir()
	keyBytes, err := os.ReadFile(svc.key)
	if err != nil {
		t.Fatal(err)
	}
	_, doorPort, _ := net.SplitHostPort(sshDoor)
	known := run(t, "", nil, "ssh-keyscan", "-p", doorPort, "127.0.0.1")
	writeFiles(t, home, map[string]string{".ssh/known_hosts": known})
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), keyBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(home, ".ssh"), 0o700)
	wrap := asAccount(t, home)

	secretURL := "ssh://git@" + sshDoor + "/private.git"
	ctl := exec.Command(wrap[0], append(wrap[1:len(wrap):len(wrap)], "git", "ls-remote", secretURL)...)
	ctl.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_SSH_COMMAND=ssh -o BatchMode=yes"}
	if res := runResult(t, ctl); res.code != 0 || !strings.Contains(res.stdout, "refs/heads/main") {
		t.Fatalf("control: the server account cannot read the private app, so this test proves nothing:\n%s", res)
	}
	sshBefore := sshConns()

	gitRoot := t.TempDir()
	bp := buildpack(t, "daemonbp", "echo Daemon", "echo FETCHED-OVER-GIT-DAEMON", "")
	run(t, bp, nil, "git", "init", "-q", "-b", "main")
	run(t, bp, nil, "git", "add", "-A")
	run(t, bp, nil, "git", "commit", "-qm", "bp")
	run(t, "", nil, "git", "clone", "-q", "--bare", bp, filepath.Join(gitRoot, "bp.git"))
	daemon, daemonConns := gitDaemonDoor(t, gitRoot)
	daemonURL := "git://" + daemon + "/bp.git"

	attacker := startServerOpts(t, t.TempDir(), serviceOpts{wrap: wrap, args: []string{"--sandbox", "none"}})
	mallory := attacker.addUser("mallory@example.com", false)
	for i, tc := range []struct{ url, why string }{
		{secretURL, "ssh URLs are turned off for users' buildpacks on this server; use an https URL (the operator can turn them on with --user-fetch-ssh)"},
		{daemonURL, "127.0.0.1 is a loopback address; the operator can allow it with --user-fetch-allow"},
	} {
		app := newApp(t, map[string]string{".buildpacks": tc.url + "\n"})
		res := runResult(t, attacker.git(mallory, app, "push", attacker.remote("steal"+string(rune('a'+i))), "main"))
		if res.code == 0 || !strings.Contains(res.stderr, "remote:  !     Push rejected, could not fetch buildpack "+tc.url+": "+tc.why) ||
			strings.Contains(res.stderr, "SECRET-OF-THE-VICTIM") || strings.Contains(res.stderr, "FETCHED-OVER-GIT-DAEMON") {
			t.Errorf("push naming %s:\n%s", tc.url, res)
		}
	}
	if sshConns() != sshBefore || daemonConns() != 0 {
		t.Fatalf("refused URLs were connected to: ssh %d (control %d), git daemon %d", sshConns(), sshBefore, daemonConns())
	}

	// The operator turns ssh on and lets users reach loopback: the fetch
	// reaches the victim now, but with no key it reads nothing.
	attacker.stop()
	attacker.launch(serviceOpts{wrap: wrap, args: []string{"--sandbox", "none", "--user-fetch-ssh", "--user-fetch-allow", "127.0.0.0/8"}})
	app := newApp(t, map[string]string{".buildpacks": secretURL + "\n"})
	res := runResult(t, attacker.git(mallory, app, "push", attacker.remote("steal-ssh-on"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "Push rejected, could not fetch buildpack "+secretURL+": git ") ||
		strings.Contains(res.stderr, "SECRET-OF-THE-VICTIM") {
		t.Fatalf("push naming %s with --user-fetch-ssh:\n%s", secretURL, res)
	}
	if sshConns() == sshBefore {
		t.Fatal("with --user-fetch-ssh the fetch never reached the ssh server, so this proves nothing about its key")
	}
}

// A user's http tarball URL on loopback used to be downloaded like any
// other: the server's own loopback services (its ops port, a local Redis,
// an admin panel) and, on a cloud VM, the metadata endpoint were the
// attacker's to read through their build. Now loopback is refused until the
// operator lists it with --user-fetch-allow, and a redirect from an allowed
// host to one that is not is refused too, without connecting to it.
func TestUserTarballURLDestinations(t *testing.T) {
	t.Parallel()
	tgz := newTgzServer(t)
	url := tgz.put(t, "/bp.tgz", "", "echo Tarred", `echo "-----> tarball from loopback ran"`, "")
	elsewhere, elsewhereConns := door(t, "127.0.0.2", func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 500 Should Not Be Here\r\nContent-Length: 0\r\n\r\n")
	})
	bounce := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+elsewhere+"/bp.tgz", http.StatusFound)
	}))
	t.Cleanup(bounce.Close)

	srv := startServer(t)
	alice := srv.addUser("alice@example.com", false)
	app := newApp(t, map[string]string{".buildpacks": url + "\n"})
	res := runResult(t, srv.git(alice, app, "push", srv.remote("tarred"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "remote:  !     Push rejected, could not fetch buildpack "+url+
		": 127.0.0.1 is a loopback address; the operator can allow it with --user-fetch-allow") ||
		strings.Contains(res.stderr, "tarball from loopback ran") || tgz.count("/bp.tgz") != 0 {
		t.Fatalf("loopback tarball without --user-fetch-allow (%d requests):\n%s", tgz.count("/bp.tgz"), res)
	}

	srv.stop()
	srv.start("--user-fetch-allow", "127.0.0.1/32")
	res = runResult(t, srv.git(alice, app, "push", srv.remote("tarred"), "main"))
	if res.code != 0 || !strings.Contains(res.stderr, "tarball from loopback ran") {
		t.Fatalf("loopback tarball with --user-fetch-allow 127.0.0.1/32:\n%s", res)
	}

	bounced := bounce.URL + "/bp.tgz"
	app = newApp(t, map[string]string{".buildpacks": bounced + "\n"})
	res = runResult(t, srv.git(alice, app, "push", srv.remote("bounced"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "Push rejected, could not fetch buildpack "+bounced+": redirected to http://"+
		elsewhere+"/bp.tgz: 127.0.0.2 is a loopback address; the operator can allow it with --user-fetch-allow") || elsewhereConns() != 0 {
		t.Fatalf("redirect to 127.0.0.2 (%d connections there):\n%s", elsewhereConns(), res)
	}
}
