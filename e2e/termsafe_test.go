package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// hostileCompile prints what a hostile buildpack would to take over whoever
// reads its output, between lines a build may print: SGR colours and a `\r`
// progress line. Then it makes the ready file and waits for the gate file, so
// a `logs -f` can join while it runs.
func hostileCompile(ready, gate string) string {
	return `printf '\033[1;32m-----> green\033[0m plain\n'
printf 'osc52 \033]52;c;Y3VybCBldmlsfHNo\007after\n'
printf 'title \033]0;pwned\033\\after\n'
printf 'clear \033[2J\033[Hafter\n'
printf 'reset \033cafter\n'
printf 'dcs \033P$qm\033\\after\n'
printf 'nul \000after\n'
printf 'csi8 \302\2332Jafter\n'
printf 'raw8 \2332Jafter\n'
printf 'progress 10%%\rprogress 100%%\n'
echo "waiting for gate"
: > ` + ready + `
while [ ! -e ` + gate + ` ]; do sleep 0.05; done
echo "gate open"`
}

// hostileRaw are byte strings of hostileCompile's output that the stored log
// keeps and no terminal may get.
var hostileRaw = []string{
	"\x1b]52;c;Y3VybCBldmlsfHNo\x07", "\x1b]0;pwned\x1b\\", "\x1b[2J\x1b[H", "\x1bc", "\x1bP$qm\x1b\\",
	"nul \x00after", "\xc2\x9b2J", "raw8 \x9b2J",
}

// terminalUnsafe says what in out a terminal could act on, or "": out must be
// valid UTF-8 with no control but \t \n \r, and every ESC must begin an SGR.
func terminalUnsafe(out string) string {
	if !utf8.ValidString(out) {
		return "invalid UTF-8"
	}
	sgr := regexp.MustCompile(`^\x1b\[[0-9;:]*m`)
	for i := 0; i < len(out); {
		r, size := utf8.DecodeRuneInString(out[i:])
		switch {
		case r == 0x1b:
			m := sgr.FindString(out[i:])
			if m == "" {
				return fmt.Sprintf("ESC at %d not an SGR: %q", i, out[i:min(i+12, len(out))])
			}
			i += len(m)
			continue
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r', r == 0x7f, r >= 0x80 && r < 0xa0:
			return fmt.Sprintf("control %U at %d", r, i)
		}
		i += size
	}
	return ""
}

// checkTerminalSafe asserts that what reached a terminal (the git push's
// stderr, a `logs` client's stdout) has the colours, the progress line and the
// text around every attack, and nothing a terminal could act on but SGR.
// prefix is what starts each relayed line ("remote: " from git).
func checkTerminalSafe(t *testing.T, what, out, prefix string) {
	t.Helper()
	if why := terminalUnsafe(out); why != "" {
		t.Errorf("%s: %s in:\n%q", what, why, out)
	}
	for _, raw := range hostileRaw {
		if strings.Contains(out, raw) {
			t.Errorf("%s: %q reached the terminal", what, raw)
		}
	}
	// git pads each relayed line with spaces when stderr is not a terminal.
	p := regexp.QuoteMeta(prefix)
	for _, want := range []string{
		p + `\x1b\[1;32m-----> green\x1b\[0m plain *\n`,
		p + `progress 10% *\r` + p + `progress 100% *\n`,
		p + `osc52 after *\n`, p + `title after *\n`, p + `clear after *\n`, p + `reset after *\n`,
		p + `dcs after *\n`, p + `nul after *\n`, p + `csi8 after *\n`, p + "raw8 \uFFFD2Jafter *\n",
		p + `gate open *\n`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("%s: no match for %q in:\n%q", what, want, out)
		}
	}
}

// Issue 10 item 4, SPEC B8: build output reached terminals byte for byte. A
// buildpack (code nobody on the server reviewed) printed OSC 52, and the
// pusher's terminal put the attacker's text on their clipboard, ready to be
// pasted into a shell; OSC 0 retitled their window, CSI 2J and ESC c wiped
// their screen, DCS queries made it answer as if typed. The same bytes reached
// an admin who ran `logs APP` or `logs APP -f` on someone else's build. Now
// the push's `remote:` lines and both kinds of `logs` keep SGR colours, `\r`
// progress and text and drop the rest, while the stored log keeps every byte.
func TestBuildOutputIsTerminalSafe(t *testing.T) {
	t.Parallel()
	gates := t.TempDir()
	ready, gate := filepath.Join(gates, "ready"), filepath.Join(gates, "gate")
	bp := buildpack(t, "hostile", "echo Hostile", hostileCompile(ready, gate), "")
	// --sandbox none: the gate files are host paths the sandbox hides.
	srv := startServer(t, "--sandbox", "none", "--buildpacks", bp)
	mallory := srv.addUser("mallory@example.com", false)
	admin := srv.addUser("root@example.com", true) // reads mallory's build
	app := newApp(t, map[string]string{"x": "y"})

	push := srv.git(mallory, app, "push", srv.remote("hostile"), "main")
	pushErr := &syncBuffer{}
	push.Stderr = pushErr
	if err := push.Start(); err != nil {
		t.Fatal(err)
	}
	pushDone := waitCmd(push)
	// Not the push's stderr: before the fix, git cut a sideband packet at
	// the NUL, so "waiting for gate" might never show there.
	waitFor(t, "the build to print its output", func() bool { _, err := os.Stat(ready); return err == nil })

	// `logs -f` joins the running build: it replays from the first line and
	// follows the live fan-out to the end.
	follow := srv.ssh(admin, "logs", "hostile", "-f")
	followOut := &syncBuffer{}
	follow.Stdout = followOut
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followDone := waitCmd(follow)
	waitFor(t, "logs -f to follow the running build", func() bool {
		s := followOut.String()
		return strings.Contains(s, "-----> Following build ") && strings.Contains(s, "waiting for gate")
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-pushDone; err != nil {
		t.Fatalf("git push: %v\n%q", err, pushErr.String())
	}
	if err := <-followDone; err != nil {
		t.Fatalf("logs -f: %v\n%q", err, followOut.String())
	}
	stderr := pushErr.String()
	checkTerminalSafe(t, "git push", stderr, "remote: ")
	checkTerminalSafe(t, "logs -f", followOut.String(), "")
	if f := followOut.String(); !strings.HasPrefix(f, "-----> Following build ") || !regexp.MustCompile(`\n-----> Build \S+ succeeded\n$`).MatchString(f) {
		t.Errorf("logs -f did not follow to the result:\n%q", followOut.String())
	}

	// The stored build, read back with `logs`.
	res := runResult(t, srv.ssh(admin, "logs", "hostile"))
	if res.code != 0 {
		t.Fatalf("logs:\n%s", res)
	}
	checkTerminalSafe(t, "logs", res.stdout, "")

	// The stored log keeps the raw bytes (the filter is on the way to a
	// terminal, not on the way to storage).
	id := regexp.MustCompile(`Build ID: (\S+)`).FindStringSubmatch(stderr)
	if id == nil {
		t.Fatalf("no build id in:\n%s", stderr)
	}
	stored, err := os.ReadFile(filepath.Join(srv.data, "store", "apps", "hostile", "builds", id[1]+".log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range append(hostileRaw, "\x1b[1;32m-----> green\x1b[0m plain\n", "progress 10%\rprogress 100%\n") {
		if !bytes.Contains(stored, []byte(raw)) {
			t.Errorf("stored log lacks %q:\n%q", raw, stored)
		}
	}
}

// waitCmd waits for a started command in the background, with a guard.
func waitCmd(cmd *exec.Cmd) <-chan error {
	done := make(chan error, 1)
	go func() {
		w := make(chan error, 1)
		go func() { w <- cmd.Wait() }()
		select {
		case err := <-w:
			done <- err
		case <-time.After(3 * time.Minute):
			_ = cmd.Process.Kill()
			done <- fmt.Errorf("%s did not finish", strings.Join(cmd.Args, " "))
		}
	}()
	return done
}
