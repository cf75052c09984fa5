package e2e

import (
	"strings"
	"testing"
)

// Issue 2's rejection table: anything but an allowed git verb on a well-formed
// app name is refused before any git process starts — as a git ERR pkt-line for
// git verbs (the client prints "fatal: remote error: …"), otherwise one line on
// stderr — with exit status 1.
func TestCommandRejectionTable(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--buildpacks", buildpack(t, "ok", "echo Ok", "true", ""))
	u := srv.addUser("alice@example.com", false)
	for _, tc := range []struct {
		command string
		stdout  string // the ERR pkt-line, for git verbs
		stderr  string
	}{
		{"git-receive-pack 'My_App.git'", `ERR "My_App.git" is not an app name`, ""},
		{"git-receive-pack '../../etc/passwd'", `ERR "../../etc/passwd" is not an app name`, ""},
		{"git-receive-pack '/srv/../app.git'", `is not an app name`, ""},
		{"git-receive-pack 'a.git'", `ERR "a.git" is not an app name`, ""},
		{"git-receive-pack 'app.git' 'other.git'", "ERR git-receive-pack takes exactly one repository", ""},
		{"git-receive-pack", "ERR git-receive-pack takes exactly one repository", ""},
		{"git-upload-archive 'app.git'", "ERR git-upload-archive is not supported here", ""},
		{"git-receive-pack 'app.git; rm -rf /'", "is not an app name", ""},
		{"git-receive-pack '$(id).git'", "is not an app name", ""},
		{"git receive-pack 'UPPER'", `ERR "UPPER" is not an app name`, ""},
		{"git-upload-pack 'never-pushed.git'", "ERR no such app: never-pushed", ""},
		{"rm -rf /", "", `sokoban: unknown command "rm"`},
		{"sh -c id", "", `sokoban: unknown command "sh"`},
		{"whoami 'unterminated", "", "sokoban: cannot parse the command"},
	} {
		res := runResult(t, srv.ssh(u, tc.command))
		if res.code != 1 || !strings.Contains(res.stdout, tc.stdout) || !strings.Contains(res.stderr, tc.stderr) {
			t.Errorf("%q:\n%s", tc.command, res)
		}
		if tc.stdout == "" && res.stdout != "" {
			t.Errorf("%q wrote to stdout: %q", tc.command, res.stdout)
		}
	}
	// The forms git really sends are accepted (they reach git: clone of a
	// pushed app works with both URL styles).
	app := newApp(t, map[string]string{"x": "y"})
	if res := runResult(t, srv.git(u, app, "push", srv.remote("forms"), "main")); res.code != 0 {
		t.Fatalf("push:\n%s", res)
	}
	for _, url := range []string{srv.remote("forms"), "ssh://git@127.0.0.1:" + srv.port + "/forms", "git@127.0.0.1:forms.git"} {
		cmd := srv.git(u, t.TempDir(), "clone", "-q", url, "c")
		if strings.HasPrefix(url, "git@") {
			// scp-style URLs cannot carry a port; pass it to ssh instead.
			cmd.Env = append(cmd.Env[:len(cmd.Env)-1], "GIT_SSH_COMMAND=ssh "+strings.Join(srv.sshArgs(u), " "))
		}
		if res := runResult(t, cmd); res.code != 0 {
			t.Errorf("clone %s:\n%s", url, res)
		}
	}
	// A git client sees the refusal as a remote error.
	res := runResult(t, srv.git(u, app, "push", "ssh://git@127.0.0.1:"+srv.port+"/Bad_Name.git", "main"))
	if res.code == 0 || !strings.Contains(res.stderr, `fatal: remote error: "/Bad_Name.git" is not an app name`) {
		t.Fatalf("git push to a bad name:\n%s", res)
	}
}
