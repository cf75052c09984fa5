package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sokoban-deploy/sokoban/cluster"
	"github.com/sokoban-deploy/sokoban/internal/proc"
	"github.com/sokoban-deploy/sokoban/keys"
)

// Build results, as records and `status` show them.
const (
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	StatusRejected  = "rejected"
)

// CancelledError is the cause of a push cancelled on purpose.
type CancelledError struct{ By string }

func (e *CancelledError) Error() string { return "build cancelled by " + e.By }

// push is the state of one receive-pack run.
type push struct {
	r       *Receiver
	req     Request
	id      string
	log     *slog.Logger
	lease   cluster.Lease
	running cluster.Running
	start   time.Time

	// ctx ends when the client goes away, on cancel, on lease loss or shutdown;
	// client ends only when the client goes away (or the server closes).
	ctx    context.Context
	cancel context.CancelCauseFunc
	client context.Context
	// hookDone is closed when the pre-receive stage has given its verdict.
	hookDone chan struct{}

	repoDir string
	base    *manifest
	work    string

	mu          sync.Mutex
	stage       string
	stageStart  time.Time
	stages      []StageTime
	releaseSent bool
	hookRunning bool
	status      string
	reason      string
	commit      string
	buildpacks  []string
	version     int
	verdict     *bool
}

func (p *push) setStage(stage string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.stage != "" {
		p.stages = append(p.stages, StageTime{Name: p.stage, Seconds: now.Sub(p.stageStart).Seconds()})
	}
	p.stage, p.stageStart = stage, now
	if p.running != nil {
		p.running.SetStage(p.ctx, stage)
	}
}

func (p *push) currentStage() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stage
}

// result is the push's status once it has one.
func (p *push) result() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *push) finish(status, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == "" || p.status == StatusRunning {
		p.status, p.reason = status, reason
	}
}

// ReceivePack serves `git-receive-pack` for req.App and returns the exit status.
// Access to the app was checked by the caller; it is decided again here under
// the lease, where it cannot race with the app's first push.
func (r *Receiver) ReceivePack(ctx context.Context, req Request) int {
	r.wg.Add(1)
	defer r.wg.Done()
	track, ok := r.enter()
	if !ok {
		return r.refuseDraining(req)
	}
	defer track.leave()
	id := NewBuildID()
	log := r.log.With("conn", req.ConnID, "push", id, "app", req.App, "user", req.User.Name)

	// SPEC F4: a disabled app (or server) refuses pushes before anything starts.
	if msg, err := r.pushesDisabled(ctx, req.App); err != nil {
		log.Error("read disable switches", "err", err)
		_ = RefuseGit(req.Stdout, "the server could not check whether pushes are enabled; try again in a moment")
		return 1
	} else if msg != "" {
		log.Info("push refused: disabled", "reason", msg)
		_ = RefuseGit(req.Stdout, msg)
		return 1
	}

	lease, err := r.deps.Leases.Acquire(ctx, req.App, cluster.Holder{User: req.User.Name, Node: r.cfg.Node, BuildID: id, Since: time.Now()})
	if err != nil {
		var busy *cluster.BusyError
		switch {
		case errors.As(err, &busy):
			log.Info("push refused: app busy", "holder", busy.Holder.User, "holder_node", busy.Holder.Node)
			r.metrics.leaseWait()
			_ = RefuseGit(req.Stdout, fmt.Sprintf("%s. Wait for it to finish, or stop it with `ssh git@HOST cancel %s`.", busy.Error(), req.App))
		case errors.Is(err, cluster.ErrUnavailable):
			log.Error("push refused: lease", "err", err)
			_ = RefuseGit(req.Stdout, "coordination unavailable: the server cannot reach its coordination service; try again in a moment")
		default:
			log.Error("push refused: lease", "err", err)
			_ = RefuseGit(req.Stdout, "the server could not start this push; try again in a moment")
		}
		return 1
	}
	pctx, cancel := context.WithCancelCause(ctx)
	p := &push{r: r, req: req, id: id, log: log, lease: lease, start: time.Now(), ctx: pctx, cancel: cancel,
		client: ctx, hookDone: make(chan struct{}), status: StatusRunning}
	defer func() {
		cancel(nil)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := lease.Release(rctx); err != nil {
			log.Warn("lease release failed; it expires on its own", "err", err)
		}
		rcancel()
	}()
	running, err := r.deps.Registry.Start(ctx, cluster.Build{ID: id, App: req.App, User: req.User.Name, Node: r.cfg.Node, Stage: "queued"})
	if err != nil {
		log.Error("push refused: registry", "err", err)
		_ = RefuseGit(req.Stdout, "coordination unavailable: the server cannot register the build; try again in a moment")
		return 1
	}
	p.running = running
	defer func() { running.Finish(context.WithoutCancel(ctx), p.result()) }()
	go func() {
		select {
		case <-lease.Lost():
			log.Error("lease lost mid-push; cancelling")
			cancel(leaseLostError{})
		case by := <-running.Cancelled():
			log.Info("push cancelled", "by", by)
			cancel(&CancelledError{By: by})
		case <-pctx.Done():
		}
	}()
	defer track.activate(p)()
	return p.run()
}

func (p *push) run() int {
	r, req := p.r, p.req
	p.setStage("queued")
	ok, err := mayPush(p.ctx, r.deps.Access, req.User, req.App)
	if err != nil {
		p.log.Error("access check failed", "err", err)
		_ = RefuseGit(req.Stdout, "the server could not check your access; try again in a moment")
		return 1
	}
	if !ok {
		_ = RefuseGit(req.Stdout, keys.NoAccessMessage(r.deps.Access, req.App))
		return 1
	}
	p.setStage("restoring")
	p.repoDir, p.base, err = r.repos.prepare(p.ctx, req.App, true)
	if err != nil {
		p.log.Error("repository unavailable", "err", err)
		msg := "the app's repository could not be restored; try again in a moment"
		if errors.Is(err, ErrCorruptRepo) {
			msg = "the app's stowed repository failed verification and was not replaced; ask an operator to restore it (" + err.Error() + ")"
		}
		_ = RefuseGit(req.Stdout, msg)
		return 1
	}
	if err := r.deps.Access.Claim(p.ctx, req.User, req.App); err != nil {
		p.log.Error("claim app failed", "err", err)
		_ = RefuseGit(req.Stdout, "the server could not record the app; try again in a moment")
		return 1
	}
	p.work = filepath.Join(r.cfg.DataDir, "work", p.id)
	if err := os.MkdirAll(p.work, 0o700); err != nil {
		p.log.Error("workspace", "err", err)
		_ = RefuseGit(req.Stdout, "the server could not create a workspace; try again in a moment")
		return 1
	}
	defer func() { _ = os.RemoveAll(p.work) }()
	logFile, err := os.OpenFile(filepath.Join(p.work, "output.log"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		p.log.Error("build log", "err", err)
		_ = RefuseGit(req.Stdout, "the server could not create a workspace; try again in a moment")
		return 1
	}
	defer func() { _ = logFile.Close() }()

	before, err := r.repos.refs(p.ctx, p.repoDir)
	if err != nil {
		p.log.Error("list refs", "err", err)
		_ = RefuseGit(req.Stdout, "the app's repository could not be read; try again in a moment")
		return 1
	}

	token := r.hooks.register(func(h hookRequest, w io.Writer) bool {
		return p.preReceive(h, w, logFile)
	})
	defer r.hooks.unregister(token)

	// receive-pack dies with the push until the release request has been sent;
	// after that it must live to move the refs (SPEC A12).
	gitCtx, stopGit := context.WithCancel(context.WithoutCancel(p.ctx))
	defer stopGit()
	go p.stopGitWhenDone(gitCtx, stopGit)
	p.setStage("receiving")
	argv := append([]string{r.cfg.Git}, receivePackConfig(r.hdir, r.cfg.MaxInputSize)...)
	argv = append(argv, "receive-pack", p.repoDir)
	env := []string{EnvHookSocket + "=" + r.hooks.path, EnvHookToken + "=" + token}
	if gp := cleanGitProtocol(req.GitProtocol); gp != "" {
		env = append(env, "GIT_PROTOCOL="+gp)
	}
	err = proc.Run(gitCtx, proc.Cmd{
		Argv: argv, Dir: p.repoDir, Env: gitEnv(env),
		Stdin: req.Stdin, Stdout: &drainWriter{w: req.Stdout}, Stderr: &drainWriter{w: req.Stderr},
	})
	code := 0
	if err != nil {
		code = proc.ExitCode(err)
		if code <= 0 {
			code = 1
		}
		p.log.Info("receive-pack ended", "err", err)
	}
	return p.after(before, code, logFile.Name())
}

// stopGitWhenDone kills receive-pack when the push ends early. A client that is
// gone gets no more output, so git dies at once; a push cancelled while its
// build runs first lets the hook tell the pusher why (its build stops at once
// either way).
func (p *push) stopGitWhenDone(gitCtx context.Context, stopGit context.CancelFunc) {
	select {
	case <-p.ctx.Done():
	case <-gitCtx.Done():
		return
	}
	p.mu.Lock()
	sent := p.releaseSent
	p.mu.Unlock()
	if sent {
		return
	}
	if p.client.Err() != nil || !p.hookStarted() {
		stopGit()
		return
	}
	// The hook is saying why; after its verdict receive-pack ends on its own.
	grace := time.NewTimer(30 * time.Second)
	defer grace.Stop()
	select {
	case <-p.hookDone:
	case <-p.client.Done():
		stopGit()
		return
	case <-grace.C:
		stopGit()
		return
	}
	select {
	case <-gitCtx.Done():
	case <-p.client.Done():
		stopGit()
	case <-grace.C:
		stopGit()
	}
}

func (p *push) hookStarted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hookRunning
}

// after stows the repository if refs moved, records the push and settles the
// exit status: non-zero whenever the push was rejected (DESIGN rule 3).
func (p *push) after(before map[string]string, code int, logPath string) int {
	r, ctx := p.r, context.WithoutCancel(p.ctx)
	p.mu.Lock()
	verdict := p.verdict
	p.mu.Unlock()
	switch {
	case p.ctx.Err() != nil && (verdict == nil || !*verdict):
		if verdict == nil {
			// Cancelled before the build started: there is no hook to say it.
			var c *CancelledError
			if errors.As(context.Cause(p.ctx), &c) {
				fmt.Fprintf(p.req.Stderr, " !     Build cancelled by %s\n", c.By)
			} else if p.client.Err() == nil {
				// Lease lost, or the server is restarting: the client is still
				// there to be told why.
				fmt.Fprintf(p.req.Stderr, " !     Push cancelled: %v\n", context.Cause(p.ctx))
			}
		}
		p.finish(StatusCancelled, context.Cause(p.ctx).Error())
		code = 1
	case verdict != nil && !*verdict:
		code = 1
	case code != 0:
		p.finish(StatusFailed, "git receive-pack failed")
	default:
		p.finish(StatusSucceeded, "")
	}
	sctx, cancel := context.WithTimeout(ctx, r.cfg.StowTimeout)
	defer cancel()
	if after, err := r.repos.refs(sctx, p.repoDir); err != nil {
		p.log.Error("list refs after push", "err", err)
	} else if !sameRefs(before, after) || r.repos.unstowed(p.base, after) {
		// Also when an earlier push's refs never reached stow (SPEC F11).
		p.setStage("stowing")
		_, _ = r.repos.run(sctx, p.repoDir, "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet")
		if err := r.repos.save(sctx, p.req.App, p.repoDir, p.base, p.lease.Generation(), p.fence); err != nil {
			p.log.Error("stow repository failed; the next push retries", "err", err)
			fmt.Fprintf(p.req.Stderr, "warning: the repository could not be stowed (%v); the next push will retry.\n", err)
		}
	}
	p.record(ctx, logPath)
	p.log.Info("push finished", "status", p.status, "exit", code, "duration", time.Since(p.start).Round(time.Millisecond))
	return code
}

// drainWriter keeps consuming a child's output after the client went away, so
// git never blocks or dies on a broken pipe while it finishes a released push.
type drainWriter struct {
	w      io.Writer
	failed bool
}

func (d *drainWriter) Write(p []byte) (int, error) {
	if !d.failed {
		if _, err := d.w.Write(p); err != nil {
			d.failed = true
		}
	}
	return len(p), nil
}
