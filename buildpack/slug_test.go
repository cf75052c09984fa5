package buildpack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// SPEC E1: .slugignore is applied to the source before any buildpack runs,
// with gitignore-like globs and no negation; .git never reaches the slug.
func TestSlugignore(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", `ls -R "$1" > "$1/seen-by-compile.txt"; mkdir -p "$1/made/tmp"; echo x > "$1/made/tmp/late.psd"`, "")
	f := newJob(t, map[string]string{
		".slugignore": "# comment\n\n*.psd\n/docs\nspec/fixtures/\nlog/\n**/cache/*.bin\n!keep.psd\nassets/**/*.map\n",
		"a.psd":       "", "deep/er/b.psd": "", "keep.psd": "",
		"docs/manual.txt": "", "sub/docs/kept.txt": "",
		"spec/fixtures/big.json": "", "spec/fixtures.txt": "", "fixtures/x": "",
		"log/dev.log": "", "app/log": "a file named log stays: the pattern has a trailing slash",
		"x/cache/a.bin": "", "x/cache/a.txt": "",
		"assets/js/app.js.map": "", "assets/js/app.js": "",
		".git/HEAD": "ref: refs/heads/main", "vendor/lib/.git/HEAD": "x",
		"index.html": "",
	})
	_, err := build(t, Config{Defaults: []string{bp}}, f)
	if err != nil {
		t.Fatalf("%v\n%s", err, f.out)
	}
	out := f.out.String()
	// a.psd, deep/er/b.psd, keep.psd, docs/manual.txt, spec/fixtures/big.json,
	// log/dev.log, x/cache/a.bin, assets/js/app.js.map
	if !strings.Contains(out, "-----> Deleting 8 files matching .slugignore patterns.\n") ||
		!strings.Contains(out, " !     .slugignore line 8: negation (!) is not supported; line ignored.") {
		t.Fatalf("output:\n%s", out)
	}
	files := slugFiles(t, f.slug.Bytes())
	for _, gone := range []string{"a.psd", "deep/er/b.psd", "keep.psd", "docs/manual.txt", "spec/fixtures/big.json",
		"log/dev.log", "x/cache/a.bin", "assets/js/app.js.map", ".git/HEAD", "vendor/lib/.git/HEAD"} {
		if _, ok := files["./app/"+gone]; ok {
			t.Errorf("%s is in the slug", gone)
		}
	}
	for _, kept := range []string{"sub/docs/kept.txt", "spec/fixtures.txt", "fixtures/x", "app/log", "x/cache/a.txt",
		"assets/js/app.js", "index.html", ".slugignore", "made/tmp/late.psd"} {
		if _, ok := files["./app/"+kept]; !ok {
			t.Errorf("%s is missing from the slug", kept)
		}
	}
	// Applied before compile: the buildpack never saw the ignored files.
	if seen := files["./app/seen-by-compile.txt"]; strings.Contains(seen, "a.psd") || !strings.Contains(seen, "index.html") {
		t.Errorf("compile saw:\n%s", seen)
	}
}

// .slugignore removes symlinks, never what they point to.
func TestSlugignoreDoesNotFollowSymlinks(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newJob(t, map[string]string{".slugignore": "link\n"})
	if err := os.Symlink(outside, filepath.Join(f.job.BuildDir, "link")); err != nil {
		t.Fatal(err)
	}
	n, err := applySlugignore(context.Background(), f.job.BuildDir, []byte("link\n"), func(string, ...any) {})
	if err != nil || n != 1 {
		t.Fatalf("applySlugignore = %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "precious")); err != nil {
		t.Fatal("removed a file through a symlink")
	}
}

func TestIgnoreRuleMatching(t *testing.T) {
	t.Parallel()
	rules, _, _ := parseSlugignore([]byte("*.log\n/top\nmid/dir\nonly-dir/\na/**/z\n**/deep\n[ab].txt\n"))
	for _, tc := range []struct {
		path  string
		dir   bool
		match bool
	}{
		{"x.log", false, true}, {"a/b/x.log", false, true}, {"x.logs", false, false},
		{"top", true, true}, {"sub/top", true, false},
		{"mid/dir", true, true}, {"x/mid/dir", true, false},
		{"only-dir", true, true}, {"only-dir", false, false}, {"x/only-dir", true, true},
		{"a/z", true, true}, {"a/b/c/z", false, true}, {"b/a/z", false, false},
		{"deep", false, true}, {"x/y/deep", true, true},
		{"a.txt", false, true}, {"c.txt", false, false},
	} {
		got := false
		for _, r := range rules {
			got = got || r.match(tc.path, tc.dir)
		}
		if got != tc.match {
			t.Errorf("%s (dir=%v): match = %v, want %v", tc.path, tc.dir, got, tc.match)
		}
	}
}

// SPEC B7: past the hard limit the slug is refused, not measured: the
// writer never receives more than the limit, and packing stops there.
func TestSlugHardLimitStopsStoring(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", `head -c 200000 /dev/urandom > "$1/blob"`, "")
	f := newJob(t, nil)
	_, err := build(t, Config{Defaults: []string{bp}, SlugSoftLimit: 1 << 10, SlugHardLimit: 64 << 10}, f)
	if !errors.Is(err, ErrSlugTooLarge) {
		t.Fatalf("err = %v\n%s", err, f.out)
	}
	if f.slug.Len() > 64<<10 {
		t.Fatalf("%d bytes reached the slug writer past a 64K limit", f.slug.Len())
	}
	if !strings.Contains(f.out.String(), "\n !     Compiled slug size: more than 64K is too large (max is 64K).\n") {
		t.Fatalf("output:\n%s", f.out)
	}
}

// Issue 10: packing went on past the hard limit "to report the size", so a
// slug of incompressible data cost all its CPU however large it was. Now
// the first write past the limit stops the packing: of two 1 MiB random
// files behind a 64K limit, the second is never read.
func TestPackTarStopsAtPackedLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{"a", "b"} {
		blob := make([]byte, 1<<20)
		_, _ = rand.Read(blob)
		if err := os.WriteFile(filepath.Join(dir, name), blob, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	res, err := packTar(context.Background(), dir, &out, "./app", true, packLimits{packed: 64 << 10})
	var le *PackLimitError
	if !errors.As(err, &le) || le.Packed != 64<<10 || !errors.Is(err, ErrPackTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if out.Len() > 64<<10 || res.Read >= 1<<20 {
		t.Fatalf("wrote %d bytes, read %d past a 64K limit", out.Len(), res.Read)
	}
}

// Issue 10: a buildpack that runs `truncate -s 16T "$1/x"` makes a file that
// takes no disk; gzipping its zeros took the server 16 hours of CPU, and
// zeros compress so well that the compressed bound alone lets ~64 MB be
// read per 64K written. The apparent sizes are summed before any file is
// opened: a 1T sparse file is refused with nothing of it read.
func TestPackTarRefusesSparseFileUnread(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"small": "hello"})
	if err := os.Truncate(sparse(t, dir, "x"), 1<<40); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := packTar(context.Background(), dir, &out, "./app", true, packLimits{packed: 64 << 10, files: 256 << 10})
	var le *PackLimitError
	if !errors.As(err, &le) || le.Files != 256<<10 {
		t.Fatalf("err = %v (read %d)", err, res.Read)
	}
	if res.Read > int64(len("hello")) {
		t.Fatalf("read %d bytes of a sparse file that should not be opened", res.Read)
	}
}

// sparse creates an empty file name in dir and returns its path.
func sparse(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The same attack through a whole build: the push is rejected with the
// line, before the slug writer gets anything of the sparse file.
func TestBuildRejectsSparseSlug(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", `truncate -s 1T "$1/x"`, "")
	f := newJob(t, nil)
	_, err := build(t, Config{Defaults: []string{bp}, SlugHardLimit: 64 << 10}, f)
	if !errors.Is(err, ErrSlugTooLarge) {
		t.Fatalf("err = %v\n%s", err, f.out)
	}
	if !strings.Contains(f.out.String(), "\n !     Compiled slug size: more than 64K is too large (max is 64K); its files add up to more than 256K.\n") {
		t.Fatalf("output:\n%s", f.out)
	}
}

// cancelWriter cancels its context once it has received after bytes, and
// fails if packing writes another MiB after that (a GiB of zeros read):
// without a context check, packing a sparse terabyte would go on for hours.
type cancelWriter struct {
	cancel  context.CancelFunc
	after   int64
	n       int64
	overran bool // packing wrote the extra MiB after cancel
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n > w.after {
		w.cancel()
	}
	if w.n > w.after+1<<20 {
		w.overran = true
		return 0, errors.New("packing went on after the build was cancelled")
	}
	return len(p), nil
}

// Issue 10: packing took no context, so cancelling a build (or a timeout)
// left the server gzipping whatever the buildpack left, to the end. Bounds
// that do not stop a 1T sparse file here (a terabyte hard limit) leave
// cancel as the only way out, in a bare packTar and in a build.
func TestPackingStopsOnCancel(t *testing.T) {
	t.Parallel()
	t.Run("packTar", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := os.Truncate(sparse(t, dir, "x"), 1<<40); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := &cancelWriter{cancel: cancel, after: 1 << 20}
		_, err := packTar(ctx, dir, w, "./app", true, packLimits{})
		if !errors.Is(err, context.Canceled) || w.overran {
			t.Fatalf("err = %v, went on after cancel: %v", err, w.overran)
		}
	})
	t.Run("build", func(t *testing.T) {
		t.Parallel()
		bp := writeBuildpack(t, "echo X", `truncate -s 1T "$1/x"`, "")
		f := newJob(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := &cancelWriter{cancel: cancel, after: 1 << 20}
		f.job.Slug = w
		_, err := New(Config{Defaults: []string{bp}, SlugHardLimit: 1 << 40}).Build(ctx, f.job)
		if !errors.Is(err, context.Canceled) || w.overran {
			t.Fatalf("err = %v, went on after cancel: %v\n%s", err, w.overran, f.out)
		}
	})
}

// SPEC E5: the checksum is the SHA256 of exactly the bytes written (covered
// with the happy path in TestBuildSuccessOutputAndSlug); Pack keeps symlinks
// as links and leaves special files out.
func TestPackKeepsSymlinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"bin/run": "#!/bin/sh\n"})
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	files := slugFiles(t, buf.Bytes())
	if content, ok := files["./app/link"]; !ok || content != "" {
		t.Fatalf("link entry = %q, %v", content, ok)
	}
}

// SPEC C6: CACHE_DIR may start missing, and what compile leaves there is
// there for the next build; PackCache/UnpackCache carry it through stow.
func TestCacheDirPersists(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", `n=$(cat "$2/count" 2>/dev/null || echo 0); echo "build $((n+1)) on this cache"; echo $((n+1)) > "$2/count"; mkdir -p "$2/deps"; ln -sf count "$2/deps/link"`, "")
	cache := filepath.Join(t.TempDir(), "never-created")
	for i, want := range []string{"build 1 on this cache", "build 2 on this cache"} {
		f := newJob(t, nil)
		f.job.CacheDir = cache
		if _, err := build(t, Config{Defaults: []string{bp}}, f); err != nil || !strings.Contains(f.out.String(), want) {
			t.Fatalf("build %d: %v\n%s", i+1, err, f.out)
		}
	}
	var stowed bytes.Buffer
	if err := PackCache(context.Background(), cache, &stowed, 0); err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(t.TempDir(), "restored")
	if err := UnpackCache(bytes.NewReader(stowed.Bytes()), restored); err != nil {
		t.Fatal(err)
	}
	f := newJob(t, nil)
	f.job.CacheDir = restored
	if _, err := build(t, Config{Defaults: []string{bp}}, f); err != nil || !strings.Contains(f.out.String(), "build 3 on this cache") {
		t.Fatalf("restored cache: %v\n%s", err, f.out)
	}
	if link, err := os.Readlink(filepath.Join(restored, "deps", "link")); err != nil || link != "count" {
		t.Fatalf("symlink in the cache: %q, %v", link, err)
	}
	// A truncated or corrupt cache is refused, not half-restored silently.
	if err := UnpackCache(bytes.NewReader(stowed.Bytes()[:stowed.Len()/2]), filepath.Join(t.TempDir(), "x")); err == nil {
		t.Fatal("a truncated cache unpacked without error")
	}
}

// Unpacking never writes outside its directory: not through "..", not through
// a symlink entry, not through a hard link to a file outside.
func TestUntarStaysInside(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, entries := range map[string][]tarEntry{
		"dotdot":        {{name: "../victim", body: "pwned"}},
		"absolute":      {{name: "/" + victim[1:], body: "pwned"}},
		"symlink-dir":   {{name: "out", typ: tar.TypeSymlink, link: outside}, {name: "out/victim", body: "pwned"}},
		"symlink-file":  {{name: "v", typ: tar.TypeSymlink, link: victim}, {name: "v", body: "pwned"}},
		"hardlink":      {{name: "h", typ: tar.TypeLink, link: victim}},
		"hardlink-up":   {{name: "h", typ: tar.TypeLink, link: "../victim"}},
		"link-then-dir": {{name: "d", typ: tar.TypeSymlink, link: outside}, {name: "d/", typ: tar.TypeDir}, {name: "d/victim", body: "pwned"}},
	} {
		dir := filepath.Join(t.TempDir(), "x")
		err := UnpackCache(bytes.NewReader(tarEntries(t, entries)), dir)
		if b, _ := os.ReadFile(victim); string(b) != "original" {
			t.Fatalf("%s: wrote through to %s", name, victim)
		}
		entries, _ := os.ReadDir(outside)
		if len(entries) != 1 {
			t.Fatalf("%s: created files outside: %v", name, entries)
		}
		if name != "symlink-file" && err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A symlink replaced by a file entry is replaced, not written through.
	dir := filepath.Join(t.TempDir(), "x")
	if err := UnpackCache(bytes.NewReader(tarEntries(t, []tarEntry{{name: "v", typ: tar.TypeSymlink, link: victim}, {name: "v", body: "new"}})), dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "v")); string(b) != "new" {
		t.Fatalf("v = %q", b)
	}
}

// SPEC B3 with a Procfile that wins over a default of the same name (C7).
func TestProcfileWinsOverDefaults(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", "true", "printf 'default_process_types:\\n  web: default-web\\n  console: irb\\n'")
	f := newJob(t, map[string]string{"Procfile": "web: mine\n"})
	res, err := build(t, Config{Defaults: []string{bp}}, f)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProcessTypes["web"] != "mine" || res.ProcessTypes["console"] != "irb" {
		t.Fatalf("process types = %v", res.ProcessTypes)
	}
	if !strings.Contains(f.out.String(), "       Procfile declares types     -> web\n       Default types for buildpack -> console, web\n") {
		t.Fatalf("output:\n%s", f.out)
	}
}

// SPEC B8: buildpack output passes through byte for byte, colours and \r
// progress included, under the sandbox as without it.
func TestOutputPassesThroughUntouched(t *testing.T) {
	t.Parallel()
	needBwrap(t)
	for _, mode := range []SandboxMode{SandboxBwrap, SandboxNone} {
		bp := writeBuildpack(t, "echo X", `printf '\033[1;32m-----> Green\033[0m\n'; printf ' 10%%\r 50%%\r100%%\n'; printf 'tab\there\n' >&2; printf 'no newline at the end'`, "")
		f := newJob(t, nil)
		if _, err := build(t, Config{Defaults: []string{bp}, Sandbox: mode}, f); err != nil {
			t.Fatal(err)
		}
		want := "\x1b[1;32m-----> Green\x1b[0m\n 10%\r 50%\r100%\ntab\there\nno newline at the end"
		if !strings.Contains(f.out.String(), want) {
			t.Fatalf("%s: output:\n%q\nwant it to contain\n%q", mode, f.out.String(), want)
		}
	}
}

// The output cap stops forwarding after the limit with one clear line, keeps
// draining so the buildpack never blocks, and the build goes on.
func TestOutputCap(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", `i=0; while [ $i -lt 3000 ]; do echo "line $i of chatter"; i=$((i+1)); done; echo "$1" > /dev/null; touch "$1/finished"`, "")
	f := newJob(t, nil)
	if _, err := build(t, Config{Defaults: []string{bp}, OutputLimit: 10 << 10}, f); err != nil {
		t.Fatalf("%v\n%s", err, f.out)
	}
	out := f.out.String()
	if !strings.Contains(out, "\n !     Build output limit reached (10K); the rest of this build's output is not shown.\n") ||
		strings.Contains(out, "line 2999 of chatter") || !strings.Contains(out, "-----> Compressing...") {
		t.Fatalf("output:\n%s", out[len(out)-600:])
	}
	if _, err := os.Stat(filepath.Join(f.job.BuildDir, "finished")); err != nil {
		t.Fatal("compile did not run to its end")
	}
	// Whole lines only before the notice.
	before, _, _ := strings.Cut(out, " !     Build output limit")
	if !strings.HasSuffix(before, " of chatter\n") {
		t.Fatalf("cut mid-line: %q", before[len(before)-40:])
	}

	var sink bytes.Buffer
	c := newOutputCap(&sink, 8)
	_, _ = c.Write([]byte("abc"))
	_, _ = c.Write([]byte("defghijk"))
	if !strings.HasPrefix(sink.String(), "abc\n !     Build output limit reached") || !c.truncated() {
		t.Fatalf("partial line then cap: %q", sink.String())
	}
}

// The compile timeout names the app and the limit (SPEC E3) under the sandbox.
func TestCompileTimeoutSandboxed(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo Slow", "echo started; sleep 1000", "")
	f := newJob(t, nil)
	_, err := New(Config{Defaults: []string{bp}, CompileTimeout: 500 * 1e6}).Build(context.Background(), f.job)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(f.out.String(), " !     Push rejected, compiling Slow app timed out after 500ms.") {
		t.Fatalf("%v\n%s", err, f.out)
	}
}
