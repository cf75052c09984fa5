package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Running as a systemd service (issue 7): sd_notify, socket activation, SIGHUP
// reload, graceful drain, the ops endpoints and journald-friendly logs. Each
// test plays systemd's part: a real unixgram notify socket, an inherited
// listening fd, JOURNAL_STREAM pointing at the real stderr file.

// startService starts sokoban serve under opts and waits until it listens. The
// returned server works with the harness's helpers (addUser, ssh, git).
func startService(t *testing.T, o serviceOpts) *server {
	t.Helper()
	return startServerOpts(t, t.TempDir(), o)
}

// signal sends sig to the server process.
func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
}

// exitCode waits for the server to exit and returns its status.
func (s *server) exitCode() int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(2 * time.Minute):
		s.t.Fatalf("sokoban serve did not exit:\n%s", s.log)
	}
	return s.cmd.ProcessState.ExitCode()
}

// httpGet fetches path from the server's ops endpoints (--http 127.0.0.1:0,
// whose address the server writes to DATA/http.addr).
func (s *server) httpGet(path string) (int, string) {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.data, "http.addr"))
	if err != nil {
		s.t.Fatalf("no ops address: %v", err)
	}
	resp, err := http.Get("http://" + strings.TrimSpace(string(b)) + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// notifySocket is systemd's end of NOTIFY_SOCKET: every datagram the server
// sends arrives on the channel.
type notifySocket struct {
	path string
	msgs chan string
	mu   sync.Mutex
	seen []string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	// sun_path holds 108 bytes: a short directory of our own, not t.TempDir().
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &notifySocket{path: path, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			msg := string(buf[:k])
			n.mu.Lock()
			n.seen = append(n.seen, msg)
			n.mu.Unlock()
			n.msgs <- msg
		}
	}()
	return n
}

// next returns the next message that has a line matching re, skipping others.
func (n *notifySocket) next(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(`(?m)^` + re + `$`)
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case msg, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q", re)
			}
			if rx.MatchString(msg) {
				return msg
			}
		case <-timeout:
			n.mu.Lock()
			defer n.mu.Unlock()
			t.Fatalf("no sd_notify message with %q; got %q", re, n.seen)
		}
	}
}

// SPEC H5: systemd sees READY once the listener is up, STATUS with the builds
// running, WATCHDOG while healthy, RELOADING then READY around SIGHUP, and
// STOPPING on SIGTERM; the server then exits 0.
func TestServiceNotifiesSystemd(t *testing.T) {
	t.Parallel()
	sd := newNotifySocket(t)
	srv := startService(t, serviceOpts{
		env:   []string{"NOTIFY_SOCKET=" + sd.path, "WATCHDOG_USEC=200000"},
		pidAs: []string{"WATCHDOG_PID"},
	})
	ready := sd.next(t, `READY=1`)
	if !strings.Contains(ready, "STATUS=0 builds running") {
		t.Fatalf("READY without a status: %q", ready)
	}
	// The listener is up by READY: a session works without waiting.
	alice := srv.addUser("alice@example.com", false)
	if res := runResult(t, srv.ssh(alice, "whoami")); res.code != 0 {
		t.Fatalf("whoami after READY:\n%s", res)
	}
	// A loop feeds the watchdog, not a single message.
	sd.next(t, `WATCHDOG=1`)
	sd.next(t, `WATCHDOG=1`)

	srv.signal(syscall.SIGHUP)
	reloading := sd.next(t, `RELOADING=1`)
	if !regexp.MustCompile(`(?m)^MONOTONIC_USEC=\d+$`).MatchString(reloading) {
		t.Fatalf("RELOADING=1 without MONOTONIC_USEC: %q", reloading)
	}
	sd.next(t, `READY=1`)
	sd.next(t, `WATCHDOG=1`)

	srv.signal(syscall.SIGTERM)
	sd.next(t, `STOPPING=1`)
	if code := srv.exitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM:\n%s", code, srv.log)
	}
}

// A watchdog meant for another pid (WATCHDOG_PID) is not fed.
func TestServiceWatchdogOnlyForItsPID(t *testing.T) {
	t.Parallel()
	sd := newNotifySocket(t)
	srv := startService(t, serviceOpts{
		env: []string{"NOTIFY_SOCKET=" + sd.path, "WATCHDOG_USEC=100000", "WATCHDOG_PID=1"},
	})
	sd.next(t, `READY=1`)
	srv.signal(syscall.SIGHUP)
	sd.next(t, `READY=1`)
	srv.signal(syscall.SIGTERM)
	sd.next(t, `STOPPING=1`)
	srv.exitCode()
	sd.mu.Lock()
	defer sd.mu.Unlock()
	for _, m := range sd.seen {
		if strings.Contains(m, "WATCHDOG=1") {
			t.Fatalf("fed a watchdog that belongs to pid 1: %q", sd.seen)
		}
	}
}

// DESIGN "Socket activation": with LISTEN_FDS the inherited listener is used
// and --listen is ignored (logged once). The socket outlives the server: a
// client that connects while no server runs is served by the next one.
func TestServiceSocketActivation(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // the test keeps the socket open through f, as systemd does
	defer f.Close()
	addr := ln.Addr().String()
	opts := serviceOpts{
		env:    []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=sokoban.socket"},
		pidAs:  []string{"LISTEN_PID"},
		files:  []*os.File{f},
		listen: "127.0.0.1:1", // would fail if it were used
	}
	srv := startService(t, opts)
	b, _ := os.ReadFile(filepath.Join(srv.data, "listen.addr"))
	if got := strings.TrimSpace(string(b)); got != addr {
		t.Fatalf("serving on %s, not on the inherited %s", got, addr)
	}
	alice := srv.addUser("alice@example.com", false)
	if n := strings.Count(srv.log.String(), "--listen is ignored"); n != 1 {
		t.Fatalf("want one log line saying --listen is ignored, got %d:\n%s", n, srv.log)
	}

	// Restart: between the two servers nobody accepts, yet the connection
	// waits in the socket's queue instead of being refused.
	srv.signal(syscall.SIGTERM)
	if code := srv.exitCode(); code != 0 {
		t.Fatalf("exit status %d:\n%s", code, srv.log)
	}
	waiting := srv.ssh(alice, "whoami")
	var stdout, stderr strings.Builder
	waiting.Stdout, waiting.Stderr = &stdout, &stderr
	if err := waiting.Start(); err != nil {
		t.Fatal(err)
	}
	srv.launch(opts)
	if err := waiting.Wait(); err != nil || !strings.Contains(stdout.String(), "alice@example.com") {
		t.Fatalf("whoami across a restart: %v\n%s%s", err, stdout.String(), stderr.String())
	}
}

// sokoban.socket has one ListenStream: two inherited sockets are a
// configuration error, said at startup.
func TestServiceSocketActivationWantsOneSocket(t *testing.T) {
	t.Parallel()
	var files []*os.File
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		defer f.Close()
		files = append(files, f)
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `export LISTEN_PID=$$; exec "$0" "$@"`, sokobanBin,
		"serve", "--data", filepath.Join(dir, "data"), "--http", "")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LISTEN_FDS=2"}
	cmd.ExtraFiles = files
	res := runResult(t, cmd)
	if res.code != 1 || !strings.Contains(res.stderr, "exactly one ListenStream") {
		t.Fatalf("serve with two inherited sockets:\n%s", res)
	}
}

// SIGHUP re-reads the key store at once: with a refresh interval of an hour, a
// key added or removed with `sokoban keys` counts right after the reload.
func TestServiceReloadKeysOnSIGHUP(t *testing.T) {
	t.Parallel()
	sd := newNotifySocket(t)
	dir := t.TempDir()
	srv := &server{t: t, dir: dir, data: filepath.Join(dir, "data"), log: &syncBuffer{}}
	alice := srv.newKey("alice@example.com")
	srv.sokoban("keys", "add", "--data", srv.data, alice.name, alice.key+".pub")
	t.Cleanup(srv.stop)
	srv.launch(serviceOpts{env: []string{"NOTIFY_SOCKET=" + sd.path}, args: []string{"--key-refresh", "1h"}})
	sd.next(t, `READY=1`)
	if res := runResult(t, srv.ssh(alice, "whoami")); res.code != 0 {
		t.Fatalf("alice:\n%s", res)
	}

	bob := srv.newKey("bob@example.com")
	srv.sokoban("keys", "add", "--data", srv.data, bob.name, bob.key+".pub")
	if res := runResult(t, srv.ssh(bob, "whoami")); res.code == 0 {
		t.Fatalf("bob's key was live before the reload; the test's refresh interval did not hold:\n%s", res)
	}
	aliceFP := strings.Fields(run(t, "", nil, "ssh-keygen", "-l", "-E", "sha256", "-f", alice.key+".pub"))[1]
	srv.sokoban("keys", "remove", "--data", srv.data, aliceFP)

	srv.signal(syscall.SIGHUP)
	sd.next(t, `RELOADING=1`)
	sd.next(t, `READY=1`)
	if res := runResult(t, srv.ssh(bob, "whoami")); res.code != 0 || !strings.Contains(res.stdout, "bob@example.com") {
		t.Fatalf("bob right after SIGHUP:\n%s", res)
	}
	if res := runResult(t, srv.ssh(alice, "whoami")); res.code == 0 {
		t.Fatalf("alice's removed key still works after SIGHUP:\n%s", res)
	}
	if !strings.Contains(srv.log.String(), "reloaded") {
		t.Fatalf("no reload in the log:\n%s", srv.log)
	}
}

// runningPush is a git push in progress whose stderr is followed line by line.
type runningPush struct {
	cmd   *exec.Cmd
	lines <-chan string
	all   *syncBuffer
	done  chan struct{}
}

func startPush(t *testing.T, srv *server, u *user, dir, app string) *runningPush {
	t.Helper()
	cmd := srv.git(u, dir, "push", srv.remote(app), "main")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &runningPush{cmd: cmd, all: &syncBuffer{}, done: make(chan struct{})}
	lines := make(chan string, 1024)
	p.lines = lines
	go func() {
		defer close(p.done)
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(p.all, sc.Text())
			select {
			case lines <- sc.Text():
			default: // nobody follows any more; all keeps everything
			}
		}
	}()
	return p
}

// wait returns the push's exit code and whole stderr.
func (p *runningPush) wait(t *testing.T) (int, string) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(3 * time.Minute):
		_ = p.cmd.Process.Kill()
		t.Fatalf("push did not finish:\n%s", p.all)
	}
	err := p.cmd.Wait()
	code := 0
	if err != nil {
		code = p.cmd.ProcessState.ExitCode()
	}
	return code, p.all.String()
}

// sandboxOff turns the build sandbox off where the flag exists: gate files in
// the test's temp directory must be visible to the buildpack.
func sandboxOff(t *testing.T) []string {
	t.Helper()
	out, _ := exec.Command(sokobanBin, "serve", "-h").CombinedOutput()
	if strings.Contains(string(out), "-sandbox") {
		return []string{"--sandbox", "none"}
	}
	return nil
}

// SPEC H5, DESIGN "Drain": on SIGTERM the listener stays open; new pushes are
// refused with the restarting line while admin commands and clones go on; a
// build that finishes within --drain-timeout is released, one that does not is
// cancelled cleanly (the pusher is told, nothing released, its processes and
// workspace gone); then the server exits 0.
func TestServiceGracefulDrain(t *testing.T) {
	t.Parallel()
	gates := t.TempDir()
	// Each app's source names its gate; the build waits for that file.
	bp := buildpack(t, "gated", "echo Gated", `gate=$(cat "$1/gate-name")
echo "waiting for gate $gate"
sleep 1000 &
echo $! > `+gates+`/$gate.child
echo $$ > `+gates+`/$gate.pid
while [ ! -e `+gates+`/$gate ]; do sleep 0.05; done
echo "gate $gate open"`, "")
	if err := os.WriteFile(filepath.Join(gates, "open"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sd := newNotifySocket(t)
	srv := startService(t, serviceOpts{
		env:  []string{"NOTIFY_SOCKET=" + sd.path},
		args: append([]string{"--buildpacks", bp, "--drain-timeout", "15s"}, sandboxOff(t)...),
	})
	sd.next(t, `READY=1`)
	alice := srv.addUser("alice@example.com", true)

	// An app deployed before the drain, to clone during it.
	done := newApp(t, map[string]string{"gate-name": "open"})
	if res := runResult(t, srv.git(alice, done, "push", srv.remote("deployed"), "main")); res.code != 0 {
		t.Fatalf("first deploy:\n%s", res)
	}

	finishing := startPush(t, srv, alice, newApp(t, map[string]string{"gate-name": "a"}), "drain-a")
	cancelled := startPush(t, srv, alice, newApp(t, map[string]string{"gate-name": "b"}), "drain-b")
	waitLine(t, finishing.lines, `^remote: waiting for gate a`)
	waitLine(t, cancelled.lines, `^remote: waiting for gate b`)
	sd.next(t, `STATUS=2 builds running`)
	cancelledPID, cancelledChild := readPID(t, gates, "b.pid"), readPID(t, gates, "b.child")

	srv.signal(syscall.SIGTERM)
	sd.next(t, `STOPPING=1`)
	sd.next(t, `STATUS=draining: 2 builds running`)

	// The listener is still open: a new push hears why it is refused...
	res := runResult(t, srv.git(alice, newApp(t, map[string]string{"gate-name": "open"}), "push", srv.remote("drain-c"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "fatal: remote error: server is restarting, try again in a moment") {
		t.Fatalf("push during drain:\n%s", res)
	}
	// ... while admin commands and clones keep working.
	if res := runResult(t, srv.ssh(alice, "whoami")); res.code != 0 {
		t.Fatalf("whoami during drain:\n%s", res)
	}
	if res := runResult(t, srv.git(alice, t.TempDir(), "clone", srv.remote("deployed"), "copy")); res.code != 0 {
		t.Fatalf("clone during drain:\n%s", res)
	}
	if code, body := srv.httpGet("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz during drain: %d\n%s", code, body)
	}
	if code, body := srv.httpGet("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Fatalf("/readyz during drain: %d\n%s", code, body)
	}

	// The first build finishes within the drain timeout and is released.
	if err := os.WriteFile(filepath.Join(gates, "a"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := finishing.wait(t); code != 0 || !strings.Contains(out, "Released v1") {
		t.Fatalf("the build that finishes during the drain (exit %d):\n%s", code, out)
	}
	sd.next(t, `STATUS=draining: 1 build running`)

	// The second is cancelled when the timeout ends, and says why.
	code, out := cancelled.wait(t)
	if code == 0 || !strings.Contains(out, "server is restarting, try again in a moment") {
		t.Fatalf("the build cancelled by the drain (exit %d):\n%s", code, out)
	}
	if code := srv.exitCode(); code != 0 {
		t.Fatalf("exit status %d after the drain:\n%s", code, srv.log)
	}
	waitGone(t, cancelledPID)
	waitGone(t, cancelledChild)
	store := filepath.Join(srv.data, "store", "apps")
	if _, err := os.Stat(filepath.Join(store, "drain-b", "releases")); err == nil {
		t.Fatal("the cancelled build was released")
	}
	if slugs, _ := os.ReadDir(filepath.Join(store, "drain-b", "slugs")); len(slugs) != 0 {
		t.Fatalf("the cancelled build left slugs: %v", slugs)
	}
	if recs, _ := filepath.Glob(filepath.Join(store, "drain-b", "builds", "*.json")); len(recs) != 1 {
		t.Fatalf("want one build record for the cancelled push, got %v", recs)
	} else if b, _ := os.ReadFile(recs[0]); !strings.Contains(string(b), `"status": "cancelled"`) && !strings.Contains(string(b), `"status":"cancelled"`) {
		t.Fatalf("the cancelled push's record:\n%s", b)
	}
	if work, _ := os.ReadDir(filepath.Join(srv.data, "work")); len(work) != 0 {
		t.Fatalf("workspaces left behind: %v", work)
	}
	if _, err := os.Stat(filepath.Join(store, "drain-a", "releases")); err != nil {
		t.Fatalf("the finished build was not released: %v", err)
	}
}

// /metrics shows a push once it happened (DESIGN "Metrics"): its result, the
// build's duration, its stages; plus auth failures, lease waits and the Go
// and process collectors. /healthz and /readyz answer.
func TestServiceMetricsAfterPush(t *testing.T) {
	t.Parallel()
	gates := t.TempDir()
	srv := startServer(t, append([]string{"--buildpacks", gatedBuildpack(t, gates)}, sandboxOff(t)...)...)
	alice := srv.addUser("alice@example.com", false)
	app := newApp(t, map[string]string{"x": "y"})

	first := startPush(t, srv, alice, app, "measured")
	waitLine(t, first.lines, `^remote: first line`)
	if res := runResult(t, srv.git(alice, app, "push", srv.remote("measured"), "main")); res.code == 0 {
		t.Fatalf("a second push to a busy app was accepted:\n%s", res)
	}
	_, body := srv.httpGet("/metrics")
	for _, want := range []string{"sokoban_builds_active 1", "sokoban_lease_waits_total 1", `sokoban_pushes_total{result="refused"} 1`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics during a build lacks %q", want)
		}
	}
	if err := os.WriteFile(filepath.Join(gates, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := first.wait(t); code != 0 {
		t.Fatalf("push (exit %d):\n%s", code, out)
	}
	stranger := srv.newKey("mallory@example.com")
	if res := runResult(t, srv.ssh(stranger, "whoami")); res.code == 0 {
		t.Fatalf("an unregistered key got in:\n%s", res)
	}

	var metrics string
	waitFor(t, "the push and the failed login to be counted", func() bool {
		_, metrics = srv.httpGet("/metrics")
		return strings.Contains(metrics, `sokoban_pushes_total{result="succeeded"} 1`+"\n") &&
			regexp.MustCompile(`(?m)^sokoban_auth_failures_total [1-9]`).MatchString(metrics)
	})
	for _, re := range []string{
		`^sokoban_build_duration_seconds_count 1$`,
		`^sokoban_build_duration_seconds_sum [0-9.e+-]+$`,
		`^sokoban_stage_duration_seconds_count\{stage="compiling"\} 1$`,
		`^sokoban_stage_duration_seconds_count\{stage="receiving"\} 1$`,
		`^sokoban_stage_duration_seconds_count\{stage="releasing"\} 1$`,
		`^sokoban_builds_active 0$`,
		`^sokoban_ssh_connections_active \d+$`,
		`^sokoban_pushes_total\{result="failed"\} 0$`,
		`^go_goroutines \d+$`,
		`^process_cpu_seconds_total [0-9.e+-]+$`,
	} {
		if !regexp.MustCompile(`(?m)` + re).MatchString(metrics) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", metrics)
	}
	if code, body := srv.httpGet("/healthz"); code != http.StatusOK || !strings.Contains(body, "ssh listener: ok") || !strings.Contains(body, "hook socket: ok") {
		t.Errorf("/healthz: %d\n%s", code, body)
	}
	if code, body := srv.httpGet("/readyz"); code != http.StatusOK || !strings.Contains(body, "store: ok") {
		t.Errorf("/readyz: %d\n%s", code, body)
	}
}

// Under systemd the journal stamps each line: with JOURNAL_STREAM naming the
// server's stderr, lines carry no time of their own and start with their
// syslog priority, which journald turns into the entry's priority.
func TestServiceJournalLogs(t *testing.T) {
	t.Parallel()
	logFile, err := os.Create(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(logFile.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	srv := startService(t, serviceOpts{
		env:    []string{fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino)},
		stderr: logFile,
	})
	nobody := srv.newKey("nobody@example.com")
	_ = runResult(t, srv.ssh(nobody, "whoami")) // a refused key: a warning or info line
	srv.signal(syscall.SIGTERM)
	if code := srv.exitCode(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	b, err := os.ReadFile(logFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 3 {
		t.Fatalf("too few log lines:\n%s", b)
	}
	for _, l := range lines {
		if !regexp.MustCompile(`^<[3467]>level=(ERROR|WARN|INFO|DEBUG) msg=`).MatchString(l) || strings.Contains(l, " time=") {
			t.Errorf("not a clean journal line: %q", l)
		}
	}
	if !strings.Contains(string(b), `<6>level=INFO msg="sokoban listening"`) {
		t.Errorf("no listening line at info priority:\n%s", b)
	}
}

// An empty --http turns the ops endpoints off; an --http address in use is an error
// that says how to turn them off, not a silent server without metrics.
func TestServiceHTTPFlag(t *testing.T) {
	t.Parallel()
	off := startService(t, serviceOpts{args: []string{"--http", ""}})
	if _, err := os.Stat(filepath.Join(off.data, "http.addr")); err == nil {
		t.Fatal("--http '' still served the ops endpoints")
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cmd := exec.Command(sokobanBin, "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--http", busy.Addr().String())
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	res := runResult(t, cmd)
	if res.code != 1 || !strings.Contains(res.stderr, "--http "+busy.Addr().String()) || !strings.Contains(res.stderr, "--http ''") {
		t.Fatalf("serve with --http in use:\n%s", res)
	}
}

// The unit files pass `systemd-analyze verify` (Debian's systemd package), with
// ExecStart pointing at the built binary, and keep the properties the service
// relies on.
func TestSystemdUnitsVerify(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is required to check the unit files (apt-get install systemd, or `make deps`)")
	}
	dir := t.TempDir()
	for _, name := range []string{"sokoban.service", "sokoban.socket"} {
		b, err := os.ReadFile(filepath.Join("..", "packaging", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		unit := strings.ReplaceAll(string(b), "/usr/local/bin/sokoban", sokobanBin)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", "--man=no", "--generators=no", "sokoban.service", "sokoban.socket")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SYSTEMD_LOG_LEVEL=notice"}
	out, err := cmd.CombinedOutput()
	// verify only warns about unknown keys and bad values: any output fails.
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	b, err := os.ReadFile(filepath.Join("..", "packaging", "systemd", "sokoban.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, line := range []string{
		"Type=notify", "WatchdogSec=", "User=sokoban", "StateDirectory=sokoban",
		"EnvironmentFile=-/etc/sokoban/env", "ExecStart=/usr/local/bin/sokoban serve --data /var/lib/sokoban",
		"ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
		"PrivateTmp=yes", "CapabilityBoundingSet=\n",
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		// SIGTERM to the server only: builds must live through the drain.
		"KillMode=mixed",
	} {
		if !strings.Contains(unit, "\n"+line) {
			t.Errorf("sokoban.service lacks %q", line)
		}
	}
	// These would break the bubblewrap sandbox (see the unit's comments).
	for _, key := range []string{"RestrictNamespaces=", "ProtectKernelTunables=", "ProtectKernelLogs=", "ProtectProc=", "ProcSubset=", "MemoryDenyWriteExecute=", "SystemCallFilter="} {
		if strings.Contains(unit, "\n"+key) {
			t.Errorf("sokoban.service sets %s, which breaks the build sandbox", key)
		}
	}
	// The stop timeout covers the default drain (5m) and the cleanup grace (1m).
	m := regexp.MustCompile(`\nTimeoutStopSec=(\d+)min\n`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("sokoban.service lacks TimeoutStopSec=Nmin")
	}
	if n, _ := strconv.Atoi(m[1]); n < 7 {
		t.Errorf("TimeoutStopSec=%smin must be at least 7min", m[1])
	}
}
