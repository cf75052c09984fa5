package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needBwrap fails loudly where the sandbox tests cannot run.
func needBwrap(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Fatal("bwrap is required for the sandbox tests: apt-get install bubblewrap (make deps)")
	}
}

// startServerIn is startServer on dir/data with more environment for the
// server process, such as secrets a buildpack must never see.
func startServerIn(t *testing.T, dir string, env []string, extra ...string) *server {
	t.Helper()
	return startServerOpts(t, dir, serviceOpts{env: env, args: extra})
}

// DESIGN "Sandbox", issue 3 item 8: a buildpack nobody reviewed tries to read
// the host key, the key store, the server's configuration and environment,
// and to write outside its directories. Every attempt fails, nothing is
// written, no secret reaches the pusher, and the build itself succeeds.
func TestHostileBuildpackIsContained(t *testing.T) {
	t.Parallel()
	needBwrap(t)
	dir, outside := t.TempDir(), t.TempDir()
	data := filepath.Join(dir, "data")
	usrFile := fmt.Sprintf("/usr/sokoban-pwned-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	t.Cleanup(func() { _ = os.Remove(usrFile) })
	// A server configuration file with secrets in the data directory.
	config := filepath.Join(data, "sokoban.env")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte("REDIS_URL=redis://:hunter2-file@db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyStore := filepath.Join(data, "store", "keys", "authorized_keys")
	// The server's pid reaches the buildpack through its own directory
	// (written below, once the server runs): inside the sandbox it could
	// not find it.
	attempts := []struct{ what, cmd string }{
		{"read the host keys", "cat " + filepath.Join(data, "host_keys") + "/*"},
		{"list the host keys", "ls " + filepath.Join(data, "host_keys")},
		{"read the key store", "cat " + keyStore},
		{"read the server config", "cat " + config},
		{"list the data directory", "ls " + data},
		{"read the server's environment", "cat /proc/$server/environ"},
		{"signal the server", "kill -0 $server"},
		{"read /etc/shadow", "cat /etc/shadow"},
		{"write into the data directory", "echo pwned > " + filepath.Join(data, "pwned")},
		{"write into the store", "echo pwned > " + filepath.Join(data, "store", "pwned")},
		{"write into /usr", "echo pwned > " + usrFile},
		{"write into the test's directory", "echo pwned > " + filepath.Join(outside, "pwned")},
		{"append to /etc/hosts", "echo pwned >> /etc/hosts"},
	}
	var script strings.Builder
	script.WriteString(`server=$(cat "$(dirname "$0")/../server.pid")` + "\n")
	script.WriteString(`try() { if sh -c "$2" >/dev/null 2>&1; then echo "ALLOWED: $1"; else echo "denied: $1"; fi; }` + "\n")
	for _, a := range attempts {
		fmt.Fprintf(&script, "try %q %q\n", a.what, a.cmd)
	}
	// What a build can see of pid 1 and of itself must hold no secret.
	script.WriteString(`echo "pid 1 environ: $(tr '\0' ' ' < /proc/1/environ)"` + "\n")
	script.WriteString(`echo "environment: $(env | tr '\n' ' ')"` + "\n")
	script.WriteString(`echo "processes: $(ls /proc | grep -c '^[0-9]')"` + "\n")
	script.WriteString(`echo built > "$1/built"` + "\n")
	bp := buildpack(t, "hostile", "echo Hostile", script.String(), "")

	// The server's environment carries secrets, as a real one's would
	// (/etc/sokoban/env under systemd).
	srv := startServerIn(t, dir, []string{"SOKOBAN_TEST_SECRET=hunter2-env", "AWS_SECRET_ACCESS_KEY=hunter2-aws"},
		"--sandbox", "bwrap", "--buildpacks", bp)
	if err := os.WriteFile(filepath.Join(bp, "server.pid"), []byte(strconv.Itoa(srv.cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	alice := srv.addUser("alice@example.com", false)
	if keys, _ := filepath.Glob(filepath.Join(data, "host_keys", "*")); len(keys) == 0 {
		t.Fatal("no host keys to try")
	}
	if _, err := os.Stat(keyStore); err != nil {
		t.Fatalf("key store: %v", err)
	}

	app := newApp(t, map[string]string{"index.html": "hi"})
	res := runResult(t, srv.git(alice, app, "push", srv.remote("hostile"), "main"))
	if res.code != 0 || !strings.Contains(res.stderr, "Released v1") {
		t.Fatalf("the build itself should succeed:\n%s", res)
	}
	if strings.Contains(res.stderr, "ALLOWED") || strings.Count(res.stderr, "denied: ") != len(attempts) {
		t.Fatalf("an attempt escaped the sandbox:\n%s", res.stderr)
	}
	for _, secret := range []string{"hunter2", "SOKOBAN_TEST_SECRET", "AWS_SECRET", "PRIVATE KEY", "alice@example.com"} {
		if strings.Contains(res.stderr, secret) {
			t.Errorf("%q reached the build's output:\n%s", secret, res.stderr)
		}
	}
	for _, p := range []string{filepath.Join(data, "pwned"), filepath.Join(data, "store", "pwned"), usrFile, filepath.Join(outside, "pwned")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("the build wrote %s", p)
		}
	}
	if b, _ := os.ReadFile("/etc/hosts"); strings.Contains(string(b), "pwned") {
		t.Error("the build wrote /etc/hosts")
	}
}

// markerProcs lists live host processes whose command line contains marker.
func markerProcs(marker string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(st), ") Z ") {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// escapingBuildpack starts a sleep that leaves the process group with setsid,
// waits until it runs, says "first line" and then waits forever. Nothing of
// it talks to the test through the file system: the test finds the sleep by
// the marker in its argv, scanning the host's /proc.
func escapingBuildpack(t *testing.T, marker string) string {
	return buildpack(t, "escaping", "echo Escaping",
		`setsid sleep `+marker+` >/dev/null 2>&1 </dev/null &
until cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' | grep -q 'sleep[ ]`+marker+`'; do sleep 0.01; done
echo "first line"
sleep 1000`, "")
}

// SPEC A12, F5, DESIGN "Sandbox": with the sandbox on, a disconnect or a
// `cancel` from another connection kills everything the build started,
// including a process that escaped the process group with setsid; nothing is
// released and the workspace is gone.
func TestSandboxedBuildDiesWithPush(t *testing.T) {
	t.Parallel()
	needBwrap(t)
	for _, how := range []string{"disconnect", "cancel"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			marker := fmt.Sprintf("1000.%d%06d", os.Getpid(), time.Now().UnixNano()%1e6)
			srv := startServer(t, "--sandbox", "bwrap", "--buildpacks", escapingBuildpack(t, marker))
			alice := srv.addUser("alice@example.com", false)
			app := newApp(t, map[string]string{"x": "y"})
			push := srv.git(alice, app, "push", srv.remote("escaper"), "main")
			lines, _ := followPush(t, push)
			waitLine(t, lines, `^remote: first line`)
			if len(markerProcs(marker)) == 0 {
				t.Fatal("the setsid'd sleep is not running on the host")
			}
			if how == "disconnect" {
				_ = syscall.Kill(-push.Process.Pid, syscall.SIGKILL)
			} else {
				if res := runResult(t, srv.ssh(alice, "cancel", "escaper")); res.code != 0 {
					t.Fatalf("cancel:\n%s", res)
				}
				waitLine(t, lines, `^remote:  !     Build cancelled by alice@example\.com`)
			}
			for range lines {
			}
			_ = push.Wait()
			waitFor(t, "the setsid'd sleep to die", func() bool { return len(markerProcs(marker)) == 0 })
			waitFor(t, "the workspace to be removed", func() bool {
				entries, _ := os.ReadDir(filepath.Join(srv.data, "work"))
				return len(entries) == 0
			})
			if _, err := os.Stat(filepath.Join(srv.data, "store", "apps", "escaper", "releases")); err == nil {
				t.Fatal("a release was made for a killed build")
			}
		})
	}
}

// --sandbox=bwrap refuses to start where bubblewrap does not work; the
// default auto starts but says loudly that builds are not sandboxed.
func TestSandboxModeAtStartup(t *testing.T) {
	t.Parallel()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is required: apt-get install git")
	}
	// A PATH with git but no bwrap.
	bin := t.TempDir()
	if err := os.Symlink(gitPath, filepath.Join(bin, "git")); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + bin, "HOME=" + t.TempDir()}

	strict := exec.Command(sokobanBin, "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--http", "", "--sandbox", "bwrap")
	strict.Env = env
	res := runResult(t, strict)
	if res.code == 0 || !strings.Contains(res.stderr, "--sandbox=bwrap: buildpack: sandbox unavailable") {
		t.Fatalf("--sandbox=bwrap without bwrap:\n%s", res)
	}

	auto := exec.Command(sokobanBin, "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--http", "")
	auto.Env = env
	log := &syncBuffer{}
	auto.Stdout, auto.Stderr = log, log
	auto.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := auto.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-auto.Process.Pid, syscall.SIGKILL); _ = auto.Wait() }()
	waitFor(t, "the unsandboxed warning", func() bool { return strings.Contains(log.String(), "BUILDS ARE NOT SANDBOXED") })
	waitFor(t, "the server to listen", func() bool { return strings.Contains(log.String(), "sokoban listening") })
}
