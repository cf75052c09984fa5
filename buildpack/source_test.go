package buildpack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// loopback is where the tests' servers listen.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// quick is a Builder whose fetch retries do not wait a second between tries,
// and which lets users' URLs reach the tests' loopback servers, as
// --user-fetch-allow 127.0.0.0/8 does (see guarded for the default rule).
func quick(cfg Config) *Builder {
	cfg.UserFetchAllow = append(cfg.UserFetchAllow, loopback...)
	b := New(cfg)
	b.retryDelay = time.Millisecond
	return b
}

// versionedRepo is a git buildpack whose compile prints its version: v1 is
// tagged, main has moved on to v2. It returns the repository's URL over
// loopback HTTP, v1's commit id and the repository's directory.
func versionedRepo(t *testing.T) (url, v1, dir string) {
	t.Helper()
	root := t.TempDir()
	dir = filepath.Join(root, "versioned")
	writeFiles(t, dir, buildpackFiles("echo Versioned", "echo compiled-v1", ""))
	_ = os.Chmod(filepath.Join(dir, "bin", "detect"), 0o755)
	_ = os.Chmod(filepath.Join(dir, "bin", "compile"), 0o755)
	gitBuildpack(t, dir)
	gitRun(t, dir, "tag", "-a", "v1", "-m", "v1")
	v1 = gitRun(t, dir, "rev-parse", "HEAD")
	writeFiles(t, dir, map[string]string{"bin/compile": "#!/bin/sh\necho compiled-v2\n"})
	gitRun(t, dir, "commit", "-qam", "v2")
	return gitHTTPServer(t, root) + "/versioned", v1, dir
}

// SPEC D2: a git URL with an optional #branch, #tag or #sha, each fetched at
// that ref, through the node's fetch cache and without it.
func TestFetchGitRefs(t *testing.T) {
	t.Parallel()
	url, v1, _ := versionedRepo(t)
	for _, cached := range []bool{false, true} {
		cfg := Config{}
		if cached {
			cfg.FetchCacheDir = t.TempDir()
		}
		b := quick(cfg)
		for _, tc := range []struct{ url, want string }{
			{url, "compiled-v2"},
			{url + "#main", "compiled-v2"},
			{url + "#v1", "compiled-v1"},
			{url + "#" + v1, "compiled-v1"},
			{url + "#" + v1[:10], "compiled-v1"},
		} {
			f := newJob(t, nil)
			f.job.Buildpacks = []string{tc.url}
			if _, err := b.Build(context.Background(), f.job); err != nil || !strings.Contains(f.out.String(), tc.want) {
				t.Errorf("cache=%v %s: %v\n%s", cached, tc.url, err, f.out)
			}
		}
	}
}

// SPEC D2, DESIGN "Tarball buildpacks": http(s) .tgz and .tar.gz, with bin/
// at the top or inside one top-level directory.
func TestFetchTarballs(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	files := buildpackFiles("echo Tarred", "echo compiled-from-tarball", "")
	urls := []string{
		fs.put("/flat.tgz", tarball(t, files, ""), ""),
		fs.put("/github-style.tar.gz", tarball(t, files, "heroku-buildpack-x-1a2b3c"), ""),
		fs.put("/query.tgz", tarball(t, files, ""), "") + "?version=3",
	}
	for _, url := range urls {
		f := newJob(t, nil)
		f.job.Buildpacks = []string{url}
		if _, err := quick(Config{}).Build(context.Background(), f.job); err != nil || !strings.Contains(f.out.String(), "compiled-from-tarball") {
			t.Errorf("%s: %v\n%s", url, err, f.out)
		}
	}
	// The operator may name a tarball on disk; a user may not (see
	// TestUserCannotNameLocalThings).
	local := filepath.Join(t.TempDir(), "bp.tgz")
	if err := os.WriteFile(local, tarball(t, files, "top"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{local, "file://" + local} {
		f := newJob(t, nil)
		if _, err := quick(Config{Defaults: []string{url}}).Build(context.Background(), f.job); err != nil {
			t.Errorf("operator's %s: %v\n%s", url, err, f.out)
		}
	}
}

// A tarball that is not a buildpack, or would unpack outside its directory,
// or is too big, fails with the URL and the reason, and is not retried.
func TestFetchBadTarballs(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	escape := tarEntries(t, []tarEntry{{name: "bin/compile", body: "#!/bin/sh\n", mode: 0o755}, {name: "../../escaped", body: "x"}})
	for _, tc := range []struct {
		path string
		body []byte
		want string
	}{
		{"/not-gzip.tgz", []byte("<html>oops</html>"), "not a gzip'd tarball"},
		{"/no-bin.tgz", tarball(t, map[string]string{"README": "x"}, ""), "no bin/ at the top of the archive"},
		{"/two-tops.tgz", tarball(t, map[string]string{"a/bin/compile": "x", "b/bin/compile": "y"}, ""), "no bin/ at the top"},
		{"/escape.tgz", escape, "escapes the directory"},
		{"/big.tgz", tarball(t, map[string]string{"bin/compile": strings.Repeat("x", 5000)}, ""), "unpacks to more than"},
	} {
		url := fs.put(tc.path, tc.body, "")
		f := newJob(t, nil)
		f.job.Buildpacks = []string{url}
		_, err := quick(Config{MaxBuildpackSize: 4096}).Build(context.Background(), f.job)
		want := " !     Push rejected, could not fetch buildpack " + url + ": bad archive: "
		if !errors.Is(err, ErrFetch) || !strings.Contains(f.out.String(), want) || !strings.Contains(f.out.String(), tc.want) {
			t.Errorf("%s: err = %v\n%s\nwant %q", tc.path, err, f.out, want)
		}
		if n := fs.count(tc.path); n != 1 {
			t.Errorf("%s was fetched %d times; a bad archive is not retried", tc.path, n)
		}
	}
}

// SPEC D3: a fetch failure names the URL and the reason; transient failures
// are retried a bounded number of times; a hung server hits the timeout.
func TestFetchFailuresAndRetries(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	files := buildpackFiles("echo Flaky", "echo compiled-flaky", "")

	url := fs.put("/flaky.tgz", tarball(t, files, ""), "")
	fs.failNext("/flaky.tgz", 503, 502)
	f := newJob(t, nil)
	f.job.Buildpacks = []string{url}
	if _, err := quick(Config{FetchRetries: 3}).Build(context.Background(), f.job); err != nil || fs.count("/flaky.tgz") != 3 {
		t.Fatalf("two 5xx then success: %v, %d requests\n%s", err, fs.count("/flaky.tgz"), f.out)
	}

	url = fs.put("/down.tgz", tarball(t, files, ""), "")
	fs.failNext("/down.tgz", 503, 503, 503, 503)
	f = newJob(t, nil)
	f.job.Buildpacks = []string{url}
	_, err := quick(Config{FetchRetries: 3}).Build(context.Background(), f.job)
	want := "could not fetch buildpack " + url + ": HTTP 503 Service Unavailable (after 3 attempts)"
	if !errors.Is(err, ErrFetch) || !strings.Contains(f.out.String(), want) || fs.count("/down.tgz") != 3 {
		t.Fatalf("always 503: %v, %d requests\n%s", err, fs.count("/down.tgz"), f.out)
	}

	f = newJob(t, nil)
	f.job.Buildpacks = []string{fs.URL + "/missing.tgz"}
	_, err = quick(Config{}).Build(context.Background(), f.job)
	if !errors.Is(err, ErrFetch) || !strings.Contains(f.out.String(), fs.URL+"/missing.tgz: HTTP 404 Not Found\n") || fs.count("/missing.tgz") != 1 {
		t.Fatalf("404: %v, %d requests\n%s", err, fs.count("/missing.tgz"), f.out)
	}

	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hung.Close()
	f = newJob(t, nil)
	f.job.Buildpacks = []string{hung.URL + "/slow.tgz"}
	_, err = quick(Config{FetchTimeout: 200 * time.Millisecond, FetchRetries: 2}).Build(context.Background(), f.job)
	if !errors.Is(err, ErrFetch) || !strings.Contains(f.out.String(), "/slow.tgz: timed out after 200ms (after 2 attempts)") {
		t.Fatalf("hung server: %v\n%s", err, f.out)
	}

	f = newJob(t, nil)
	f.job.Buildpacks = []string{fs.URL + "/no-such-repo.git"}
	_, err = quick(Config{FetchRetries: 2}).Build(context.Background(), f.job)
	if !errors.Is(err, ErrFetch) || !strings.Contains(f.out.String(), "could not fetch buildpack "+fs.URL+"/no-such-repo.git: git fetch: ") {
		t.Fatalf("missing git repository: %v\n%s", err, f.out)
	}
}

// The node cache keeps a fetched buildpack: a tarball is revalidated with its
// ETag and downloaded again only when it changed; a git ref is checked with
// ls-remote and fetched again only when it moved.
func TestFetchCache(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	cacheDir := t.TempDir()
	b := quick(Config{FetchCacheDir: cacheDir})
	run := func(url, want string) {
		t.Helper()
		f := newJob(t, nil)
		f.job.Buildpacks = []string{url}
		if _, err := b.Build(context.Background(), f.job); err != nil || !strings.Contains(f.out.String(), want) {
			t.Fatalf("%s: %v\n%s", url, err, f.out)
		}
		if _, err := os.Stat(filepath.Join(f.job.WorkDir, "buildpacks", "0", "bin", "compile")); err != nil {
			t.Fatalf("the build did not get its own copy: %v", err)
		}
	}
	url := fs.put("/bp.tgz", tarball(t, buildpackFiles("echo C", "echo one", ""), ""), `"v1"`)
	run(url, "one")
	run(url, "one")
	if fs.count("/bp.tgz") != 2 {
		t.Fatalf("requests = %d, want a download and a revalidation", fs.count("/bp.tgz"))
	}
	fs.put("/bp.tgz", tarball(t, buildpackFiles("echo C", "echo two", ""), ""), `"v2"`)
	run(url, "two")

	gitURL, v1, repo := versionedRepo(t)
	run(gitURL+"#v1", "compiled-v1")
	run(gitURL+"#"+v1, "compiled-v1")
	entries, _ := os.ReadDir(cacheDir)
	if len(entries) != 3 {
		t.Fatalf("cache holds %d entries, want 3", len(entries))
	}
	// A pinned commit never changes: it is served from the cache without
	// asking the server, which may even be gone. A tag has to be checked.
	if err := os.RemoveAll(repo); err != nil {
		t.Fatal(err)
	}
	run(gitURL+"#"+v1, "compiled-v1")
	f := newJob(t, nil)
	f.job.Buildpacks = []string{gitURL + "#v1"}
	if _, err := b.Build(context.Background(), f.job); !errors.Is(err, ErrFetch) {
		t.Fatalf("a tag of a vanished repository: %v\n%s", err, f.out)
	}
}

// Concurrent builds fetching the same URL wait for one fetch and each get a
// private copy; the cache is never half-written.
func TestFetchCacheConcurrent(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	url := fs.put("/shared.tgz", tarball(t, buildpackFiles("echo S", `echo "export X=1" > "$(dirname "$0")/../export"; echo shared`, ""), "top"), `"e1"`)
	b := quick(Config{FetchCacheDir: t.TempDir()})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := newJob(t, nil)
			f.job.Buildpacks = []string{url}
			if _, err := b.Build(context.Background(), f.job); err != nil {
				errs <- fmt.Errorf("%v\n%s", err, f.out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := fs.count("/shared.tgz"); n < 1 || n > 8 {
		t.Fatalf("requests = %d", n)
	}
	// No build wrote its export file into the shared entry.
	entries, _ := filepath.Glob(filepath.Join(b.cfg.FetchCacheDir, "*", "tree", "export"))
	if len(entries) != 0 {
		t.Fatalf("a build wrote into the cache: %v", entries)
	}
}

// The cache stays within its bound, evicting the least recently used entry.
func TestFetchCacheEvictsLRU(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	pad := strings.Repeat("#", 3000)
	var urls []string
	for _, name := range []string{"a", "b", "c"} {
		urls = append(urls, fs.put("/"+name+".tgz", tarball(t, map[string]string{
			"bin/detect": "#!/bin/sh\necho " + name + "\n", "bin/compile": "#!/bin/sh\n" + pad + "\n"}, ""), `"`+name+`"`))
	}
	dir := t.TempDir()
	b := quick(Config{FetchCacheDir: dir, FetchCacheSize: 7000})
	build := func(url string) {
		t.Helper()
		f := newJob(t, nil)
		f.job.Buildpacks = []string{url}
		if _, err := b.Build(context.Background(), f.job); err != nil {
			t.Fatalf("%v\n%s", err, f.out)
		}
	}
	build(urls[0])
	build(urls[1])
	// a is used again, so b is the least recently used when c arrives.
	past := time.Now().Add(-time.Hour)
	_ = os.Chtimes(filepath.Join(dir, fetchKey("tarball", urls[1]), "meta.json"), past, past)
	build(urls[0])
	build(urls[2])
	for i, want := range []bool{true, false, true} {
		_, err := os.Stat(filepath.Join(dir, fetchKey("tarball", urls[i]), "tree"))
		if (err == nil) != want {
			t.Errorf("entry %d cached = %v, want %v", i, err == nil, want)
		}
	}
	if n := dirSize(dir); n > 7000 {
		t.Errorf("cache holds %d bytes, bound is 7000", n)
	}
}

// SPEC D2: short names resolve through the operator's map, over the
// built-in heroku/* names; an unknown name says so.
func TestShortNames(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	url := fs.put("/py.tgz", tarball(t, buildpackFiles("echo Python", "echo compiled-python", ""), ""), "")
	local := writeBuildpack(t, "echo Local", "echo compiled-local", "")
	m, err := ParseShortNames([]string{"acme/python=" + url, " acme/local = " + local})
	if err != nil {
		t.Fatal(err)
	}
	b := quick(Config{ShortNames: m})
	for name, want := range map[string]string{"acme/python": "compiled-python", "acme/local": "compiled-local"} {
		f := newJob(t, map[string]string{".buildpacks": name + "\n"})
		if _, err := b.Build(context.Background(), f.job); err != nil || !strings.Contains(f.out.String(), want) ||
			!strings.Contains(f.out.String(), "-----> Using buildpack: "+name+"\n") {
			t.Errorf("%s: %v\n%s", name, err, f.out)
		}
	}
	f := newJob(t, map[string]string{".buildpacks": "acme/cobol\n"})
	_, err = b.Build(context.Background(), f.job)
	if !errors.Is(err, ErrFetch) || !strings.Contains(f.out.String(), "acme/cobol: not a known buildpack name; use its URL (known names: acme/local, acme/python, heroku/") {
		t.Fatalf("unknown name: %v\n%s", err, f.out)
	}
	if DefaultShortNames()["heroku/python"] != "https://github.com/heroku/heroku-buildpack-python.git" {
		t.Fatalf("defaults: %v", DefaultShortNames())
	}
	for _, bad := range []string{"noequals", "=url", "name=", "a#b=url"} {
		if _, err := ParseShortNames([]string{bad}); !errors.Is(err, ErrShortName) {
			t.Errorf("ParseShortNames(%q): %v", bad, err)
		}
	}
}

// A user's buildpack choice (app setting, BUILDPACK_URL, .buildpacks) must
// not name anything on the server: a local directory or repository would be
// copied into their build, a local tarball unpacked. Only http(s), git and
// ssh transports are theirs.
func TestUserCannotNameLocalThings(t *testing.T) {
	t.Parallel()
	dir := writeBuildpack(t, "echo X", "true", "")
	tgz := filepath.Join(t.TempDir(), "bp.tgz")
	if err := os.WriteFile(tgz, tarball(t, buildpackFiles("echo X", "true", ""), ""), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{dir, "file://" + dir, "../../etc", tgz, "file://" + tgz, "ext::sh -c touch% /tmp/pwned"} {
		for _, how := range []string{"setting", "BUILDPACK_URL", ".buildpacks"} {
			f := newJob(t, nil)
			switch how {
			case "setting":
				f.job.Buildpacks = []string{url}
			case "BUILDPACK_URL":
				f.job.Env = map[string]string{"BUILDPACK_URL": url}
			default:
				writeFiles(t, f.job.BuildDir, map[string]string{".buildpacks": url + "\n"})
			}
			_, err := quick(Config{}).Build(context.Background(), f.job)
			if !errors.Is(err, ErrLocalNotAllow) || !strings.Contains(f.out.String(), "local paths are only allowed in the server's configuration") {
				t.Errorf("%s %q: err = %v\n%s", how, url, err, f.out)
			}
		}
	}
}

// SPEC D1: app setting > BUILDPACK_URL > .buildpacks > the server's defaults.
func TestSelectionPrecedence(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	bp := func(name string) string {
		return fs.put("/"+name+".tgz", tarball(t, buildpackFiles("echo "+name, "echo compiled-by-"+name, ""), ""), "")
	}
	setting, envURL, file := bp("setting"), bp("envvar"), bp("file")
	def := writeBuildpack(t, "echo default", "echo compiled-by-default", "")
	for _, tc := range []struct {
		setting, env, file bool
		want               string
	}{
		{true, true, true, "setting"},
		{false, true, true, "envvar"},
		{false, false, true, "file"},
		{false, false, false, "default"},
	} {
		f := newJob(t, nil)
		if tc.setting {
			f.job.Buildpacks = []string{setting}
		}
		if tc.env {
			f.job.Env = map[string]string{"BUILDPACK_URL": envURL}
		}
		if tc.file {
			writeFiles(t, f.job.BuildDir, map[string]string{".buildpacks": file + "\n"})
		}
		res, err := quick(Config{Defaults: []string{def}}).Build(context.Background(), f.job)
		if err != nil || res.Names[0] != tc.want || !strings.Contains(f.out.String(), "compiled-by-"+tc.want) ||
			strings.Count(f.out.String(), "compiled-by-") != 1 {
			t.Errorf("want %s: %v\n%s", tc.want, err, f.out)
		}
	}
}

// SPEC D4.
func TestReadBuildpacksFile(t *testing.T) {
	t.Parallel()
	got, err := ReadBuildpacksFile([]byte("# first the runtime\nhttps://example.com/a.git#v1\n\n   \n  https://example.com/b.tgz  \n#https://example.com/off.git\nheroku/python\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://example.com/a.git#v1", "https://example.com/b.tgz", "heroku/python"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("ReadBuildpacksFile = %q, want %q", got, want)
	}
}

// SPEC B5: an explicitly chosen buildpack that does not detect is named.
func TestExplicitNotCompatible(t *testing.T) {
	t.Parallel()
	fs := newFileServer(t)
	url := fs.put("/picky.tgz", tarball(t, buildpackFiles("echo 'needs a Gemfile' >&2; exit 1", "echo never", ""), ""), "")
	f := newJob(t, nil)
	f.job.Buildpacks = []string{url}
	_, err := quick(Config{}).Build(context.Background(), f.job)
	if !errors.Is(err, ErrNotDetected) || !strings.Contains(f.out.String(), "-----> App not compatible with buildpack: "+url+"\n") ||
		!strings.Contains(f.out.String(), "needs a Gemfile") || strings.Contains(f.out.String(), "never") {
		t.Fatalf("%v\n%s", err, f.out)
	}
}

// gitIn runs git in dir with stdin and returns its output.
func gitIn(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(gitEnv(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// treeBombRepo is a working buildpack repository whose main also holds a
// tree of fan identical subtrees levels+1 deep over one blob of blobSize
// bytes: fan^(levels+1) files from a pack of a few kilobytes.
func treeBombRepo(t *testing.T, dir string, fan, levels, blobSize int) {
	t.Helper()
	writeFiles(t, dir, buildpackFiles("echo Bomb", "echo compiled-bomb", ""))
	_ = os.Chmod(filepath.Join(dir, "bin", "detect"), 0o755)
	_ = os.Chmod(filepath.Join(dir, "bin", "compile"), 0o755)
	gitBuildpack(t, dir)
	entry := "100644 blob " + gitIn(t, dir, strings.Repeat("x", blobSize), "hash-object", "-w", "--stdin")
	for l := 0; l <= levels; l++ {
		var b strings.Builder
		for i := 0; i < fan; i++ {
			fmt.Fprintf(&b, "%s\tf%d\n", entry, i)
		}
		entry = "040000 tree " + gitIn(t, dir, b.String(), "mktree")
	}
	root := gitIn(t, dir, entry+"\tbomb\n"+gitIn(t, dir, "", "ls-tree", "HEAD")+"\n", "mktree")
	c := gitIn(t, dir, "", "commit-tree", root, "-p", "HEAD", "-m", "bomb")
	gitIn(t, dir, "", "update-ref", "refs/heads/main", c)
}

// Issue 10: a git buildpack was cloned and checked out on the server with no
// bound, where a tarball stops at MaxBuildpackSize. A user's .buildpacks
// naming a public repository holding a tree bomb (ten identical subtrees ten
// levels deep, a tiny pack) made the server write gigabytes into
// DATA/buildpacks until the fetch timed out, three times over, and then
// copy it into the build. Now the tree is measured before a file is
// written: the push is refused with the URL and the limit, once, and
// neither the fetch cache nor the build's directory keeps anything of it.
// (This bomb is 10^4 files of 1 KiB against a 1M bound, so that the code
// before the fix, which fetched it whole, finishes quickly.)
func TestGitBuildpackTreeBombStopsAtTheLimit(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	treeBombRepo(t, filepath.Join(root, "bomb"), 10, 3, 1<<10)
	url := gitHTTPServer(t, root) + "/bomb"
	for _, tc := range []struct {
		name   string
		cached bool
		ref    string
	}{{"uncached", false, ""}, {"cached", true, ""}, {"cached-branch", true, "#main"}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{MaxBuildpackSize: 1 << 20}
			if tc.cached {
				cfg.FetchCacheDir = t.TempDir()
			}
			f := newJob(t, nil)
			f.job.Buildpacks = []string{url + tc.ref}
			_, err := quick(cfg).Build(context.Background(), f.job)
			want := " !     Push rejected, could not fetch buildpack " + url + tc.ref + ": it unpacks to more than 1M of file contents\n"
			if !errors.Is(err, ErrFetch) || !strings.Contains(f.out.String(), want) {
				t.Fatalf("err = %v\n%s\nwant %q (once: not retried)", err, f.out, want)
			}
			left, _ := os.ReadDir(filepath.Join(f.job.WorkDir, "buildpacks"))
			for _, e := range left {
				t.Errorf("the build's buildpacks directory keeps %s", e.Name())
			}
			if tc.cached {
				left, _ := os.ReadDir(cfg.FetchCacheDir)
				for _, e := range left {
					t.Errorf("the fetch cache keeps %s", e.Name())
				}
			}
		})
	}
}

// A git buildpack is written out from the commit's tree, not checked out:
// with every ref form, through the cache and without, the build's copy and
// the cache entry hold exactly the committed files, with their modes and
// symlinks, untouched by the tree's own .gitattributes (export-ignore and
// export-subst are for release archives, not for a buildpack), and no .git
// directory: the repository git fetched into is gone.
func TestGitBuildpackIsTheCommittedTree(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "exact")
	files := buildpackFiles("echo Exact", `echo compiled-$(cat "$(dirname "$0")/../VERSION")`, "")
	files["VERSION"] = "v1"
	files["lib/kept"] = "$Format:%H$\n"
	files[".gitattributes"] = "lib/kept export-ignore export-subst\n"
	writeFiles(t, dir, files)
	_ = os.Chmod(filepath.Join(dir, "bin", "detect"), 0o755)
	_ = os.Chmod(filepath.Join(dir, "bin", "compile"), 0o755)
	if err := os.Symlink("kept", filepath.Join(dir, "lib", "link")); err != nil {
		t.Fatal(err)
	}
	gitBuildpack(t, dir)
	gitRun(t, dir, "tag", "-a", "v1", "-m", "v1")
	v1 := gitRun(t, dir, "rev-parse", "HEAD")
	writeFiles(t, dir, map[string]string{"VERSION": "v2"})
	gitRun(t, dir, "commit", "-qam", "v2")
	url := gitHTTPServer(t, root) + "/exact"

	check := func(t *testing.T, tree, version string) {
		t.Helper()
		got := map[string]string{}
		err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == tree {
				return err
			}
			rel, _ := filepath.Rel(tree, p)
			info, err := d.Info()
			switch {
			case err != nil:
				return err
			case d.IsDir():
				got[rel] = "dir"
			case info.Mode()&fs.ModeSymlink != 0:
				link, _ := os.Readlink(p)
				got[rel] = "-> " + link
			default:
				b, _ := os.ReadFile(p)
				got[rel] = fmt.Sprintf("%v %s", info.Mode().Perm()&0o111 != 0, b)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"bin": "dir", "lib": "dir",
			"bin/detect":     "true " + files["bin/detect"],
			"bin/compile":    "true " + files["bin/compile"],
			"VERSION":        "false " + version,
			"lib/kept":       "false " + files["lib/kept"],
			"lib/link":       "-> kept",
			".gitattributes": "false " + files[".gitattributes"],
		}
		for name, w := range want {
			if got[name] != w {
				t.Errorf("%s: %s is %q, want %q", tree, name, got[name], w)
			}
		}
		var extra []string
		for name := range got {
			if _, ok := want[name]; !ok && !strings.Contains(name, string(filepath.Separator)) {
				extra = append(extra, name)
			}
		}
		if len(extra) > 0 {
			t.Errorf("%s also holds %v", tree, extra)
		}
	}
	for _, cached := range []bool{false, true} {
		cfg := Config{}
		if cached {
			cfg.FetchCacheDir = t.TempDir()
		}
		b := quick(cfg)
		for _, tc := range []struct{ ref, version string }{
			{"", "v2"}, {"#main", "v2"}, {"#v1", "v1"}, {"#" + v1, "v1"}, {"#" + v1[:10], "v1"},
		} {
			t.Run(fmt.Sprintf("cached=%v%s", cached, tc.ref), func(t *testing.T) {
				f := newJob(t, nil)
				f.job.Buildpacks = []string{url + tc.ref}
				if _, err := b.Build(context.Background(), f.job); err != nil || !strings.Contains(f.out.String(), "compiled-"+tc.version) {
					t.Fatalf("%v\n%s", err, f.out)
				}
				check(t, filepath.Join(f.job.WorkDir, "buildpacks", "0"), tc.version)
				if left, _ := filepath.Glob(filepath.Join(f.job.WorkDir, "buildpacks", "*.git")); len(left) > 0 {
					t.Errorf("left behind: %v", left)
				}
				if cached {
					entry := filepath.Join(cfg.FetchCacheDir, fetchKey("git", url, strings.TrimPrefix(tc.ref, "#")), "tree")
					check(t, entry, tc.version)
				}
			})
		}
	}
}
