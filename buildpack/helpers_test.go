package buildpack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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
