package buildpack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A buildpack nobody reviewed runs in the sandbox (DESIGN "Sandbox"): it
// tries to read the server's files and environment and to write outside its
// directories. Every attempt fails, and the build itself still succeeds.
func TestSandboxContainsHostileBuildpack(t *testing.T) {
	needBwrap(t)
	t.Setenv("SOKOBAN_TEST_SECRET", "hunter2-server-env")
	host := t.TempDir()
	secret := filepath.Join(host, "server.env")
	if err := os.WriteFile(secret, []byte("AWS_SECRET_ACCESS_KEY=hunter2-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	// Targets that are harmless should the sandbox ever fail; removed if so.
	usrFile := "/usr/sokoban-pwned-" + self
	etcFile := "/etc/ssl/certs/sokoban-pwned-" + self
	t.Cleanup(func() { _ = os.Remove(usrFile); _ = os.Remove(etcFile) })
	bp := writeBuildpack(t, "echo Hostile", `
try() { if sh -c "$2" >/dev/null 2>&1; then echo "ALLOWED: $1"; else echo "denied: $1"; fi; }
try "read secrets file" "cat `+secret+`"
try "list host dir" "ls `+host+`"
try "read /etc/shadow" "cat /etc/shadow"
try "read server environ" "cat /proc/`+self+`/environ"
try "signal server" "kill -0 `+self+`"
try "write host dir" "echo pwned > `+host+`/pwned"
try "write /usr" "echo pwned > `+usrFile+`"
try "write /etc" "echo pwned > `+etcFile+`"
try "mount" "mkdir -p $HOME/mnt && mount -t tmpfs none $HOME/mnt"
echo "environ of pid 1: $(tr '\0' ' ' < /proc/1/environ)"
echo "my environment: $(env | tr '\n' ' ')"
echo "etc: $(ls /etc | tr '\n' ' ')"
echo "visible pids: $(ls /proc | grep -c '^[0-9]')"
echo ok > "$1/built"; echo ok > "$2/cached"; echo ok > /tmp/scratch; echo ok > "$HOME/home"
`, "")
	f := newJob(t, map[string]string{"index.html": ""})
	if _, err := build(t, Config{Defaults: []string{bp}, Sandbox: SandboxBwrap}, f); err != nil {
		t.Fatalf("the hostile build itself should succeed: %v\n%s", err, f.out)
	}
	out := f.out.String()
	if strings.Contains(out, "ALLOWED") || strings.Count(out, "denied: ") != 9 {
		t.Fatalf("an attempt escaped the sandbox:\n%s", out)
	}
	for _, leak := range []string{"hunter2", "SOKOBAN_TEST_SECRET"} {
		if strings.Contains(out, leak) {
			t.Errorf("%q reached the build:\n%s", leak, out)
		}
	}
	// Only the selected /etc files are there.
	_, etc, _ := strings.Cut(out, "etc: ")
	etc, _, _ = strings.Cut(etc, "\n")
	for _, name := range []string{"shadow", "sokoban", "hostname", "ssh"} {
		if strings.Contains(etc, name) {
			t.Errorf("/etc/%s is visible in the sandbox: %s", name, etc)
		}
	}
	for _, p := range []string{filepath.Join(host, "pwned"), usrFile, etcFile} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("the build wrote %s", p)
		}
	}
	// Its own directories were writable.
	for _, p := range []string{filepath.Join(f.job.BuildDir, "built"), filepath.Join(f.job.CacheDir, "cached")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the build could not write %s", p)
		}
	}
}

// DESIGN "Sandbox": a PID namespace ends every descendant, including ones
// that left the process group with setsid, on cancel, on timeout and when
// compile simply exits. The marker in sleep's argv is found by scanning the
// host's /proc.
func TestSandboxKillsSetsidDescendants(t *testing.T) {
	needBwrap(t)
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		cancel  bool
		exit    bool
	}{
		{"cancel", time.Hour, true, false},
		{"timeout", 2 * time.Second, false, false},
		{"exit", time.Hour, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			marker := uniqueMarker(t)
			tail := "echo started; sleep 1000"
			if tc.exit {
				tail = "echo started; exit 0"
			}
			// The loop waits until sleep runs; [ ] keeps grep from finding itself.
			bp := writeBuildpack(t, "echo X", "setsid sleep "+marker+" >/dev/null 2>&1 < /dev/null &\n"+
				"until cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -q 'sleep[ ]"+marker+"'; do sleep 0.01; done\n"+tail, "")
			f := newJob(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			seen := make(chan struct{})
			go func() {
				defer close(seen)
				for !strings.Contains(f.out.String(), "started") {
					time.Sleep(5 * time.Millisecond)
				}
				for len(markerProcs(marker)) == 0 && !tc.exit {
					time.Sleep(5 * time.Millisecond)
				}
				if tc.cancel {
					cancel()
				}
			}()
			_, err := New(Config{Defaults: []string{bp}, CompileTimeout: tc.timeout, Sandbox: SandboxBwrap}).Build(ctx, f.job)
			<-seen
			switch {
			case tc.cancel && !errors.Is(err, context.Canceled):
				t.Fatalf("err = %v\n%s", err, f.out)
			case tc.timeout < time.Hour && !errors.Is(err, ErrTimeout):
				t.Fatalf("err = %v\n%s", err, f.out)
			case tc.exit && err != nil:
				t.Fatalf("err = %v\n%s", err, f.out)
			}
			waitFor(t, "the setsid'd sleep to die", func() bool { return len(markerProcs(marker)) == 0 })
		})
	}
}

// SPEC C4 and the "a buildpack that runs git itself works": inside
// the sandbox and without it, compile can init, commit and clone with an
// identity it sets, and sees no GIT_* variable of the server's.
func TestBuildpackRunsGit(t *testing.T) {
	t.Setenv("GIT_DIR", "/nonexistent/server.git")
	t.Setenv("GIT_AUTHOR_NAME", "server")
	needBwrap(t)
	for _, mode := range []SandboxMode{SandboxBwrap, SandboxNone} {
		t.Run(string(mode), func(t *testing.T) {
			bp := writeBuildpack(t, "echo Git", `set -e
cd "$1"
mkdir vendored && cd vendored
git init -q -b main
git config user.email bp@example.com && git config user.name Buildpack
echo hi > f && git add f && git commit -qm vendored
cd "$1" && git clone -q vendored clone
git -C clone log --format=%an:%s > "$1/log.txt"`, "")
			f := newJob(t, nil)
			if _, err := build(t, Config{Defaults: []string{bp}, Sandbox: mode}, f); err != nil {
				t.Fatalf("%v\n%s", err, f.out)
			}
			if b, _ := os.ReadFile(filepath.Join(f.job.BuildDir, "log.txt")); string(b) != "Buildpack:vendored\n" {
				t.Fatalf("git log in the build = %q\n%s", b, f.out)
			}
		})
	}
}

// --sandbox=auto falls back to running unconfined when bwrap does not work;
// --sandbox=bwrap then fails builds (and the server refuses to start, see
// cmd/sokoban) instead of running them unconfined.
func TestSandboxModes(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", "echo compiled", "")
	missing := filepath.Join(t.TempDir(), "no-bwrap")

	auto := New(Config{Defaults: []string{bp}, Bwrap: missing})
	if mode, err := auto.Sandbox(); mode != SandboxNone || !errors.Is(err, ErrSandbox) {
		t.Fatalf("auto without bwrap: %s, %v", mode, err)
	}
	f := newJob(t, nil)
	if _, err := auto.Build(context.Background(), f.job); err != nil || !strings.Contains(f.out.String(), "compiled") {
		t.Fatalf("auto without bwrap should build unconfined: %v\n%s", err, f.out)
	}

	strict := New(Config{Defaults: []string{bp}, Bwrap: missing, Sandbox: SandboxBwrap})
	if _, err := strict.Sandbox(); !errors.Is(err, ErrSandbox) {
		t.Fatalf("bwrap mode without bwrap: %v", err)
	}
	f = newJob(t, nil)
	_, err := strict.Build(context.Background(), f.job)
	if !errors.Is(err, ErrSandbox) || strings.Contains(f.out.String(), "compiled") ||
		!strings.Contains(f.out.String(), "build sandbox does not work") {
		t.Fatalf("bwrap mode without bwrap: %v\n%s", err, f.out)
	}

	if mode, err := New(Config{Sandbox: SandboxNone, Bwrap: missing}).Sandbox(); mode != SandboxNone || err != nil {
		t.Fatalf("none: %s, %v", mode, err)
	}
	for in, want := range map[string]SandboxMode{"": SandboxAuto, "auto": SandboxAuto, "bwrap": SandboxBwrap, "none": SandboxNone} {
		if got, err := ParseSandbox(in); got != want || err != nil {
			t.Errorf("ParseSandbox(%q) = %s, %v", in, got, err)
		}
	}
	if _, err := ParseSandbox("docker"); !errors.Is(err, ErrSandboxMode) {
		t.Errorf("ParseSandbox(docker): %v", err)
	}
}

// Paths the operator hides are covered even under a system directory.
func TestSandboxHidesOperatorPaths(t *testing.T) {
	t.Parallel()
	b := New(Config{HideFromSandbox: []string{"/usr/share", "/etc/hostname-not-under-a-system-dir", "/usr/bin/env"}})
	args := strings.Join(b.sandboxArgs(), " ")
	if !strings.Contains(args, "--tmpfs /usr/share") || !strings.Contains(args, "--ro-bind /dev/null /usr/bin/env") {
		t.Fatalf("hidden paths not covered: %s", args)
	}
	if strings.Contains(args, "hostname-not-under") {
		t.Fatalf("a path outside the system directories needs no cover: %s", args)
	}
	for _, leak := range []string{"/etc ", "/etc/ssl/private", "/etc/shadow", "/root", "/home", "/var/lib"} {
		if strings.Contains(args+" ", leak+" ") {
			t.Errorf("the sandbox shows %s: %s", leak, args)
		}
	}
}
