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
	"github.com/sokoban-deploy/sokoban/release"
)

// Build results, as records and `status` show them.
const (
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	StatusRejected  = "rejected"
)

// What a pusher reads when another push got its state in first (issue 11):
// retrying the same push cannot help, merging the other push's work can.
const (
	// MsgReleaseSuperseded follows "Push rejected, nothing was released: ";
	// %d is the version the other push released.
	MsgReleaseSuperseded = "another push released v%d while this one was building; pull its changes and push again."
	// MsgStowSuperseded is the warning when the release stands but the
	// repository could not be stowed over the newer one.
	MsgStowSuperseded = "warning: the repository was not stowed: another push stowed the app's repository while this one ran, so the server keeps that one; pull its changes and push again."
)

// CancelledError is the cause of a push cancelled on purpose.
type CancelledError struct{ By string }

func (e *CancelledError) Error() string { return "build cancelled by " + e.By }

// hookPhase is how far the pre-receive stage got. It only moves forward.
type hookPhase int

const (
	// hookNotCalled: receive-pack has not called the hook (yet); if the push
	// ends now, nobody else tells the pusher why.
	hookNotCalled hookPhase = iota
	// hookRunning: the hook runs and says why if the push ends.
	hookRunning
	// releaseSent: the release request went out, so the push completes even
	// if the pusher goes away (SPEC A12); receive-pack must live to move the
	// refs.
	releaseSent
)

// verdict is the hook's answer to git.
type verdict int

const (
	noVerdict verdict = iota // the hook never answered
	accepted                 // git may move the refs
	rejected                 // the refs stay
)

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

	// What restore found: the app's repository, the stowed manifest it
	// matches (the one the stow step swaps out), its refs, and the release
	// that was current (the Base of the release the build creates).
	repoDir     string
	base        *manifest
	before      map[string]string
	baseVersion int
	work        string
	logFile     *os.File

	mu         sync.Mutex
	stage      string
	stageStart time.Time
	stages     []StageTime
	phase      hookPhase
	verdict    verdict
	status     string
	reason     string
	commit     string
	buildpacks []string
	version    int
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
//
// It reads as DESIGN's flow of a push: each step either succeeds or has told
// the pusher why (a git ERR line) and ends the push; the build and the
// release run inside receive (the pre-receive hook, prereceive.go).
func (r *Receiver) ReceivePack(ctx context.Context, req Request) int {
	r.wg.Add(1)
	defer r.wg.Done()
	track, ok := r.enter()
	if !ok {
		return r.refuseDraining(req)
	}
	defer track.leave()
	p := r.newPush(ctx, req)
	defer p.cancel(nil)
	if !p.gate() { // SPEC F4: disabled apps refuse before anything starts
		return 1
	}
	if !p.takeLease() { // 1
		return 1
	}
	defer p.releaseLease()
	if !p.register() {
		return 1
	}
	defer p.unregister()
	defer track.activate(p)()
	if !p.authorize() {
		return 1
	}
	if !p.restore() { // 2
		return 1
	}
	defer p.removeWorkspace()
	code := p.receive() // 3, with build and release in the hook
	code = p.settle(code)
	p.stow()                                                 // 4
	p.record(context.WithoutCancel(p.ctx), p.logFile.Name()) // 5
	p.log.Info("push finished", "status", p.result(), "exit", code, "duration", time.Since(p.start).Round(time.Millisecond))
	return code
}

func (r *Receiver) newPush(ctx context.Context, req Request) *push {
	id := NewBuildID()
	pctx, cancel := context.WithCancelCause(ctx)
	return &push{r: r, req: req, id: id, start: time.Now(), ctx: pctx, cancel: cancel, client: ctx,
		log:      r.log.With("conn", req.ConnID, "push", id, "app", req.App, "user", req.User.Name),
		hookDone: make(chan struct{}), status: StatusRunning}
}

// refuse ends the push before receive-pack starts, with a git ERR line.
func (p *push) refuse(msg string) bool {
	_ = RefuseGit(p.req.Stdout, msg)
	return false
}

// gate refuses a push to a disabled app (or server) (SPEC F4).
func (p *push) gate() bool {
	msg, err := p.r.pushesDisabled(p.client, p.req.App)
	switch {
	case err != nil:
		p.log.Error("read disable switches", "err", err)
		return p.refuse("the server could not check whether pushes are enabled; try again in a moment")
	case msg != "":
		p.log.Info("push refused: disabled", "reason", msg)
		return p.refuse(msg)
	}
	return true
}

// takeLease takes the app's lease: one push per app (DESIGN rule 8).
func (p *push) takeLease() bool {
	req := p.req
	lease, err := p.r.deps.Leases.Acquire(p.client, req.App, cluster.Holder{User: req.User.Name, Node: p.r.cfg.Node, BuildID: p.id, Since: time.Now()})
	if err == nil {
		p.lease = lease
		return true
	}
	var busy *cluster.BusyError
	switch {
	case errors.As(err, &busy):
		p.log.Info("push refused: app busy", "holder", busy.Holder.User, "holder_node", busy.Holder.Node)
		p.r.metrics.leaseWait()
		return p.refuse(fmt.Sprintf("%s. Wait for it to finish, or stop it with `ssh git@HOST cancel %s`.", busy.Error(), req.App))
	case errors.Is(err, cluster.ErrUnavailable):
		p.log.Error("push refused: lease", "err", err)
		return p.refuse("coordination unavailable: the server cannot reach its coordination service; try again in a moment")
	default:
		p.log.Error("push refused: lease", "err", err)
		return p.refuse("the server could not start this push; try again in a moment")
	}
}

func (p *push) releaseLease() {
	p.cancel(nil)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(p.client), 10*time.Second)
	defer rcancel()
	if err := p.lease.Release(rctx); err != nil {
		p.log.Warn("lease release failed; it expires on its own", "err", err)
	}
}

// register makes the build visible to status, cancel and logs -f on every
// node, and cancels the push when its lease is lost or someone cancels it.
func (p *push) register() bool {
	req := p.req
	running, err := p.r.deps.Registry.Start(p.client, cluster.Build{ID: p.id, App: req.App, User: req.User.Name, Node: p.r.cfg.Node, Stage: "queued"})
	if err != nil {
		p.log.Error("push refused: registry", "err", err)
		return p.refuse("coordination unavailable: the server cannot register the build; try again in a moment")
	}
	p.running = running
	go func() {
		select {
		case <-p.lease.Lost():
			p.log.Error("lease lost mid-push; cancelling")
			p.cancel(leaseLostError{})
		case by := <-running.Cancelled():
			p.log.Info("push cancelled", "by", by)
			p.cancel(&CancelledError{By: by})
		case <-p.ctx.Done():
		}
	}()
	return true
}

func (p *push) unregister() { p.running.Finish(context.WithoutCancel(p.client), p.result()) }

// authorize decides the push under the lease: collaborator access, or
// creating a new app.
func (p *push) authorize() bool {
	p.setStage("queued")
	ok, err := mayPush(p.ctx, p.r.deps.Access, p.req.User, p.req.App)
	if err != nil {
		p.log.Error("access check failed", "err", err)
		return p.refuse("the server could not check your access; try again in a moment")
	}
	if !ok {
		return p.refuse(p.r.deps.Access.NoAccessMessage(p.req.App))
	}
	return true
}

// restore brings the app's repository up to date with stow, claims a new
// app for the pusher, reads the release the build will follow and makes the
// push's workspace.
func (p *push) restore() bool {
	r, req := p.r, p.req
	p.setStage("restoring")
	var err error
	p.repoDir, p.base, err = r.repos.prepare(p.ctx, req.App, true)
	if err != nil {
		p.log.Error("repository unavailable", "err", err)
		msg := "the app's repository could not be restored; try again in a moment"
		if errors.Is(err, ErrCorruptRepo) {
			msg = "the app's stowed repository failed verification and was not replaced; ask an operator to restore it (" + err.Error() + ")"
		}
		return p.refuse(msg)
	}
	if err := r.deps.Access.Claim(p.ctx, req.User, req.App); err != nil {
		p.log.Error("claim app failed", "err", err)
		return p.refuse("the server could not record the app; try again in a moment")
	}
	cur, err := r.deps.Releaser.Current(p.ctx, req.App)
	switch {
	case errors.Is(err, release.ErrNoRelease):
	case err != nil:
		p.log.Error("read current release", "err", err)
		return p.refuse("the app's current release could not be read; try again in a moment")
	default:
		p.baseVersion = cur.Version
	}
	p.work = filepath.Join(r.cfg.DataDir, "work", p.id)
	if err := os.MkdirAll(p.work, 0o700); err != nil {
		p.log.Error("workspace", "err", err)
		return p.refuse("the server could not create a workspace; try again in a moment")
	}
	p.logFile, err = os.OpenFile(filepath.Join(p.work, "output.log"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		p.log.Error("build log", "err", err)
		p.removeWorkspace()
		return p.refuse("the server could not create a workspace; try again in a moment")
	}
	if p.before, err = r.repos.refs(p.ctx, p.repoDir); err != nil {
		p.log.Error("list refs", "err", err)
		p.removeWorkspace()
		return p.refuse("the app's repository could not be read; try again in a moment")
	}
	return true
}

func (p *push) removeWorkspace() {
	if p.logFile != nil {
		_ = p.logFile.Close()
	}
	_ = os.RemoveAll(p.work)
}

// receive runs git receive-pack, whose pre-receive hook calls back into
// preReceive to build and release, and returns its exit status.
func (p *push) receive() int {
	r, req := p.r, p.req
	token := r.hooks.register(func(h hookRequest, w io.Writer) bool {
		return p.preReceive(h, w, p.logFile)
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
	err := proc.Run(gitCtx, proc.Cmd{
		Argv: argv, Dir: p.repoDir, Env: gitEnv(env),
		Stdin: req.Stdin, Stdout: &drainWriter{w: req.Stdout}, Stderr: &drainWriter{w: req.Stderr},
	})
	if err == nil {
		return 0
	}
	p.log.Info("receive-pack ended", "err", err)
	if code := proc.ExitCode(err); code > 0 {
		return code
	}
	return 1
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
	phase := p.hookPhase()
	if phase == releaseSent {
		return
	}
	if p.client.Err() != nil || phase == hookNotCalled {
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

func (p *push) hookPhase() hookPhase {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phase
}

// settle gives the push its result and the exit status: non-zero whenever
// the push was rejected (DESIGN rule 3).
func (p *push) settle(code int) int {
	p.mu.Lock()
	v := p.verdict
	p.mu.Unlock()
	switch {
	case p.ctx.Err() != nil && v != accepted:
		if v == noVerdict {
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
		return 1
	case v == rejected:
		return 1
	case code != 0:
		p.finish(StatusFailed, "git receive-pack failed")
	default:
		p.finish(StatusSucceeded, "")
	}
	return code
}

// stow saves the repository if its refs moved, only after the release
// succeeded (the hook rejects the refs otherwise), and only over the
// manifest the push restored from.
func (p *push) stow() {
	r := p.r
	sctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), r.cfg.StowTimeout)
	defer cancel()
	after, err := r.repos.refs(sctx, p.repoDir)
	if err != nil {
		p.log.Error("list refs after push", "err", err)
		return
	}
	if sameRefs(p.before, after) && !r.repos.unstowed(p.base, after) {
		return // Also stowed when an earlier push's refs never reached stow (SPEC F11).
	}
	p.setStage("stowing")
	_, _ = r.repos.run(sctx, p.repoDir, "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet")
	err = r.repos.save(sctx, p.req.App, p.repoDir, p.base, p.lease.Generation(), p.fence)
	switch {
	case err == nil:
	case errors.Is(err, errStowChanged):
		// Retrying from this node's cache cannot help: stow holds a newer
		// repository, and the next push restores that one.
		p.log.Error("stow repository: another push stowed first", "err", err)
		fmt.Fprintln(p.req.Stderr, MsgStowSuperseded)
	default:
		p.log.Error("stow repository failed; the next push retries", "err", err)
		fmt.Fprintf(p.req.Stderr, "warning: the repository could not be stowed (%v); the next push will retry.\n", err)
	}
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
