package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// tgzServer serves buildpack tarballs on loopback and counts requests.
type tgzServer struct {
	URL   string
	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int
}

func newTgzServer(t *testing.T) *tgzServer {
	t.Helper()
	s := &tgzServer{files: map[string][]byte{}, hits: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		body, ok := s.files[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"fixed"`)
		if r.Header.Get("If-None-Match") == `"fixed"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// put publishes a buildpack made of shell snippets as a tarball at path,
// under top/ when top is set (GitHub's archive layout), and returns its URL.
func (s *tgzServer) put(t *testing.T, path, top, detect, compile, release string) string {
	t.Helper()
	files := map[string]string{"bin/detect": "#!/bin/sh\n" + detect + "\n", "bin/compile": "#!/bin/sh\n" + compile + "\n"}
	if release != "" {
		files["bin/release"] = "#!/bin/sh\n" + release + "\n"
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	prefix := ""
	if top != "" {
		prefix = top + "/"
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: prefix + n, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(files[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.files[path] = buf.Bytes()
	s.mu.Unlock()
	return s.URL + path
}

func (s *tgzServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// gitBuildpackServer publishes a buildpack as a git repository over smart
// HTTP on loopback, with a tag v1 at the first commit; main then moves on.
func gitBuildpackServer(t *testing.T, name, detect, compileV1, compileMain string) string {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is required: apt-get install git")
	}
	dir := buildpack(t, name, detect, compileV1, "")
	run(t, dir, nil, "git", "init", "-q", "-b", "main")
	run(t, dir, nil, "git", "add", "-A")
	run(t, dir, nil, "git", "commit", "-qm", "v1")
	run(t, dir, nil, "git", "tag", "v1")
	writeFiles(t, dir, map[string]string{"bin/compile": "#!/bin/sh\n" + compileMain + "\n"})
	run(t, dir, nil, "git", "commit", "-qam", "main")
	srv := httptest.NewServer(&cgi.Handler{
		Path: gitBin, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(dir), "GIT_HTTP_EXPORT_ALL=1"},
	})
	t.Cleanup(srv.Close)
	return srv.URL + "/" + name
}

// SPEC D1, D2, C7, C8, B1 through real pushes, with the sandbox on: a
// .buildpacks naming an http tarball (GitHub layout), a git repository at a
// tag and a short name from --buildpack-map; all run in order, each one's
// export reaches the next, the last release wins. Then BUILDPACK_URL beats
// .buildpacks and the app's setting beats both.
func TestPushWithRemoteBuildpacks(t *testing.T) {
	t.Parallel()
	needBwrap(t)
	tgz := newTgzServer(t)
	first := tgz.put(t, "/runtime.tgz", "heroku-buildpack-runtime-1a2b3c", "echo Runtime",
		`echo "-----> Installing runtime"; echo 'export RUNTIME_VERSION=3.12' > "$(dirname "$0")/../export"`, "")
	second := gitBuildpackServer(t, "tools", "echo Tools",
		`echo "-----> tools v1 sees RUNTIME_VERSION=$RUNTIME_VERSION"`, `echo "-----> tools from main"`) + "#v1"
	mapped := tgz.put(t, "/mapped.tar.gz", "", "echo Mapped", `echo "-----> mapped buildpack ran"`,
		"printf 'default_process_types:\\n  web: ./serve\\n'")
	envBP := tgz.put(t, "/env.tgz", "", "echo Env", `echo "-----> BUILDPACK_URL buildpack ran"`, "")
	settingBP := tgz.put(t, "/setting.tgz", "", "echo Setting", `echo "-----> app setting buildpack ran"`, "")

	srv := startServer(t, "--sandbox", "bwrap", "--buildpack-map", "acme/mapped="+mapped, "--user-fetch-allow", "127.0.0.0/8")
	alice := srv.addUser("alice@example.com", false)
	app := newApp(t, map[string]string{".buildpacks": "# runtime first\n" + first + "\n" + second + "\n\nacme/mapped\n"})
	res := runResult(t, srv.git(alice, app, "push", srv.remote("multi"), "main"))
	if res.code != 0 {
		t.Fatalf("push:\n%s", res)
	}
	want := regexp.MustCompile(`(?s)remote: -----> Using buildpacks:\s+remote:        1\. ` + regexp.QuoteMeta(first) +
		`\s+remote:        2\. ` + regexp.QuoteMeta(second) + `\s+remote:        3\. acme/mapped\s+` +
		`.*remote: -----> Runtime app detected.*Installing runtime.*remote: -----> Tools app detected` +
		`.*tools v1 sees RUNTIME_VERSION=3\.12.*remote: -----> Mapped app detected.*mapped buildpack ran` +
		`.*Procfile declares types     -> \(none\).*Default types for buildpack -> web.*Released v1`)
	if !want.MatchString(res.stderr) || strings.Contains(res.stderr, "tools from main") {
		t.Fatalf("push output:\n%s", res.stderr)
	}

	// SPEC D1: BUILDPACK_URL over .buildpacks, the app's setting over both.
	if r := runResult(t, srv.ssh(alice, "config:set", "multi", "BUILDPACK_URL="+envBP)); r.code != 0 {
		t.Fatalf("config:set:\n%s", r)
	}
	commit(t, app, map[string]string{"x": "2"}, "second")
	res = runResult(t, srv.git(alice, app, "push", srv.remote("multi"), "main"))
	if res.code != 0 || !strings.Contains(res.stderr, "-----> Using buildpack: "+envBP) ||
		!strings.Contains(res.stderr, "BUILDPACK_URL buildpack ran") || strings.Contains(res.stderr, "Installing runtime") {
		t.Fatalf("push with BUILDPACK_URL:\n%s", res)
	}
	if r := runResult(t, srv.ssh(alice, "buildpacks:set", "multi", settingBP)); r.code != 0 {
		t.Fatalf("buildpacks:set:\n%s", r)
	}
	commit(t, app, map[string]string{"x": "3"}, "third")
	res = runResult(t, srv.git(alice, app, "push", srv.remote("multi"), "main"))
	if res.code != 0 || !strings.Contains(res.stderr, "-----> Using buildpack: "+settingBP) ||
		!strings.Contains(res.stderr, "app setting buildpack ran") || strings.Contains(res.stderr, "BUILDPACK_URL buildpack ran") {
		t.Fatalf("push with an app setting:\n%s", res)
	}
	// The node's fetch cache revalidated the tarball instead of downloading
	// it again (one GET with the ETag per build).
	if n := tgz.count("/setting.tgz"); n != 1 {
		t.Fatalf("setting.tgz requested %d times", n)
	}
}

// SPEC D3, B9: a buildpack that cannot be fetched rejects the push with the
// URL and the reason; a user's buildpack may not name a path on the server.
func TestPushBuildpackFailuresNameTheCause(t *testing.T) {
	t.Parallel()
	tgz := newTgzServer(t)
	srv := startServer(t, "--fetch-timeout", "30s", "--user-fetch-allow", "127.0.0.0/8")
	alice := srv.addUser("alice@example.com", false)

	missing := tgz.URL + "/gone.tgz"
	app := newApp(t, map[string]string{".buildpacks": missing + "\n"})
	res := runResult(t, srv.git(alice, app, "push", srv.remote("fetchfail"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "remote:  !     Push rejected, could not fetch buildpack "+missing+": HTTP 404 Not Found") ||
		!strings.Contains(res.stderr, "remote:  !     Push failed") {
		t.Fatalf("404 buildpack:\n%s", res)
	}

	// The server's data directory named in .buildpacks: refused, not copied.
	app = newApp(t, map[string]string{".buildpacks": srv.data + "\n"})
	res = runResult(t, srv.git(alice, app, "push", srv.remote("sneaky"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "Push rejected, local paths are only allowed in the server's configuration: "+srv.data) {
		t.Fatalf("local path in .buildpacks:\n%s", res)
	}

	app = newApp(t, map[string]string{".buildpacks": "acme/unknown\n"})
	res = runResult(t, srv.git(alice, app, "push", srv.remote("unknown-name"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "acme/unknown: not a known buildpack name") {
		t.Fatalf("unknown short name:\n%s", res)
	}
}
