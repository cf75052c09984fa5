package proc

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

// Cmd is one child process, readable in one place: what runs, where, with which
// environment, and where its input and output go.
type Cmd struct {
	Argv   []string
	Dir    string
	Env    []string  // the whole environment: nothing is inherited
	Stdin  io.Reader // nil: /dev/null
	Stdout io.Writer // nil: discarded
	Stderr io.Writer // nil: same as Stdout
	// Started, if set, is called with the process group id once the child runs.
	Started func(pgid int)
}

// DrainGrace bounds how long output copying may go on after the process group
// was killed; only a descendant that escaped the group can hold a pipe open.
const DrainGrace = 2 * time.Second

// Run starts c in its own process group and waits for it. When ctx ends, or when
// the main process exits, the whole group is killed, so nothing a child forked
// (`sleep 1000 &`) outlives it. Output is copied completely before Run returns.
func Run(ctx context.Context, c Cmd) error {
	if len(c.Argv) == 0 {
		return errors.New("proc: empty command")
	}
	stdout := c.Stdout
	if stdout == nil {
		stdout = io.Discard
	}
	var files []*os.File // our ends, closed on return
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	files = append(files, outR)
	errR, errW := outR, outW
	if c.Stderr != nil {
		if errR, errW, err = os.Pipe(); err != nil {
			_ = outW.Close()
			return err
		}
		files = append(files, errR)
	}
	// Not CommandContext: that kills only the leader. Run kills the whole
	// process group itself when ctx ends.
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...) //nolint:noctx // see above
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdout = outW
	cmd.Stderr = errW
	var inW *os.File
	if c.Stdin != nil {
		var inR *os.File
		if inR, inW, err = os.Pipe(); err != nil {
			_ = outW.Close()
			_ = errW.Close()
			return err
		}
		cmd.Stdin = inR
		defer func() { _ = inR.Close() }()
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	startErr := cmd.Start()
	// The parent's copies of the child's ends must close, or readers never see EOF.
	_ = outW.Close()
	if errW != outW {
		_ = errW.Close()
	}
	if startErr != nil {
		if inW != nil {
			_ = inW.Close()
		}
		return fmt.Errorf("start %s: %w", c.Argv[0], startErr)
	}
	pgid := cmd.Process.Pid
	if c.Started != nil {
		c.Started(pgid)
	}
	if inW != nil {
		// Not waited for: the source (an SSH channel) may block until the client
		// goes away; closing inW after the child exits is enough to free it.
		go func() {
			_, _ = io.Copy(inW, c.Stdin)
			_ = inW.Close()
		}()
	}
	copies := make(chan struct{}, 2)
	copyOut := func(dst io.Writer, src *os.File) {
		go func() {
			_, _ = io.Copy(dst, src)
			copies <- struct{}{}
		}()
	}
	nCopies := 1
	copyOut(stdout, outR)
	if errR != outR {
		nCopies = 2
		copyOut(c.Stderr, errR)
	}

	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	var result error
	select {
	case result = <-waitErr:
	case <-ctx.Done():
		KillGroup(pgid)
		result = <-waitErr
	}
	if inW != nil {
		_ = inW.Close()
	}
	// Leftover descendants die with their step.
	KillGroup(pgid)
	timer := time.NewTimer(DrainGrace)
	defer timer.Stop()
	for i := 0; i < nCopies; i++ {
		select {
		case <-copies:
		case <-timer.C:
			// Stop reading: the deferred Close ends the copies.
			i = nCopies
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return result
}

// KillGroup sends SIGKILL to a whole process group.
func KillGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// ExitCode returns the exit status carried by err, or -1.
func ExitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
