package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScripts runs testdata/*.txtar: one user story per file, against the built
// binary with real git and OpenSSH. Commands added for the stories:
//
//	serve [FLAGS...]       start sokoban serve (data in $WORK/data); sets $PORT and $REMOTE
//	user NAME [admin]      make a key pair, register it with `sokoban keys add`, wait until live
//	as NAME                act as NAME from now on: `exec git` and `exec sokoban-ssh` use NAME's key
//
// $EXAMPLES is the repository's examples/ directory. `sokoban-ssh ARGS` runs
// `ssh git@127.0.0.1 ARGS` as the current user.
func TestScripts(t *testing.T) {
	t.Parallel()
	examples, err := filepath.Abs("../examples")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			bin := filepath.Join(env.WorkDir, ".bin")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				return err
			}
			if err := os.Symlink(sokobanBin, filepath.Join(bin, "sokoban")); err != nil {
				return err
			}
			sshOpts := `-o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -i "$WORK/.keys/$SOKOBAN_USER" -p "$PORT"`
			scripts := map[string]string{
				"sokoban-ssh":     "#!/bin/sh\nexec ssh " + sshOpts + " git@127.0.0.1 \"$@\"\n",
				"sokoban-git-ssh": "#!/bin/sh\nexec ssh " + sshOpts + " \"$@\"\n",
			}
			for name, body := range scripts {
				if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
					return err
				}
			}
			env.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			env.Setenv("GIT_SSH_COMMAND", filepath.Join(bin, "sokoban-git-ssh"))
			env.Setenv("GIT_CONFIG_NOSYSTEM", "1")
			env.Setenv("GIT_AUTHOR_NAME", "Test")
			env.Setenv("GIT_AUTHOR_EMAIL", "test@example.com")
			env.Setenv("GIT_COMMITTER_NAME", "Test")
			env.Setenv("GIT_COMMITTER_EMAIL", "test@example.com")
			env.Setenv("EXAMPLES", examples)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"serve": cmdServe,
			"user":  cmdUser,
			"as":    cmdAs,
		},
	})
}

func cmdServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! serve")
	}
	data := ts.MkAbs("data")
	_ = os.Remove(filepath.Join(data, "listen.addr"))
	log, err := os.Create(ts.MkAbs("serve.log"))
	if err != nil {
		ts.Fatalf("%v", err)
	}
	cmd := exec.Command(sokobanBin, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--node", "node-a"}, args...)...)
	cmd.Dir = ts.Getenv("WORK")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + ts.Getenv("WORK")}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		ts.Fatalf("%v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	ts.Defer(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		_ = log.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(ts.MkAbs("serve.log"))
			ts.Fatalf("sokoban serve exited:\n%s", b)
		default:
		}
		if b, err := os.ReadFile(filepath.Join(data, "listen.addr")); err == nil {
			addr := strings.TrimSpace(string(b))
			port := addr[strings.LastIndexByte(addr, ':')+1:]
			ts.Setenv("PORT", port)
			ts.Setenv("REMOTE", "ssh://git@127.0.0.1:"+port)
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("sokoban serve did not start listening")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func cmdUser(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 || (len(args) == 2 && args[1] != "admin") {
		ts.Fatalf("usage: user NAME [admin]")
	}
	name := args[0]
	key := ts.MkAbs(filepath.Join(".keys", name))
	_ = os.MkdirAll(filepath.Dir(key), 0o700)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key).CombinedOutput(); err != nil {
		ts.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	add := []string{"keys", "add", "--data", ts.MkAbs("data")}
	if len(args) == 2 {
		add = append(add, "--admin")
	}
	if out, err := exec.Command(sokobanBin, append(add, name, key+".pub")...).CombinedOutput(); err != nil {
		ts.Fatalf("sokoban keys add: %v\n%s", err, out)
	}
	prev := ts.Getenv("SOKOBAN_USER")
	cmdAs(ts, false, []string{name})
	deadline := time.Now().Add(60 * time.Second)
	for ts.Exec("sokoban-ssh", "whoami") != nil {
		if time.Now().After(deadline) {
			ts.Fatalf("%s's key never became live", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if prev != "" {
		cmdAs(ts, false, []string{prev})
	}
}

func cmdAs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: as NAME")
	}
	if _, err := os.Stat(ts.MkAbs(filepath.Join(".keys", args[0]))); err != nil {
		ts.Fatalf("no user %s (use `user %s` first)", args[0], args[0])
	}
	ts.Setenv("SOKOBAN_USER", args[0])
}
