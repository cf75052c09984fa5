package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// sshOut runs an SSH command as u and returns its result.
func (s *server) run(u *user, args ...string) result {
	s.t.Helper()
	return runResult(s.t, s.ssh(u, args...))
}

func expect(t *testing.T, res result, code int, stdout, stderr string) {
	t.Helper()
	if res.code != code || !regexp.MustCompile(stdout).MatchString(res.stdout) || !regexp.MustCompile(stderr).MatchString(res.stderr) {
		t.Fatalf("want exit %d, stdout ~ %q, stderr ~ %q; got\n%s", code, stdout, stderr, res)
	}
}

// Issue 4: every operating command over real ssh, with its failure lines
// (SPEC H4: one line on stderr, exit 1, nothing changed).
func TestOperatingCommands(t *testing.T) {
	t.Parallel()
	bp := buildpack(t, "envy", "echo Envy", `for f in "$3"/*; do [ -f "$f" ] && echo "env $(basename "$f")=$(cat "$f")"; done; true`, "")
	srv := startServer(t, "--buildpacks", bp)
	admin := srv.addUser("root@example.com", true)
	olive := srv.addUser("olive@example.com", false)
	carl := srv.addUser("carl@example.com", false)
	eve := srv.addUser("eve@example.com", false)

	app := newApp(t, map[string]string{"x": "y"})
	if res := runResult(t, srv.git(olive, app, "push", srv.remote("shop"), "main")); res.code != 0 {
		t.Fatalf("first push:\n%s", res)
	}

	// Before it exists, nobody (but an admin) can touch an app, so no one can
	// preset config for someone else's first push.
	expect(t, srv.run(eve, "config:set", "future", "BUILDPACK_URL=https://evil.example/bp"), 1, `^$`, `^sokoban: no such app: future\n$`)

	expect(t, srv.run(olive, "apps"), 0, `shop\s+olive@example.com\s+owner`, `^$`)
	expect(t, srv.run(eve, "apps"), 0, `No apps yet`, `^$`)
	expect(t, srv.run(admin, "apps", "--json"), 0, `"name": "shop"`, `^$`)

	// Config vars reach the next build's ENV_DIR (SPEC C3).
	expect(t, srv.run(olive, "config:set", "shop", "GREETING='hello world'", "MODE=prod"), 0, `Set GREETING, MODE on shop`, `^$`)
	expect(t, srv.run(olive, "config", "shop"), 0, `GREETING:\s+hello world\nMODE:\s+prod`, `^$`)
	expect(t, srv.run(olive, "config:unset", "shop", "MODE", "NOPE"), 0, `Unset MODE on shop.\nNot set, nothing to do: NOPE.`, `^$`)
	expect(t, srv.run(olive, "config", "shop", "--json"), 0, `"GREETING": "hello world"`, `^$`)
	expect(t, srv.run(olive, "config:set", "shop", "1BAD=x"), 1, `^$`, `KEY made of letters`)
	commit(t, app, map[string]string{"x": "z"}, "second")
	if res := runResult(t, srv.git(olive, app, "push", srv.remote("shop"), "main")); res.code != 0 || !strings.Contains(res.stderr, "env GREETING=hello world") || strings.Contains(res.stderr, "env MODE") {
		t.Fatalf("push after config:set:\n%s", res)
	}

	// Access: strangers see nothing, collaborators work, only owners manage.
	expect(t, srv.run(eve, "config", "shop"), 1, `^$`, `^sokoban: no such app: shop\n$`)
	expect(t, srv.run(eve, "access:add", "shop", "eve@example.com"), 1, `^$`, `no such app: shop`)
	expect(t, srv.run(olive, "access:add", "shop", "carl@example.com"), 0, `carl@example.com may now push shop`, `^$`)
	expect(t, srv.run(carl, "access", "shop"), 0, `olive@example.com\s+owner\ncarl@example.com\s+collaborator`, `^$`)
	expect(t, srv.run(carl, "access:add", "shop", "eve@example.com"), 1, `^$`, `no such app: shop`)
	expect(t, srv.run(olive, "access:remove", "shop", "olive@example.com"), 1, `^$`, `owner cannot be removed`)
	if res := runResult(t, srv.git(eve, app, "push", srv.remote("shop"), "main")); res.code == 0 || !strings.Contains(res.stderr, "fatal: remote error: no such app: shop") {
		t.Fatalf("stranger's push:\n%s", res)
	}

	// Releases, newest first, with the JSON contract.
	expect(t, srv.run(carl, "releases", "shop"), 0, `\*\s+v2\s+.*olive@example.com\s+[0-9a-f]{7}\s+Deploy [0-9a-f]{7}\n\s+v1`, `^$`)
	var rels []map[string]any
	res := srv.run(carl, "releases", "shop", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &rels); err != nil || len(rels) != 2 || rels[0]["version"] != 2.0 || rels[0]["current"] != true {
		t.Fatalf("releases --json: %v\n%s", err, res)
	}
	for _, field := range []string{"version", "slug", "commit", "checksum", "process_types", "user", "description", "created_at", "current"} {
		if _, ok := rels[0][field]; !ok {
			t.Errorf("releases --json lacks %q", field)
		}
	}

	// Buildpacks: a user may not name server paths.
	expect(t, srv.run(olive, "buildpacks", "shop"), 0, `no buildpacks set`, `^$`)
	expect(t, srv.run(olive, "buildpacks:set", "shop", "/etc"), 1, `^$`, `not a buildpack URL`)
	// Issue 10: the URL is printed back by `buildpacks APP`; an escape
	// sequence in it (OSC 52 writes the reader's clipboard) is refused.
	expect(t, srv.run(olive, "buildpacks:set", "shop", "https://x.example/\x1b]52;c;aGk=\x07"), 1, `^$`, `only printable characters`)
	expect(t, srv.run(olive, "buildpacks:set", "shop", "https://example.com/a.git#v1", "heroku/python"), 0, `1. https://example.com/a.git#v1\n2. heroku/python`, `^$`)
	expect(t, srv.run(olive, "buildpacks", "shop", "--json"), 0, `"heroku/python"`, `^$`)
	expect(t, srv.run(olive, "buildpacks:clear", "shop"), 0, `auto-detect again`, `^$`)

	// Status and logs of finished builds.
	expect(t, srv.run(carl, "status", "shop"), 0, `No builds running.\n\nRecent:\n\s+APP\s+BUILD\s+USER\s+RESULT\s+DURATION\s+RELEASE\n\s+shop\s+\S+\s+olive@example.com\s+succeeded\s+\S+\s+v2`, `^$`)
	expect(t, srv.run(carl, "logs", "shop"), 0, `(?s)Build ID: .*env GREETING=hello world.*Released v2\n-----> Build \S+ succeeded\n$`, `^$`)
	expect(t, srv.run(carl, "logs", "shop", "20991231T235959.000Z-abcdef"), 1, `^$`, `shop has no build 20991231T235959.000Z-abcdef`)
	expect(t, srv.run(carl, "logs", "shop", "../../etc"), 1, `^$`, `is not a build id`)
	expect(t, srv.run(carl, "cancel", "shop"), 1, `^$`, `^sokoban: no build of shop is running\n$`)

	// Keys: users see their own, admins manage.
	expect(t, srv.run(carl, "keys"), 0, `carl@example.com\s+ssh-ed25519\s+SHA256:\S+\s+user`, `^$`)
	if res := srv.run(carl, "keys"); strings.Contains(res.stdout, "olive") {
		t.Fatalf("carl sees other users' keys:\n%s", res)
	}
	expect(t, srv.run(carl, "keys:add", "dave@example.com"), 1, `^$`, `keys:add is for admins only`)
	dave := srv.newKey("dave@example.com")
	add := srv.ssh(admin, "keys:add", "dave@example.com")
	pub, _ := os.ReadFile(dave.key + ".pub")
	add.Stdin = strings.NewReader(string(pub))
	expect(t, runResult(t, add), 0, `Added ssh-ed25519 key SHA256:\S+ for dave@example.com \(user\)`, `^$`)
	waitFor(t, "dave's key", func() bool { return srv.run(dave, "whoami").code == 0 })
	fp := regexp.MustCompile(`SHA256:\S+`).FindString(srv.run(dave, "whoami").stdout)
	expect(t, srv.run(admin, "keys:remove", fp), 0, `Removed ssh-ed25519 key `+regexp.QuoteMeta(fp)+` of dave@example.com`, `^$`)
	expect(t, srv.run(admin, "keys:remove", "SHA256:nope"), 1, `^$`, `no key has the fingerprint`)
	expect(t, srv.run(admin, "keys:add", "--heroku"), 1, `^$`, `needs the server in Heroku mode`)

	// Disable / enable (SPEC F4): pushes refused with the reason, clones work.
	expect(t, srv.run(olive, "disable", "shop"), 1, `^$`, `disable is for admins only`)
	expect(t, srv.run(admin, "disable", "shop", "audit", "in", "progress"), 0, `Pushes to shop are now refused \(audit in progress\)`, `^$`)
	commit(t, app, map[string]string{"x": "w"}, "third")
	if res := runResult(t, srv.git(olive, app, "push", srv.remote("shop"), "main")); res.code == 0 || !strings.Contains(res.stderr, "fatal: remote error: Pushes to shop are disabled: audit in progress") {
		t.Fatalf("push to a disabled app:\n%s", res)
	}
	if res := runResult(t, srv.git(olive, t.TempDir(), "clone", "-q", srv.remote("shop"), "c")); res.code != 0 {
		t.Fatalf("clone of a disabled app:\n%s", res)
	}
	expect(t, srv.run(admin, "enable", "shop"), 0, `Pushes to shop are accepted again`, `^$`)
	// Issue 11 item 5: the scope is explicit. A name that is not an app is
	// refused; it used to be read as the first word of a reason and turned
	// off pushes to every app.
	expect(t, srv.run(admin, "disable", "shpo", "typo"), 1, `^$`, `no such app: shpo .*disable --all`)
	if res := runResult(t, srv.git(olive, app, "push", srv.remote("shop"), "main")); res.code != 0 {
		t.Fatalf("push after a refused disable of a typo:\n%s", res)
	}
	expect(t, srv.run(admin, "disable"), 1, `^$`, `usage: disable APP\|--all`)
	expect(t, srv.run(admin, "disable", "--all", "maintenance", "window"), 0, `Pushes to every app are now refused \(maintenance window\)`, `^$`)
	if res := runResult(t, srv.git(olive, app, "push", srv.remote("shop"), "main")); res.code == 0 || !strings.Contains(res.stderr, "fatal: remote error: Pushes are disabled: maintenance window") {
		t.Fatalf("push while disabled server-wide:\n%s", res)
	}
	expect(t, srv.run(admin, "enable", "--all"), 0, `Pushes are accepted again`, `^$`)
	if res := runResult(t, srv.git(olive, app, "push", srv.remote("shop"), "main")); res.code != 0 {
		t.Fatalf("push after enable:\n%s", res)
	}

	// help is generated from the table and hides admin commands from users.
	expect(t, srv.run(olive, "help"), 0, `(?s)status \[APP\] \[--json\]\s+running and recent builds.*logs APP \[BUILD\] \[-f\]`, `^$`)
	if strings.Contains(srv.run(olive, "help").stdout, "keys:add") || !strings.Contains(srv.run(admin, "help").stdout, "keys:add USER [--admin]") {
		t.Fatal("help shows admin commands to users, or hides them from admins")
	}
	expect(t, srv.run(olive, "config:set", "shop"), 1, `^$`, `^sokoban: usage: config:set APP KEY=VALUE...\n$`)
	expect(t, srv.run(olive, "cancel"), 1, `^$`, `^sokoban: usage: cancel APP\n$`)
}

// SPEC H2, issue 4 item 5: cancel from a second connection kills the build's
// process group; the pusher sees who cancelled, the push is rejected, nothing
// is released, the lease is free, and the record says cancelled.
func TestCancelFromSecondConnection(t *testing.T) {
	t.Parallel()
	gates := t.TempDir()
	// --sandbox none: the gated buildpack reports its pids through a host path.
	srv := startServer(t, "--sandbox", "none", "--buildpacks", gatedBuildpack(t, gates))
	olive := srv.addUser("olive@example.com", false)
	carl := srv.addUser("carl@example.com", false)
	app := newApp(t, map[string]string{"x": "y"})
	// The app exists (with an empty release history) once a branch push lands.
	if res := runResult(t, srv.git(olive, app, "push", srv.remote("stopme"), "main:setup")); res.code != 0 {
		t.Fatalf("setup push:\n%s", res)
	}
	expect(t, srv.run(olive, "access:add", "stopme", "carl@example.com"), 0, `may now push`, `^$`)

	push := srv.git(olive, app, "push", srv.remote("stopme"), "main")
	lines, _ := followPush(t, push)
	waitLine(t, lines, `^remote: first line`)
	compilePID, childPID := readPID(t, gates, "compile.pid"), readPID(t, gates, "child.pid")

	expect(t, srv.run(carl, "status"), 0, `Running:\n\s+APP\s+BUILD\s+USER\s+NODE\s+STAGE\s+ELAPSED\n\s+stopme\s+\S+\s+olive@example.com\s+node-a\s+compiling\s+\d+s`, `^$`)
	expect(t, srv.run(carl, "cancel", "stopme"), 0, `Cancelling build \S+ of stopme \(by olive@example.com on node-a, compiling since \d+s\)...\nBuild \S+ cancelled.`, `^$`)

	waitLine(t, lines, `^remote:  !     Build cancelled by carl@example.com`)
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	err := push.Wait()
	if err == nil || strings.Contains(strings.Join(rest, "\n"), "Released") {
		t.Fatalf("cancelled push: err=%v\n%s", err, strings.Join(rest, "\n"))
	}
	waitGone(t, compilePID)
	waitGone(t, childPID)
	if _, err := os.Stat(filepath.Join(srv.data, "store", "apps", "stopme", "releases")); err == nil {
		t.Fatal("a cancelled push released")
	}
	expect(t, srv.run(carl, "status", "stopme", "--json"), 0, `"status": "cancelled"`, `^$`)
	expect(t, srv.run(carl, "logs", "stopme"), 0, `(?s)first line.*Build cancelled by carl@example.com.*-----> Build \S+ cancelled\n$`, `^$`)
	entries, _ := os.ReadDir(filepath.Join(srv.data, "work"))
	if len(entries) != 0 {
		t.Fatalf("workspace left behind: %v", entries)
	}
	// The lease is free.
	if err := os.WriteFile(filepath.Join(gates, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := runResult(t, srv.git(olive, app, "push", srv.remote("stopme"), "main")); res.code != 0 {
		t.Fatalf("push after cancel:\n%s", res)
	}
}

// SPEC H3: two `logs -f` clients follow one running build from its first line
// to its result, and a follower that started before the push waits for it.
func TestLogsFollowWithTwoClients(t *testing.T) {
	t.Parallel()
	gates := t.TempDir()
	// --sandbox none: the gate is a host path the sandbox hides.
	srv := startServer(t, "--sandbox", "none", "--buildpacks", gatedBuildpack(t, gates))
	olive := srv.addUser("olive@example.com", false)
	app := newApp(t, map[string]string{"x": "y"})
	if res := runResult(t, srv.git(olive, app, "push", srv.remote("tail"), "main:setup")); res.code != 0 {
		t.Fatalf("setup push:\n%s", res)
	}

	type follower struct {
		cmd   *exec.Cmd
		lines <-chan string
	}
	start := func() follower {
		cmd := srv.ssh(olive, "logs", "tail", "-f")
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return follower{cmd, startLines(t, out)}
	}
	early := start() // before the push: waits for the next build

	push := srv.git(olive, app, "push", srv.remote("tail"), "main")
	lines, _ := followPush(t, push)
	waitLine(t, lines, `^remote: first line`)
	late := start() // joins mid-build: replays from the first line

	var wg sync.WaitGroup
	for _, f := range []follower{early, late} {
		waitLine(t, f.lines, `^-----> Following build \S+ of tail by olive@example.com on node-a`)
		waitLine(t, f.lines, `^-----> Build ID: `)
		waitLine(t, f.lines, `^first line`)
	}
	if err := os.WriteFile(filepath.Join(gates, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []follower{early, late} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			waitLine(t, f.lines, `^second line`)
			waitLine(t, f.lines, `^       Released v1`)
			waitLine(t, f.lines, `^-----> Build \S+ succeeded$`)
			for range f.lines {
			}
			if err := f.cmd.Wait(); err != nil {
				t.Errorf("logs -f: %v", err)
			}
		}()
	}
	wg.Wait()
	for range lines {
	}
	if err := push.Wait(); err != nil {
		t.Fatalf("push: %v", err)
	}
}
