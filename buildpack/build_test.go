package buildpack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

const echoRelease = `cat <<'YAML'
default_process_types:
  web: ./run
YAML`

// SPEC B1, C1, C2, C7, E1, E5: the happy path, in order.
func TestBuildSuccessOutputAndSlug(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, `[ -f "$1/index.html" ] && echo Static`,
		`echo "-----> Installing"; echo built > "$1/built.txt"`, echoRelease)
	f := newJob(t, map[string]string{"index.html": "hi", ".git/config": "x", "Procfile": "worker: ./work\n"})
	res, err := build(t, Config{Defaults: []string{bp}}, f)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, f.out)
	}
	want := []string{
		"-----> Building on the heroku-24 stack",
		"-----> Using buildpack: " + bp,
		"-----> Static app detected",
		"-----> Installing",
		"-----> Discovering process types",
		"       Procfile declares types     -> worker",
		"       Default types for buildpack -> web",
		"-----> Compressing...",
		"       Done: " + Size(res.Slug.Size),
	}
	if got := strings.Split(strings.TrimSpace(f.out.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.ProcessTypes["web"] != "./run" || res.ProcessTypes["worker"] != "./work" {
		t.Fatalf("process types = %v", res.ProcessTypes)
	}
	sum := sha256.Sum256(f.slug.Bytes())
	if res.Slug.Checksum != "SHA256:"+hex.EncodeToString(sum[:]) || res.Slug.Size != int64(f.slug.Len()) {
		t.Fatalf("checksum/size %+v do not match the slug", res.Slug)
	}
	files := slugFiles(t, f.slug.Bytes())
	if files["./app/built.txt"] != "built\n" || files["./app/index.html"] != "hi" {
		t.Fatalf("slug files = %v", keys(files))
	}
	for name := range files {
		if !strings.HasPrefix(name, "./app/") && name != "./app/" {
			t.Errorf("entry %q is not under ./app/", name)
		}
		if strings.Contains(name, ".git/") {
			t.Errorf("slug contains %q", name)
		}
	}
}

// SPEC B3: no Procfile, defaults from bin/release.
func TestBuildWithoutProcfile(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo Go", "true", echoRelease)
	f := newJob(t, map[string]string{"main.go": "package main"})
	if _, err := build(t, Config{Defaults: []string{bp}}, f); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"Procfile declares types     -> (none)", "Default types for buildpack -> web"} {
		if !strings.Contains(f.out.String(), line) {
			t.Errorf("missing %q in\n%s", line, f.out)
		}
	}
}

// SPEC B4: a failing compile names the app type and fails.
func TestBuildCompileFailure(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo Ruby", "echo 'Gemfile.lock missing' >&2; exit 3", "")
	f := newJob(t, map[string]string{"Gemfile": ""})
	_, err := build(t, Config{Defaults: []string{bp}}, f)
	if !errors.Is(err, ErrCompile) {
		t.Fatalf("err = %v", err)
	}
	out := f.out.String()
	if !strings.Contains(out, "Gemfile.lock missing") || !strings.Contains(out, " !     Push rejected, failed to compile Ruby app.") {
		t.Fatalf("output:\n%s", out)
	}
	if strings.Contains(out, "Compressing") {
		t.Fatal("packed a slug after a failed compile")
	}
}

// SPEC B5: nothing detects; an explicit buildpack that does not detect. Only
// detect's stderr is shown.
func TestBuildDetection(t *testing.T) {
	t.Parallel()
	no := writeBuildpack(t, "echo 'not for me' >&2; echo NOPE; exit 1", "true", "")
	f := newJob(t, map[string]string{"x": ""})
	if _, err := build(t, Config{Defaults: []string{no}}, f); !errors.Is(err, ErrNotDetected) {
		t.Fatalf("err = %v", err)
	}
	out := f.out.String()
	if !strings.Contains(out, " !     No default buildpack detected this app.") || !strings.Contains(out, "buildpacks:set") ||
		!strings.Contains(out, "not for me") || strings.Contains(out, "NOPE") {
		t.Fatalf("output:\n%s", out)
	}

	f = newJob(t, map[string]string{"x": ""})
	f.job.Buildpacks = []string{"https://example.invalid/never-fetched"}
	_, err := New(Config{Defaults: []string{no}}).Build(context.Background(), f.job)
	if !errors.Is(err, ErrFetch) || !strings.Contains(f.out.String(), "https://example.invalid/never-fetched") {
		t.Fatalf("explicit unreachable buildpack: %v\n%s", err, f.out)
	}
}

// SPEC B6: several defaults detect; the first is used, with a warning.
func TestBuildSeveralDetect(t *testing.T) {
	t.Parallel()
	a := writeBuildpack(t, "echo Alpha", "echo compiled-by-alpha", "")
	b := writeBuildpack(t, "echo Beta", "echo compiled-by-beta", "")
	f := newJob(t, nil)
	res, err := build(t, Config{Defaults: []string{a, b}}, f)
	if err != nil {
		t.Fatal(err)
	}
	out := f.out.String()
	if res.Names[0] != "Alpha" || !strings.Contains(out, "several buildpacks detected") ||
		!strings.Contains(out, b) || strings.Contains(out, "compiled-by-beta") {
		t.Fatalf("output:\n%s", out)
	}
}

// SPEC C3, C4, C5: ENV_DIR and an environment built from nothing, with and
// without the sandbox (bwrap's own environment must not leak in either).
func TestBuildEnvironment(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "server-secret")
	t.Setenv("GIT_DIR", "/server/repo.git")
	needBwrap(t)
	for _, mode := range []SandboxMode{SandboxBwrap, SandboxNone} {
		t.Run(string(mode), func(t *testing.T) {
			bp := writeBuildpack(t, "echo Env",
				`env | sort > "$1/env.txt"; cat "$3/GREETING" > "$1/greeting.txt"; echo "$1" > "$1/builddir.txt"; ls "$3" > "$1/envdir.txt"`, "")
			f := newJob(t, nil)
			f.job.Env = map[string]string{"GREETING": "hello\nworld", "BINARY": "\x00\xff", "../evil": "x"}
			if _, err := build(t, Config{Defaults: []string{bp}, Sandbox: mode}, f); err != nil {
				t.Fatalf("%v\n%s", err, f.out)
			}
			env, _ := os.ReadFile(filepath.Join(f.job.BuildDir, "env.txt"))
			var names []string
			for _, line := range strings.Split(strings.TrimSpace(string(env)), "\n") {
				name, _, _ := strings.Cut(line, "=")
				names = append(names, name)
			}
			sort.Strings(names)
			// sh adds PWD itself; everything else is ours.
			want := "CURL_CONNECT_TIMEOUT CURL_TIMEOUT HOME LANG PATH PWD REQUEST_ID SOURCE_VERSION STACK"
			if strings.Join(names, " ") != want {
				t.Fatalf("compile environment = %v, want %s", names, want)
			}
			for _, leak := range []string{"server-secret", "GREETING", "GIT_", "/server/repo.git"} {
				if strings.Contains(string(env), leak) {
					t.Fatalf("%q leaked into compile's environment:\n%s", leak, env)
				}
			}
			for _, kv := range []string{"STACK=heroku-24", "SOURCE_VERSION=" + f.job.SourceVersion, "REQUEST_ID=b-test",
				"CURL_CONNECT_TIMEOUT=30", "CURL_TIMEOUT=600", "LANG=en_US.UTF-8"} {
				if !strings.Contains(string(env), kv+"\n") {
					t.Errorf("compile environment lacks %s:\n%s", kv, env)
				}
			}
			if g, _ := os.ReadFile(filepath.Join(f.job.BuildDir, "greeting.txt")); string(g) != "hello\nworld" {
				t.Fatalf("ENV_DIR/GREETING = %q", g)
			}
			if l, _ := os.ReadFile(filepath.Join(f.job.BuildDir, "envdir.txt")); string(l) != "BINARY\nGREETING\n" {
				t.Fatalf("ENV_DIR holds %q", l)
			}
			if d, _ := os.ReadFile(filepath.Join(f.job.BuildDir, "builddir.txt")); strings.TrimSpace(string(d)) == "/app" {
				t.Fatal("BUILD_DIR is /app")
			}
		})
	}
}

// SPEC C6, C7, C8: multi-buildpack from .buildpacks (local git repos, since a
// user's .buildpacks may not name server paths), export files, last release wins.
func TestBuildMultiBuildpack(t *testing.T) {
	t.Parallel()
	first := writeBuildpack(t, "echo First",
		`echo "export FROM_FIRST=yes" > "$(dirname "$0")/../export"; echo cached > "$2/c"`,
		"printf 'default_process_types:\\n  web: first\\n'")
	second := writeBuildpack(t, "echo Second",
		`echo "second sees FROM_FIRST=$FROM_FIRST"; cat "$2/c"`,
		"printf 'default_process_types:\\n  web: second\\n  clock: tick\\n'")
	var urls []string
	for _, dir := range []string{first, second} {
		gitBuildpack(t, dir)
		base := gitHTTPServer(t, filepath.Dir(dir))
		urls = append(urls, base+"/"+filepath.Base(dir)+"#main")
	}
	f := newJob(t, map[string]string{".buildpacks": "# comment\n\n" + strings.Join(urls, "\n") + "\n"})
	res, err := build(t, Config{UserFetchAllow: loopback}, f)
	if err != nil {
		t.Fatalf("%v\n%s", err, f.out)
	}
	out := f.out.String()
	if !strings.Contains(out, "second sees FROM_FIRST=yes") || !strings.Contains(out, "cached") ||
		!strings.Contains(out, "-----> Using buildpacks:\n       1. "+urls[0]+"\n       2. "+urls[1]) {
		t.Fatalf("output:\n%s", out)
	}
	if res.ProcessTypes["web"] != "second" || res.ProcessTypes["clock"] != "tick" {
		t.Fatalf("process types = %v", res.ProcessTypes)
	}
	// The original buildpacks stay untouched: export was written to the copy.
	if _, err := os.Stat(filepath.Join(first, "export")); err == nil {
		t.Fatal("export file written into the operator's buildpack directory")
	}
}

// A user's .buildpacks must not copy a directory of the server into the build.
func TestBuildRefusesUserLocalPaths(t *testing.T) {
	t.Parallel()
	secret := writeBuildpack(t, "echo X", "true", "")
	for _, url := range []string{secret, "file://" + secret, "../../etc"} {
		f := newJob(t, map[string]string{".buildpacks": url + "\n"})
		_, err := build(t, Config{}, f)
		if !errors.Is(err, ErrLocalNotAllow) {
			t.Errorf(".buildpacks %q: err = %v", url, err)
		}
	}
	// `sokoban build` trusts its own directory's .buildpacks.
	f := newJob(t, map[string]string{".buildpacks": secret + "\n"})
	f.job.TrustSource = true
	if _, err := build(t, Config{}, f); err != nil {
		t.Fatalf("trusted source: %v\n%s", err, f.out)
	}
}

// SPEC E4: a malformed Procfile fails before compiling, naming the line.
func TestBuildMalformedProcfile(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", "echo SHOULD-NOT-RUN", "")
	f := newJob(t, map[string]string{"Procfile": "web: ok\nthis is not a process\n"})
	_, err := build(t, Config{Defaults: []string{bp}}, f)
	if !errors.Is(err, ErrProcfile) || !strings.Contains(f.out.String(), "Procfile: line 2") ||
		strings.Contains(f.out.String(), "SHOULD-NOT-RUN") {
		t.Fatalf("err = %v\n%s", err, f.out)
	}
}

// SPEC B7, E2.
func TestBuildSlugLimits(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", `head -c 200000 /dev/urandom > "$1/blob"`, "")
	f := newJob(t, nil)
	if _, err := build(t, Config{Defaults: []string{bp}, SlugSoftLimit: 1 << 10, SlugHardLimit: 1 << 20}, f); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.out.String(), "exceeds the soft limit (1K)") {
		t.Fatalf("no soft-limit warning:\n%s", f.out)
	}
	f = newJob(t, nil)
	_, err := build(t, Config{Defaults: []string{bp}, SlugSoftLimit: 1 << 10, SlugHardLimit: 100 << 10}, f)
	if !errors.Is(err, ErrSlugTooLarge) || !strings.Contains(f.out.String(), "Compiled slug size: more than 100K is too large (max is 100K).") {
		t.Fatalf("err = %v\n%s", err, f.out)
	}
}

// SPEC E3 and DESIGN rule 6: a compile that outlives the timeout, or whose
// build is cancelled, dies with everything it forked.
func TestBuildTimeoutAndCancelKillTheGroup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		cancel  bool
	}{{"timeout", 300 * time.Millisecond, false}, {"cancel", time.Hour, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pidFile := filepath.Join(t.TempDir(), "pid")
			bp := writeBuildpack(t, "echo X", `sleep 1000 & echo $! > `+pidFile+`; echo started; wait`, "")
			f := newJob(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				go func() {
					for !strings.Contains(f.out.String(), "started") {
						time.Sleep(10 * time.Millisecond)
					}
					cancel()
				}()
			}
			// Unsandboxed: the pid file lives in a host directory the sandbox
			// hides. TestSandboxKills* covers the sandboxed case.
			_, err := New(Config{Defaults: []string{bp}, CompileTimeout: tc.timeout, Sandbox: SandboxNone}).Build(ctx, f.job)
			if tc.cancel && !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v", err)
			}
			if !tc.cancel && (!errors.Is(err, ErrTimeout) || !strings.Contains(f.out.String(), "timed out after")) {
				t.Fatalf("err = %v\n%s", err, f.out)
			}
			assertGone(t, pidFile)
		})
	}
}

// A buildpack that leaves a background process behind after a successful
// compile does not keep it alive.
func TestBuildLeftoverProcessesDie(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	bp := writeBuildpack(t, "echo X", `sleep 1000 & echo $! > `+pidFile, "")
	f := newJob(t, nil)
	// Unsandboxed: the pid file lives in a host directory the sandbox hides.
	if _, err := build(t, Config{Defaults: []string{bp}, Sandbox: SandboxNone}, f); err != nil {
		t.Fatal(err)
	}
	assertGone(t, pidFile)
}

func assertGone(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	var pid int
	for _, c := range strings.TrimSpace(string(b)) {
		pid = pid*10 + int(c-'0')
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		// A zombie is dead but not yet reaped by init; treat it as gone.
		if st, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(b)), "stat")); err == nil && strings.Contains(string(st), ") Z ") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d outlived its build", pid)
}

func TestParseProcfile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string // "" means success
	}{
		{"web: bundle exec puma\n# comment\n\nworker:  sidekiq -C x:y\n", ""},
		{"web bundle exec\n", "line 1"},
		{"web: a\nweb: b\n", "line 2"},
		{"we b: x\n", "line 1"},
		{"web:\n", "line 1"},
		{strings.Repeat("a", 129) + ": x", "line 1"},
	} {
		types, err := ParseProcfile([]byte(tc.in))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: err = %v, want %s", tc.in, err, tc.want)
		case tc.want == "" && types["worker"] != "sidekiq -C x:y":
			t.Errorf("%q: types = %v", tc.in, types)
		}
	}
}

// SPEC B2.
func TestSize(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{646: "646B", 1023: "1023B", 1024: "1.0K", 866_000: "845.7K", 69_730_000: "66.5M", 3 << 30: "3.0G"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %s, want %s", n, got, want)
		}
	}
	if Limit(500<<20) != "500M" || Limit(300<<20) != "300M" || Limit(1500) != "1.5K" {
		t.Errorf("Limit: %s %s %s", Limit(500<<20), Limit(300<<20), Limit(1500))
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SPEC B9: a buildpack whose scripts cannot run still gets a reason, not a bare
// "Push failed".
func TestBuildUnrunnableDetect(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", "true", "")
	if err := os.Chmod(filepath.Join(bp, "bin", "detect"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newJob(t, nil)
	_, err := build(t, Config{Defaults: []string{bp}}, f)
	if !errors.Is(err, ErrBroken) || !strings.Contains(f.out.String(), "bin/detect could not run: permission denied") {
		t.Fatalf("err = %v\n%s", err, f.out)
	}
}
