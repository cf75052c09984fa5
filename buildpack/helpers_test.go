package buildpack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeBuildpack makes a buildpack directory from shell snippets. An empty
// snippet leaves that bin/ script out.
func writeBuildpack(t *testing.T, detect, compile, release string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"detect": detect, "compile": compile, "release": release} {
		if body == "" {
			continue
		}
		script := "#!/bin/sh\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(dir, "bin", name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// syncBuffer is an output sink a test can read while a build writes.
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

type fixture struct {
	job  Job
	out  *syncBuffer
	slug *bytes.Buffer
}

func newJob(t *testing.T, src map[string]string) fixture {
	t.Helper()
	work := t.TempDir()
	build := filepath.Join(work, "build")
	if err := os.MkdirAll(build, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, build, src)
	f := fixture{out: &syncBuffer{}, slug: &bytes.Buffer{}}
	f.job = Job{
		ID: "b-test", BuildDir: build, WorkDir: filepath.Join(work, "work"), CacheDir: filepath.Join(work, "cache"),
		SourceVersion: "0123456789abcdef0123456789abcdef01234567", Output: f.out, Slug: f.slug,
	}
	return f
}

func build(t *testing.T, cfg Config, f fixture) (*Result, error) {
	t.Helper()
	return New(cfg).Build(context.Background(), f.job)
}

// slugFiles lists a slug's entries with their contents (directories end in /).
func slugFiles(t *testing.T, slug []byte) map[string]string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(slug))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[hdr.Name] = string(b)
	}
}

func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(gitEnv(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitHTTPServer serves the git repositories under root over smart HTTP on
// loopback, the way a user's .buildpacks would name a remote buildpack.
func gitHTTPServer(t *testing.T, root string) string {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is required: apt-get install git")
	}
	srv := httptest.NewServer(&cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	})
	t.Cleanup(srv.Close)
	return srv.URL
}

// gitBuildpack turns a buildpack directory into a committed repository.
func gitBuildpack(t *testing.T, dir string) {
	t.Helper()
	gitRun(t, dir, "init", "-q", "-b", "main")
	gitRun(t, dir, "add", ".")
	gitRun(t, dir, "commit", "-qm", "bp")
}

// buildpackFiles are a buildpack's scripts as tarball or repository content.
func buildpackFiles(detect, compile, release string) map[string]string {
	files := map[string]string{}
	for name, body := range map[string]string{"detect": detect, "compile": compile, "release": release} {
		if body != "" {
			files["bin/"+name] = "#!/bin/sh\n" + body + "\n"
		}
	}
	return files
}

// tarball packs files (bin/* executable) as a gzip'd tar, under top/ when top
// is not empty (GitHub's archive layout).
func tarball(t *testing.T, files map[string]string, top string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	prefix := ""
	if top != "" {
		prefix = top + "/"
		if err := tw.WriteHeader(&tar.Header{Name: prefix, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mode := int64(0o644)
		if strings.HasPrefix(n, "bin/") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: prefix + n, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fileServer serves fixed bodies on loopback and counts requests per path.
type fileServer struct {
	URL   string
	mu    sync.Mutex
	files map[string][]byte
	etags map[string]string
	hits  map[string]int
	fail  map[string][]int // statuses to answer the next requests with
}

func newFileServer(t *testing.T) *fileServer {
	t.Helper()
	fs := &fileServer{files: map[string][]byte{}, etags: map[string]string{}, hits: map[string]int{}, fail: map[string][]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		fs.hits[r.URL.Path]++
		body, ok := fs.files[r.URL.Path]
		etag := fs.etags[r.URL.Path]
		status := 0
		if q := fs.fail[r.URL.Path]; len(q) > 0 {
			status, fs.fail[r.URL.Path] = q[0], q[1:]
		}
		fs.mu.Unlock()
		switch {
		case status != 0:
			w.WriteHeader(status)
			return
		case !ok:
			http.NotFound(w, r)
			return
		case etag != "" && r.Header.Get("If-None-Match") == etag:
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if etag != "" {
			w.Header().Set("ETag", etag)
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	fs.URL = srv.URL
	return fs
}

func (fs *fileServer) put(path string, body []byte, etag string) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.files[path] = body
	fs.etags[path] = etag
	return fs.URL + path
}

func (fs *fileServer) failNext(path string, statuses ...int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.fail[path] = statuses
}

func (fs *fileServer) count(path string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.hits[path]
}

// needBwrap fails the test when bubblewrap is missing or does not work.
func needBwrap(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Fatal("bwrap is required for sandbox tests: apt-get install bubblewrap")
	}
	if _, err := New(Config{Sandbox: SandboxBwrap}).Sandbox(); err != nil {
		t.Fatalf("bwrap does not work on this machine: %v", err)
	}
}

// markerProcs lists live processes whose command line contains marker,
// scanning the host's /proc.
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

// uniqueMarker is a sleep duration no other process on the machine uses.
func uniqueMarker(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("1000.%d%06d", os.Getpid(), time.Now().UnixNano()%1_000_000)
}

// waitFor polls cond until it holds, or fails after a generous guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tarEntry is one raw entry for tarEntries.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

// tarEntries packs raw entries, hostile ones included, as a gzip'd tar.
func tarEntries(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: mode, Linkname: e.link}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
