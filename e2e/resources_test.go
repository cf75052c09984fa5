package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Non-negotiable 4, STYLE 15: everything a push starts dies with it. After a
// success, a failure, a cancel, a disconnect and a clone, the server's
// goroutines, open files and child processes are back where they were after a
// warm-up push, and no workspace is left.
func TestResourcesReturnToBaseline(t *testing.T) {
	t.Parallel()
	gates := t.TempDir()
	// --sandbox none: the gated buildpack reports through a host path.
	srv := startServer(t, "--sandbox", "none", "--buildpacks",
		buildpack(t, "fail-on-marker", `[ -f "$1/x" ] && echo Rb`, `[ -f "$1/fail" ] && exit 1; true`, "")+","+gatedBuildpack(t, gates))
	alice := srv.addUser("alice@example.com", false)
	app := newApp(t, map[string]string{"x": "1"})
	pid := srv.cmd.Process.Pid

	// Warm up: the first push starts what lives for the server's lifetime.
	if res := runResult(t, srv.git(alice, app, "push", srv.remote("warm"), "main")); res.code != 0 {
		t.Fatalf("warm-up push:\n%s", res)
	}
	_ = srv.goroutines() // the ops listener's own first-request state
	var baseGo, baseFD int
	waitFor(t, "the server to settle", func() bool {
		g, fd := srv.goroutines(), countFDs(pid)
		settled := g == baseGo && fd == baseFD && len(children(pid)) == 0
		baseGo, baseFD = g, fd
		return settled
	})

	// A success and a failure.
	commit(t, app, map[string]string{"x": "2"}, "two")
	if res := runResult(t, srv.git(alice, app, "push", srv.remote("warm"), "main")); res.code != 0 {
		t.Fatalf("push:\n%s", res)
	}
	commit(t, app, map[string]string{"fail": ""}, "breaks")
	if res := runResult(t, srv.git(alice, app, "push", srv.remote("warm"), "main")); res.code == 0 {
		t.Fatalf("failing push succeeded:\n%s", res)
	}
	// A clone.
	if res := runResult(t, srv.git(alice, t.TempDir(), "clone", "-q", srv.remote("warm"), "c")); res.code != 0 {
		t.Fatalf("clone:\n%s", res)
	}
	// A disconnect and a cancel, both mid-build (the gate stays shut).
	other := newApp(t, map[string]string{"y": "1"})
	for _, how := range []string{"disconnect", "cancel"} {
		_ = os.Remove(filepath.Join(gates, "compile.pid"))
		push := srv.git(alice, other, "push", srv.remote("gated-"+how), "main")
		lines, _ := followPush(t, push)
		waitLine(t, lines, `^remote: first line`)
		if how == "disconnect" {
			_ = syscall.Kill(-push.Process.Pid, syscall.SIGKILL)
		} else if res := srv.run(alice, "cancel", "gated-"+how); res.code != 0 {
			t.Fatalf("cancel:\n%s", res)
		}
		for range lines {
		}
		_ = push.Wait()
	}

	waitFor(t, "goroutines, files and processes to return to baseline", func() bool {
		return srv.goroutines() == baseGo && countFDs(pid) == baseFD && len(children(pid)) == 0
	})
	entries, _ := os.ReadDir(filepath.Join(srv.data, "work"))
	if len(entries) != 0 {
		t.Fatalf("workspaces left behind: %v", entries)
	}
}

var goroutinesRE = regexp.MustCompile(`(?m)^go_goroutines (\d+)$`)

// goroutines reads the server's goroutine count from /metrics, on a
// connection that is closed afterwards (an idle one would count).
func (s *server) goroutines() int {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.data, "http.addr"))
	if err != nil {
		s.t.Fatalf("no ops address: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + strings.TrimSpace(string(b)) + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	m := goroutinesRE.FindSubmatch(body)
	if m == nil {
		s.t.Fatalf("no go_goroutines in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func countFDs(pid int) int {
	entries, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(entries)
}

// children lists the live (non-zombie) processes whose parent is pid.
func children(pid int) []int {
	var out []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name (which may contain spaces): state, ppid.
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) && f[0] != "Z" {
			out = append(out, p)
		}
	}
	return out
}
