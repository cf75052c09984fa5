package proc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunCopiesStdinAndOutput(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), Cmd{
		Argv:   []string{"/bin/sh", "-c", `read x; echo "got $x"; echo oops >&2; env`},
		Env:    []string{"ONLY=this"},
		Stdin:  strings.NewReader("hello\n"),
		Stdout: &out, Stderr: &errOut,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "got hello\n") || errOut.String() != "oops\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errOut.String())
	}
	// The environment is exactly what we gave (sh adds PWD, SHLVL and _).
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
		name, _, _ := strings.Cut(line, "=")
		if name != "ONLY" && name != "PWD" && name != "SHLVL" && name != "_" {
			t.Errorf("unexpected variable %s", line)
		}
	}
}

func TestRunExitCode(t *testing.T) {
	t.Parallel()
	err := Run(context.Background(), Cmd{Argv: []string{"/bin/sh", "-c", "exit 7"}})
	if ExitCode(err) != 7 {
		t.Fatalf("err = %v", err)
	}
	if err := Run(context.Background(), Cmd{Argv: []string{"/nonexistent"}}); err == nil || ExitCode(err) != -1 {
		t.Fatalf("missing binary: %v", err)
	}
}

// DESIGN rule 6: cancel kills the whole group, including a grandchild holding
// the output pipe, and Run returns promptly instead of waiting for it.
func TestRunCancelKillsGroup(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Cmd{Argv: []string{"/bin/sh", "-c", "sleep 1000 & echo $! > " + pidFile + "; wait"}})
	}()
	waitFor(t, func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run returned before cancel: %v", err)
		default:
		}
		// The shell creates the file before writing the pid into it.
		b, _ := os.ReadFile(pidFile)
		return strings.HasSuffix(string(b), "\n")
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel = %v", err)
	}
	assertDead(t, pidFile)
}

// A child that exits but leaves a background process holding stdout does not
// make Run hang, and the leftover dies.
func TestRunKillsLeftovers(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	var out bytes.Buffer
	if err := Run(context.Background(), Cmd{Argv: []string{"/bin/sh", "-c", "sleep 1000 & echo $! > " + pidFile + "; echo done"}, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "done\n" {
		t.Fatalf("out = %q", out.String())
	}
	assertDead(t, pidFile)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func assertDead(t *testing.T, pidFile string) {
	t.Helper()
	var pid int
	waitFor(t, func() bool {
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	})
	waitFor(t, func() bool {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err == nil && strings.Contains(string(st), ") Z ")
	})
}
