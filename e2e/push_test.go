package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gatedBuildpack prints "first line", then waits until the file gate exists
// before printing "second line". It records its pid and a background child's
// pid in dir so tests can check they are gone.
func gatedBuildpack(t *testing.T, dir string) string {
	return buildpack(t, "gated", "echo Gated",
		`echo "first line"
sleep 1000 &
echo $! > `+filepath.Join(dir, "child.pid")+`
echo $$ > `+filepath.Join(dir, "compile.pid")+`
while [ ! -e `+filepath.Join(dir, "gate")+` ]; do sleep 0.05; done
echo "second line"`, "")
}

// lineReader follows a process's stderr line by line.
func startLines(t *testing.T, r io.Reader) <-chan string {
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines
}

// followPush starts a git push (in its own process group, so a test can kill
// it like Ctrl-C) and follows its stderr.
func followPush(t *testing.T, cmd *exec.Cmd) (<-chan string, func() error) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return startLines(t, stderr), cmd.Wait
}

func waitLine(t *testing.T, lines <-chan string, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before a line matching %q", re)
			}
			if rx.MatchString(l) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line matching %q", re)
		}
	}
}

// SPEC A2: build output reaches the pusher while it is produced. The buildpack
// does not print its second line until the test has seen the first one through
// git and ssh, so buffered output would never get there.
func TestPushStreamsOutputAsProduced(t *testing.T) {
	t.Parallel()
	gates := t.TempDir()
	// --sandbox none: the gate and pid files are host paths the sandbox hides (sandbox_test.go covers the sandboxed kill).
	srv := startServer(t, "--sandbox", "none", "--buildpacks", gatedBuildpack(t, gates))
	alice := srv.addUser("alice@example.com", false)
	app := newApp(t, map[string]string{"x": "y"})
	push := srv.git(alice, app, "push", srv.remote("streamer"), "main")
	lines, _ := followPush(t, push)
	waitLine(t, lines, `^remote: first line`)
	if err := os.WriteFile(filepath.Join(gates, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitLine(t, lines, `^remote: second line`)
	waitLine(t, lines, `^remote:        Released v1`)
	for range lines {
	}
	if err := push.Wait(); err != nil {
		t.Fatalf("git push: %v", err)
	}
}

// SPEC A11: a second push to an app that is building is refused at once,
// naming who deploys since when and how to cancel; other apps build meanwhile.
func TestConcurrentPushToSameAppIsRefused(t *testing.T) {
	t.Parallel()
	gates := t.TempDir()
	// --sandbox none: the gate and pid files are host paths the sandbox hides (sandbox_test.go covers the sandboxed kill).
	srv := startServer(t, "--sandbox", "none", "--buildpacks", gatedBuildpack(t, gates))
	alice := srv.addUser("alice@example.com", false)
	bob := srv.addUser("bob@example.com", true)
	app := newApp(t, map[string]string{"x": "y"})

	first := srv.git(alice, app, "push", srv.remote("busy-app"), "main")
	lines, _ := followPush(t, first)
	waitLine(t, lines, `^remote: first line`)

	second := runResult(t, srv.git(bob, app, "push", srv.remote("busy-app"), "main"))
	if second.code == 0 ||
		!regexp.MustCompile(`fatal: remote error: busy-app is being deployed by alice@example\.com since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+s ago\)\. Wait for it to finish, or stop it with .ssh git@HOST cancel busy-app.\.`).MatchString(second.stderr) {
		t.Fatalf("second push:\n%s", second)
	}
	if strings.Contains(second.stderr, "Writing objects") {
		t.Fatal("the refused push uploaded objects first")
	}

	// Another app builds in parallel, through the same gate.
	other := srv.git(bob, app, "push", srv.remote("other-app"), "main")
	otherLines, _ := followPush(t, other)
	waitLine(t, otherLines, `^remote: first line`)

	if err := os.WriteFile(filepath.Join(gates, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitLine(t, lines, `Released v1`)
	waitLine(t, otherLines, `Released v1`)
	for range lines {
	}
	for range otherLines {
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first push: %v", err)
	}
	if err := other.Wait(); err != nil {
		t.Fatalf("other app's push: %v", err)
	}
}

// SPEC A12, F5, DESIGN rule 6: a pusher who disconnects mid-build kills the
// build and everything it started; nothing is released, the lease is free again
// and the workspace is gone.
func TestDisconnectKillsBuild(t *testing.T) {
	t.Parallel()
	gates := t.TempDir()
	// --sandbox none: the gate and pid files are host paths the sandbox hides (sandbox_test.go covers the sandboxed kill).
	srv := startServer(t, "--sandbox", "none", "--buildpacks", gatedBuildpack(t, gates))
	alice := srv.addUser("alice@example.com", false)
	app := newApp(t, map[string]string{"x": "y"})

	push := srv.git(alice, app, "push", srv.remote("quitter"), "main")
	lines, _ := followPush(t, push)
	waitLine(t, lines, `^remote: first line`)
	compilePID, childPID := readPID(t, gates, "compile.pid"), readPID(t, gates, "child.pid")
	// Ctrl-C: git and its ssh go away together.
	_ = syscall.Kill(-push.Process.Pid, syscall.SIGKILL)
	_ = push.Wait()

	waitGone(t, compilePID)
	waitGone(t, childPID)
	waitFor(t, "the workspace to be removed", func() bool {
		entries, _ := os.ReadDir(filepath.Join(srv.data, "work"))
		return len(entries) == 0
	})
	if _, err := os.Stat(filepath.Join(srv.data, "store", "apps", "quitter", "releases")); err == nil {
		t.Fatal("a release was made for a disconnected push")
	}
	// The lease is free: the next push proceeds (and, with the gate open, releases).
	if err := os.WriteFile(filepath.Join(gates, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := runResult(t, srv.git(alice, app, "push", srv.remote("quitter"), "main"))
	if res.code != 0 || !strings.Contains(res.stderr, "Released v1") {
		t.Fatalf("push after disconnect:\n%s", res)
	}
}

// DESIGN rule 3: a failing push gives the client a non-zero status every time.
func TestFailingPushExitsNonZeroEveryTime(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--buildpacks", buildpack(t, "failing", "echo Failing", "echo nope; exit 1", ""))
	alice := srv.addUser("alice@example.com", false)
	app := newApp(t, map[string]string{"x": "y"})
	for i := range 10 {
		res := runResult(t, srv.git(alice, app, "push", srv.remote("failing"), "main"))
		if res.code == 0 || !strings.Contains(res.stderr, "Push rejected, failed to compile Failing app.") {
			t.Fatalf("push %d:\n%s", i, res)
		}
	}
}

// A node whose repository cache is gone restores the app from stow: the next
// push builds on the stowed history (DESIGN flow, step 2).
func TestRepositoryRestoredFromStow(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--buildpacks", buildpack(t, "ok", "echo Ok", "true", ""))
	alice := srv.addUser("alice@example.com", false)
	app := newApp(t, map[string]string{"x": "1"})
	if res := runResult(t, srv.git(alice, app, "push", srv.remote("phoenix"), "main")); res.code != 0 {
		t.Fatalf("first push:\n%s", res)
	}
	srv.stop()
	if err := os.RemoveAll(filepath.Join(srv.data, "repos")); err != nil {
		t.Fatal(err)
	}
	srv.start("--buildpacks", buildpack(t, "ok", "echo Ok", "true", ""))
	commit(t, app, map[string]string{"x": "2"}, "second")
	res := runResult(t, srv.git(alice, app, "push", srv.remote("phoenix"), "main"))
	// A fast-forward (not a new branch) proves the old history came back.
	if res.code != 0 || !regexp.MustCompile(`[0-9a-f]+\.\.[0-9a-f]+\s+main -> main`).MatchString(res.stderr) || !strings.Contains(res.stderr, "Released v2") {
		t.Fatalf("push after losing the cache:\n%s", res)
	}
}

func readPID(t *testing.T, dir, name string) int {
	t.Helper()
	var pid int
	waitFor(t, name, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	})
	return pid
}

// waitGone waits until pid no longer runs (a zombie awaiting its reaper counts
// as gone).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	waitFor(t, "process "+strconv.Itoa(pid)+" to die", func() bool {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return true
		}
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err == nil && strings.Contains(string(st), ") Z ")
	})
}
