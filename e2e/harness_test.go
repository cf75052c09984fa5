package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sokobanBin is the binary under test, built once in TestMain.
var sokobanBin string

func TestMain(m *testing.M) {
	for _, tool := range []string{"git", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s is required (apt-get install git openssh-client)\n", tool)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "sokoban-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sokobanBin = filepath.Join(dir, "sokoban")
	build := exec.Command("go", "build", "-race", "-o", sokobanBin, "../cmd/sokoban")
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		build = exec.Command("go", "build", "-o", sokobanBin, "../cmd/sokoban")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build sokoban:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output while tests read it.
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

// server is one running `sokoban serve`.
type server struct {
	t    testing.TB
	dir  string // test root
	data string
	port string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// startServer runs sokoban serve on a random loopback port and waits until it
// listens. extra flags follow the defaults.
func startServer(t testing.TB, extra ...string) *server {
	t.Helper()
	return startServerOpts(t, t.TempDir(), serviceOpts{args: extra})
}

// startServerOpts starts sokoban serve with dir as its root (data in dir/data)
// under opts: the one launcher every test uses.
func startServerOpts(t testing.TB, dir string, o serviceOpts) *server {
	t.Helper()
	s := &server{t: t, dir: dir, data: filepath.Join(dir, "data"), log: &syncBuffer{}}
	s.launch(o)
	t.Cleanup(s.stop)
	return s
}

// start launches the server again on the same data directory.
func (s *server) start(extra ...string) {
	s.t.Helper()
	s.launch(serviceOpts{args: extra})
}

// serviceOpts describe how to start `sokoban serve` the way systemd would.
type serviceOpts struct {
	env   []string   // added to PATH and HOME
	pidAs []string   // variables set to the server's own pid (LISTEN_PID, WATCHDOG_PID)
	files []*os.File // inherited from fd 3 on (socket activation)
	// stderr, when set, receives the server's log instead of a buffer (the
	// journal test needs a real file to name in JOURNAL_STREAM).
	stderr *os.File
	listen string // --listen; default 127.0.0.1:0
	args   []string
	// wrap runs the server under a command (wrap..., sokoban, args...) that
	// execs it, such as unshare for a private mount namespace.
	wrap []string
}

// launch starts the process for s; a server may be launched again after it
// stopped, on the same data directory.
func (s *server) launch(o serviceOpts) {
	s.t.Helper()
	_ = os.Remove(filepath.Join(s.data, "listen.addr"))
	listen := o.listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := append([]string{"serve", "--data", s.data, "--listen", listen, "--http", "127.0.0.1:0", "--node", "node-a"}, o.args...)
	if len(o.pidAs) > 0 {
		// Like systemd, name the server's own pid: the shell's pid survives exec.
		script := ""
		for _, v := range o.pidAs {
			script += "export " + v + "=$$; "
		}
		s.cmd = exec.Command("sh", append([]string{"-c", script + `exec "$0" "$@"`, sokobanBin}, args...)...)
	} else if len(o.wrap) > 0 {
		s.cmd = exec.Command(o.wrap[0], append(append(o.wrap[1:len(o.wrap):len(o.wrap)], sokobanBin), args...)...)
	} else {
		s.cmd = exec.Command(sokobanBin, args...)
	}
	s.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir}, o.env...)
	s.cmd.ExtraFiles = o.files
	if o.stderr != nil {
		s.cmd.Stdout, s.cmd.Stderr = o.stderr, o.stderr
	} else {
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	s.done = done
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(done) }()
	waitFor(s.t, "server to listen", func() bool {
		select {
		case <-done:
			s.t.Fatalf("sokoban serve exited:\n%s", s.log)
		default:
		}
		b, err := os.ReadFile(filepath.Join(s.data, "listen.addr"))
		if err != nil {
			return false
		}
		addr := strings.TrimSpace(string(b))
		s.port = addr[strings.LastIndexByte(addr, ':')+1:]
		return s.port != ""
	})
}

// stop ends the server with SIGTERM (SIGKILL after a grace period).
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	if s.t.Failed() {
		s.t.Logf("server log:\n%s", s.log)
	}
	s.cmd = nil
}

// user is a registered key pair.
type user struct {
	name string
	key  string // private key path; key+".pub" is the public key
}

// addUser makes a key pair and registers it with `sokoban keys add`.
func (s *server) addUser(name string, admin bool) *user {
	s.t.Helper()
	u := s.newKey(name)
	args := []string{"keys", "add", "--data", s.data}
	if admin {
		args = append(args, "--admin")
	}
	s.sokoban(append(args, name, u.key+".pub")...)
	// A running server re-reads the key store within its refresh interval.
	waitFor(s.t, name+"'s key to be live", func() bool {
		return s.ssh(u, "whoami").Run() == nil
	})
	return u
}

// newKey makes an unregistered key pair.
func (s *server) newKey(name string) *user {
	s.t.Helper()
	key := filepath.Join(s.dir, "keys", strings.NewReplacer("@", "_", ".", "_").Replace(name))
	_ = os.MkdirAll(filepath.Dir(key), 0o700)
	run(s.t, "", nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key)
	return &user{name: name, key: key}
}

// sokoban runs a sokoban subcommand and returns its stdout.
func (s *server) sokoban(args ...string) string {
	s.t.Helper()
	return run(s.t, "", nil, sokobanBin, args...)
}

// sshArgs are the OpenSSH options every client uses: only this key, no agent,
// no host key prompts.
func (s *server) sshArgs(u *user) []string {
	return []string{
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-i", u.key, "-p", s.port,
	}
}

// ssh returns an OpenSSH command running `ssh git@127.0.0.1 args...`.
func (s *server) ssh(u *user, args ...string) *exec.Cmd {
	all := append(s.sshArgs(u), "git@127.0.0.1")
	cmd := exec.Command("ssh", append(all, args...)...)
	cmd.Env = cleanEnv(s.dir)
	return cmd
}

// git returns a git command in dir that talks to the server as u.
func (s *server) git(u *user, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(s.dir), "GIT_SSH_COMMAND=ssh "+strings.Join(s.sshArgs(u), " "))
	return cmd
}

// remote is the app's remote URL.
func (s *server) remote(app string) string {
	return "ssh://git@127.0.0.1:" + s.port + "/" + app + ".git"
}

func cleanEnv(home string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
	}
}

// newApp creates a git repository with files committed on main.
func newApp(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	run(t, dir, nil, "git", "init", "-q", "-b", "main")
	run(t, dir, nil, "git", "add", "-A")
	run(t, dir, nil, "git", "commit", "-qm", "first")
	return dir
}

func commit(t testing.TB, dir string, files map[string]string, msg string) {
	t.Helper()
	writeFiles(t, dir, files)
	run(t, dir, nil, "git", "add", "-A")
	run(t, dir, nil, "git", "commit", "-qm", msg)
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") || strings.Contains(name, "/bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs a command that must succeed and returns its stdout.
func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(os.TempDir()), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// result is a finished command's output and exit code.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runResult runs cmd to completion, with a guard timeout.
func runResult(t testing.TB, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("%s did not finish", strings.Join(cmd.Args, " "))
	}
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return result{stdout.String(), stderr.String(), code}
}

// waitFor polls cond until it holds (never sleeping for a fixed time before
// checking) or fails the test after a generous guard.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// buildpack writes a buildpack directory from shell snippets.
func buildpack(t testing.TB, name, detect, compile, release string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	files := map[string]string{"bin/detect": "#!/bin/sh\n" + detect + "\n", "bin/compile": "#!/bin/sh\n" + compile + "\n"}
	if release != "" {
		files["bin/release"] = "#!/bin/sh\n" + release + "\n"
	}
	writeFiles(t, dir, files)
	return dir
}
