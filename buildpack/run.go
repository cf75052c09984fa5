package buildpack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// proc is one buildpack child, readable in one place: what runs, where, with
// which environment, and where its output goes.
type proc struct {
	argv   []string
	dir    string
	env    []string // the whole environment: nothing is inherited
	stdout io.Writer
	stderr io.Writer // nil: same as stdout
}

// drainGrace bounds how long output copying may go on after the process group
// was killed (only a descendant that escaped the group can hold the pipe).
const drainGrace = 2 * time.Second

// run starts p in its own process group and waits for it. When ctx ends, or
// when the main process exits, the whole group is killed, so nothing a buildpack
// forked (`sleep 1000 &`) outlives its step.
func run(ctx context.Context, p proc) error {
	if len(p.argv) == 0 {
		return errors.New("buildpack: empty command")
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW := outR, outW
	if p.stderr != nil {
		if errR, errW, err = os.Pipe(); err != nil {
			_ = outR.Close()
			_ = outW.Close()
			return err
		}
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdin = nil
	cmd.Stdout = outW
	cmd.Stderr = errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	copies := make(chan struct{}, 2)
	startCopy := func(dst io.Writer, src *os.File) {
		go func() {
			_, _ = io.Copy(dst, src)
			copies <- struct{}{}
		}()
	}
	startErr := cmd.Start()
	// The parent's write ends must close, or the readers never see EOF.
	_ = outW.Close()
	if errW != outW {
		_ = errW.Close()
	}
	if startErr != nil {
		_ = outR.Close()
		if errR != outR {
			_ = errR.Close()
		}
		return fmt.Errorf("start %s: %w", p.argv[0], startErr)
	}
	pgid := cmd.Process.Pid
	nCopies := 1
	startCopy(p.stdout, outR)
	if errR != outR {
		nCopies = 2
		startCopy(p.stderr, errR)
	}

	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	var result error
	select {
	case result = <-waitErr:
	case <-ctx.Done():
		killGroup(pgid)
		result = <-waitErr
		if result == nil {
			result = ctx.Err()
		}
	}
	// Leftover descendants die with their step.
	killGroup(pgid)
	timer := time.NewTimer(drainGrace)
	defer timer.Stop()
	for i := 0; i < nCopies; i++ {
		select {
		case <-copies:
		case <-timer.C:
			// A descendant escaped the group and holds the pipe: stop reading.
			_ = outR.Close()
			if errR != outR {
				_ = errR.Close()
			}
		}
	}
	_ = outR.Close()
	if errR != outR {
		_ = errR.Close()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return result
}

func killGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// exitCode returns the exit status carried by err, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
