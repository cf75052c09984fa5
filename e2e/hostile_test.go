package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 10: every byte a pusher sends is hostile. These tests are attacks a
// registered user made with a repository of their own; each one worked
// before the fix.

// peakRSS is the server's high-water resident set in KiB (VmHWM).
func (s *server) peakRSS() int64 {
	s.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				s.t.Fatal(err)
			}
			return n
		}
	}
	s.t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// alive fails the test when the server process has exited.
func (s *server) alive() {
	s.t.Helper()
	select {
	case <-s.done:
		s.t.Fatalf("the server died:\n%s", s.log)
	default:
	}
}

// storeContains reports whether any file under the server's data directory,
// other than skip, contains needle.
func (s *server) storeContains(needle string, skip string) string {
	s.t.Helper()
	found := ""
	_ = filepath.WalkDir(s.data, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == skip || found != "" {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), needle) {
			found = p
		}
		return nil
	})
	return found
}

// The story: a `.buildpacks` that was a symlink to
// ../../../host_keys/ssh_host_ed25519_key printed the server's private host
// key to the pusher, because the server read the file on the host, followed
// the link, and echoed each line as a buildpack URL before checking it. The
// same trick read another app's config vars (with their secrets) and
// /proc/self/environ (the server's AWS credentials). Now the server reads
// only regular files of the push, never through a symlink, and nothing of
// the targets reaches the pusher, the log or any record.
func TestSymlinkedSourceFilesReadNothingOfTheServer(t *testing.T) {
	t.Parallel()
	bp := buildpack(t, "static", "echo Static", "true", "")
	dir := t.TempDir()
	const awsSecret = "AKIAsecretfromtheenvironment"
	srv := startServerIn(t, dir, []string{"AWS_SECRET_ACCESS_KEY=" + awsSecret}, "--buildpacks", bp)
	alice := srv.addUser("alice@example.com", false)

	// Another app with a secret config var.
	other := newApp(t, map[string]string{"index.html": "x"})
	if res := srv.push(alice, other, "victim"); res.code != 0 {
		t.Fatalf("push victim: %s", res)
	}
	const appSecret = "victim-database-password-1234"
	expect(t, srv.run(alice, "config:set", "victim", "DATABASE_PASSWORD="+appSecret), 0, `Set`, `^$`)
	settings := filepath.Join(srv.data, "store", "apps", "victim", "settings.json")
	if b, err := os.ReadFile(settings); err != nil || !strings.Contains(string(b), appSecret) {
		t.Fatalf("the victim's settings are not where the attack expects them (%v): %s", err, b)
	}

	hostKey := filepath.Join(srv.data, "host_keys", "ssh_host_ed25519_key")
	keyBytes, err := os.ReadFile(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	// A line from the middle of the PEM body: no output may contain it.
	keyLines := strings.Split(strings.TrimSpace(string(keyBytes)), "\n")
	keyLine := keyLines[len(keyLines)/2]

	for _, c := range []struct {
		file, target, secret string
	}{
		{".buildpacks", hostKey, keyLine},
		{".buildpacks", "../../../host_keys/ssh_host_ed25519_key", keyLine},
		{".buildpacks", settings, appSecret},
		{".buildpacks", "/proc/self/environ", awsSecret},
		{"Procfile", hostKey, keyLine},
		{".slugignore", "/proc/self/environ", awsSecret},
	} {
		t.Run(c.file+"->"+filepath.Base(c.target), func(t *testing.T) {
			app := newApp(t, map[string]string{"index.html": "hi"})
			if err := os.Symlink(c.target, filepath.Join(app, c.file)); err != nil {
				t.Fatal(err)
			}
			run(t, app, nil, "git", "add", "-A")
			run(t, app, nil, "git", "commit", "-qm", "symlink")
			res := srv.push(alice, app, "thief")
			if res.code == 0 {
				t.Fatalf("push with %s -> %s succeeded:\n%s", c.file, c.target, res)
			}
			if !strings.Contains(res.stderr, c.file+" is a symlink") {
				t.Errorf("the rejection does not say why:\n%s", res)
			}
			if strings.Contains(res.stdout+res.stderr, c.secret) {
				t.Fatalf("the pusher saw the secret of %s:\n%s", c.target, res)
			}
			if strings.Contains(srv.log.String(), c.secret) {
				t.Fatalf("the server log has the secret of %s", c.target)
			}
			skip := ""
			if c.secret == appSecret {
				skip = settings
			}
			if p := srv.storeContains(c.secret, skip); p != "" && p != hostKey {
				t.Fatalf("%s has the secret of %s", p, c.target)
			}
		})
	}
}

// The story: a Procfile that was a symlink to /dev/zero was read whole into
// the server's memory until the kernel killed the server. Now a device is
// never opened: the push is refused and the server's memory stays flat.
func TestDeviceSymlinkDoesNotExhaustTheServer(t *testing.T) {
	t.Parallel()
	bp := buildpack(t, "static", "echo Static", "true", "")
	srv := startServer(t, "--buildpacks", bp)
	alice := srv.addUser("alice@example.com", false)
	before := srv.peakRSS()
	for _, name := range []string{"Procfile", ".slugignore", ".buildpacks"} {
		app := newApp(t, map[string]string{"index.html": "hi"})
		if err := os.Symlink("/dev/zero", filepath.Join(app, name)); err != nil {
			t.Fatal(err)
		}
		run(t, app, nil, "git", "add", "-A")
		run(t, app, nil, "git", "commit", "-qm", "device")
		res := srv.push(alice, app, "zero")
		if res.code == 0 || !strings.Contains(res.stderr, name+" is a symlink") {
			t.Fatalf("push with %s -> /dev/zero: want a rejection naming the symlink, got\n%s", name, res)
		}
		srv.alive()
	}
	if grew := srv.peakRSS() - before; grew > 64<<10 {
		t.Fatalf("the server's peak memory grew by %d KiB", grew)
	}
}

// treeBomb commits, on top of dir's history, a tree of fan identical
// subtrees levels deep over one blob of blobSize bytes: fan^levels files from
// a pack of a few kilobytes that passes fsckObjects.
func treeBomb(t *testing.T, dir string, fan, levels, blobSize int) {
	t.Helper()
	blob := strings.TrimSpace(runIn(t, dir, strings.Repeat("x", blobSize), "git", "hash-object", "-w", "--stdin"))
	entry := "100644 blob " + blob
	for l := 0; l <= levels; l++ {
		var b strings.Builder
		for i := 0; i < fan; i++ {
			fmt.Fprintf(&b, "%s\tf%d\n", entry, i)
		}
		tree := strings.TrimSpace(runIn(t, dir, b.String(), "git", "mktree"))
		entry = "040000 tree " + tree
	}
	top := strings.TrimPrefix(entry, "040000 tree ")
	var b strings.Builder
	fmt.Fprintf(&b, "040000 tree %s\tbomb\n", top)
	b.WriteString(runIn(t, dir, "", "git", "ls-tree", "HEAD"))
	root := strings.TrimSpace(runIn(t, dir, b.String(), "git", "mktree"))
	c := strings.TrimSpace(runIn(t, dir, "", "git", "commit-tree", root, "-p", "HEAD", "-m", "bomb"))
	run(t, dir, nil, "git", "update-ref", "refs/heads/main", c)
}

// runIn runs a command in dir with stdin and returns its stdout.
func runIn(t *testing.T, dir, stdin, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv(os.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// The story: ten levels of ten identical subtrees, a 56 KB pack that passes
// fsckObjects, made the export of the pushed commit grow to 2 GB with no
// bound. Now the export stops at the source limits with a line that says so,
// and leaves no workspace behind.
func TestTreeBombStopsAtTheSourceLimit(t *testing.T) {
	t.Parallel()
	bp := buildpack(t, "static", "echo Static", "true", "")
	srv := startServer(t, "--buildpacks", bp, "--source-limit", "8M", "--source-files-limit", "5000")
	alice := srv.addUser("alice@example.com", false)
	for _, c := range []struct {
		name              string
		fan, levels, blob int
		want              string
	}{
		// 10^8 files of 64 KiB: the byte limit comes first.
		{"bytes", 10, 7, 64 << 10, "more than 8M of file contents"},
		// 10^8 empty files: the file limit comes first.
		{"files", 10, 7, 0, "more than 5000 files and directories"},
	} {
		t.Run(c.name, func(t *testing.T) {
			app := newApp(t, map[string]string{"index.html": "hi"})
			treeBomb(t, app, c.fan, c.levels, c.blob)
			res := srv.push(alice, app, "bomb-"+c.name)
			if res.code == 0 || !strings.Contains(res.stderr, c.want) || !strings.Contains(res.stderr, "source limit") {
				t.Fatalf("want a rejection with %q, got\n%s", c.want, res)
			}
			waitFor(t, "the workspace to go", func() bool {
				entries, _ := os.ReadDir(filepath.Join(srv.data, "work"))
				return len(entries) == 0
			})
		})
	}
}

// padRefs points n branches named prefix-N at HEAD, creating or moving them.
func padRefs(t *testing.T, dir, prefix string, n int) {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "update refs/heads/%s-%05d HEAD\n", prefix, i)
	}
	runIn(t, dir, b.String(), "git", "update-ref", "--stdin")
}

// The story: the hook read only the first 2 MiB of ref updates. An attacker
// pushed padding branches that sort before main; git sends updates of refs
// the server already has in the order it advertises them, so the next push,
// moving every padding branch and main, put main past the first 2 MiB, and
// main moved to a commit whose build fails, with no build at all. Now every
// ref line is read and checked, and a push of more than 10,000 updates is
// refused whole.
func TestEveryRefIsChecked(t *testing.T) {
	t.Parallel()
	bp := buildpack(t, "picky", "echo Picky", `[ -f "$1/broken" ] && { echo "this commit is broken"; exit 1; }; true`, "")
	srv := startServer(t, "--buildpacks", bp)
	alice := srv.addUser("alice@example.com", false)
	pushAll := func(app, dir string) result {
		return runResult(t, srv.git(alice, dir, "push", srv.remote(app), "refs/heads/*:refs/heads/*"))
	}

	t.Run("all read", func(t *testing.T) {
		// 9,000 ref lines of 256 bytes: 2.2 MiB before main, under the
		// count bound.
		prefix := "a" + strings.Repeat("p", 155)
		app := newApp(t, map[string]string{"index.html": "hi"})
		padRefs(t, app, prefix, 9_000)
		if res := pushAll("longrefs", app); res.code != 0 {
			t.Fatalf("first push: %s", res)
		}
		commit(t, app, map[string]string{"broken": "yes"}, "broken")
		padRefs(t, app, prefix, 9_000)
		res := pushAll("longrefs", app)
		if res.code == 0 || !strings.Contains(res.stderr, "this commit is broken") {
			t.Fatalf("want main built and rejected, got\n%s", res)
		}
		srv.expectMain(alice, "longrefs", app, "HEAD~1")
	})
	t.Run("too many", func(t *testing.T) {
		app := newApp(t, map[string]string{"index.html": "hi"})
		if res := srv.push(alice, app, "flood"); res.code != 0 {
			t.Fatalf("first push: %s", res)
		}
		commit(t, app, map[string]string{"broken": "yes"}, "broken")
		padRefs(t, app, "a", 10_001)
		res := pushAll("flood", app)
		if res.code == 0 || !strings.Contains(res.stderr, "more than 10000 refs") {
			t.Fatalf("want the flood refused, got\n%s", res)
		}
		srv.expectMain(alice, "flood", app, "HEAD~1")
	})
}

// expectMain checks that the app's main on the server is local's rev.
func (s *server) expectMain(u *user, app, local, rev string) {
	s.t.Helper()
	want := strings.TrimSpace(run(s.t, local, nil, "git", "rev-parse", rev))
	res := runResult(s.t, s.git(u, local, "ls-remote", s.remote(app), "refs/heads/main"))
	if res.code != 0 || !strings.HasPrefix(res.stdout, want) {
		s.t.Fatalf("main on the server is not %s (%s): %s", rev, want, res)
	}
}

// Issue 10 item 2: config vars are bounded per app as on Heroku (64 KB of
// keys and values together); item 8: access:add names only registered users.
func TestConfigAndAccessBounds(t *testing.T) {
	t.Parallel()
	bp := buildpack(t, "static", "echo Static", "true", "")
	srv := startServer(t, "--buildpacks", bp)
	alice := srv.addUser("alice@example.com", false)
	srv.addUser("bob@example.com", false)
	app := newApp(t, map[string]string{"index.html": "hi"})
	if res := srv.push(alice, app, "bounded"); res.code != 0 {
		t.Fatalf("push: %s", res)
	}
	big := strings.Repeat("v", 40<<10)
	expect(t, srv.run(alice, "config:set", "bounded", "A="+big), 0, `Set A`, `^$`)
	expect(t, srv.run(alice, "config:set", "bounded", "B="+big), 1, `^$`, `more than 64 KB`)
	expect(t, srv.run(alice, "config", "bounded", "--json"), 0, `"A"`, `^$`)
	if strings.Contains(srv.run(alice, "config", "bounded").stdout, "B:") {
		t.Fatal("the refused config:set changed the config")
	}
	expect(t, srv.run(alice, "access:add", "bounded", "nobody@example.com"), 1, `^$`, `nobody@example.com has no key registered here`)
	expect(t, srv.run(alice, "access", "bounded"), 0, `alice@example.com`, `^$`)
	if strings.Contains(srv.run(alice, "access", "bounded").stdout, "nobody") {
		t.Fatal("access:add granted an unregistered user")
	}
	expect(t, srv.run(alice, "access:add", "bounded", "bob@example.com"), 0, `bob@example.com may now push`, `^$`)
}

// The story: a buildpack's bin/release printed 100 MB of YAML with one key
// repeated; gopkg.in/yaml.v3 allocates quadratically on repeated keys (15 KB
// of output allocated 224 MB) and the server grew to 16 GB. Now the output
// is capped and parsed with bounded memory: the push is refused and the
// server's peak memory grows by less than 64 MiB.
func TestHugeReleaseYAMLLeavesTheServerFlat(t *testing.T) {
	t.Parallel()
	bp := buildpack(t, "yamlbomb", "echo Bomb", "true",
		`printf 'default_process_types:\n'; yes '  web: x' | head -c 100000000`)
	srv := startServer(t, "--buildpacks", bp)
	alice := srv.addUser("alice@example.com", false)
	before := srv.peakRSS()
	app := newApp(t, map[string]string{"index.html": "hi"})
	res := srv.push(alice, app, "yamlbomb")
	if res.code == 0 || !strings.Contains(res.stderr, "bin/release") {
		t.Fatalf("want the release output refused, got\n%s", res)
	}
	srv.alive()
	if grew := srv.peakRSS() - before; grew > 64<<10 {
		t.Fatalf("the server's peak memory grew by %d KiB", grew)
	}
}

// The story: a .slugignore of 14 "**/" segments against a 30-deep directory
// pinned a core in the server for minutes, past the compile timeout and
// after cancel, because matching backtracked over every split. Now matching
// is linear: the push finishes and the server goes back to idle.
func TestSlugignoreDoubleStarBombFinishes(t *testing.T) {
	t.Parallel()
	bp := buildpack(t, "static", "echo Static", "true", "")
	srv := startServer(t, "--buildpacks", bp, "--compile-timeout", "2m")
	alice := srv.addUser("alice@example.com", false)
	deep := strings.Repeat("d/", 30) + "file.txt"
	pattern := strings.Repeat("**/", 14) + "nomatch"
	app := newApp(t, map[string]string{"index.html": "hi", deep: "x", ".slugignore": pattern + "\n"})
	res := srv.push(alice, app, "globbomb")
	if res.code != 0 {
		t.Fatalf("push: %s", res)
	}
	// Idle: the server's CPU time stops growing (sampled until two readings
	// 200ms apart differ by less than 50ms of CPU; the guard fails the test
	// if that never happens).
	last := srv.cpuTicks()
	waitFor(t, "the server's CPU to return to idle", func() bool {
		time.Sleep(200 * time.Millisecond)
		now := srv.cpuTicks()
		idle := now-last < 5 // ticks of 10ms
		last = now
		return idle
	})
}

// cpuTicks is the server's user+system CPU time in clock ticks.
func (s *server) cpuTicks() int64 {
	s.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		s.t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}
