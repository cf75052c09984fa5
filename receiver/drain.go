package receiver

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Graceful drain (SPEC H5, DESIGN "Drain"): on SIGTERM cmd calls Drain, so new
// pushes are refused while clones and admin commands go on; Wait lets running
// pushes finish; CancelAll stops the rest, and each cancelled push cleans up as
// any cancelled push does (nothing released, lease released, workspace removed).

// MsgRestarting is what a push hears while the server drains.
const MsgRestarting = "server is restarting, try again in a moment"

// drainState is guarded by Receiver.mu.
type drainState struct {
	draining bool
	cause    error         // set by CancelAll: pushes that get a lease later are cancelled at once
	inflight int           // receive-packs between enter and leave
	changed  chan struct{} // closed and replaced whenever inflight or active changes
}

// Drain makes the receiver refuse new pushes with MsgRestarting. Pushes already
// running go on; clones are still served. It cannot be undone: a drained
// receiver is about to stop.
func (r *Receiver) Drain() {
	r.mu.Lock()
	r.drain.draining = true
	r.notifyLocked()
	r.mu.Unlock()
}

// Draining reports whether Drain was called.
func (r *Receiver) Draining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drain.draining
}

// Active is the number of builds running on this node: pushes that hold their
// app's lease.
func (r *Receiver) Active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.active)
}

// Changed returns a channel that is closed the next time a push starts or
// ends, or draining begins.
// Take it before reading Active, so no change goes unnoticed.
func (r *Receiver) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changedLocked()
}

func (r *Receiver) changedLocked() chan struct{} {
	if r.drain.changed == nil {
		r.drain.changed = make(chan struct{})
	}
	return r.drain.changed
}

func (r *Receiver) notifyLocked() {
	if r.drain.changed != nil {
		close(r.drain.changed)
		r.drain.changed = nil
	}
}

// CancelAll cancels every running push with cause, and any push that gets its
// lease from now on. It returns how many were running.
func (r *Receiver) CancelAll(cause error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drain.cause = cause
	for _, p := range r.active {
		p.cancel(cause)
	}
	return len(r.active)
}

// Wait blocks until no push is in progress on this node, or ctx ends.
func (r *Receiver) Wait(ctx context.Context) error {
	for {
		r.mu.Lock()
		n := r.drain.inflight
		ch := r.changedLocked()
		r.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("receiver: %d pushes still running: %w", n, ctx.Err())
		}
	}
}

// pushTrack follows one receive-pack from enter to leave, so every push is
// counted exactly once and Wait sees it from its first moment.
type pushTrack struct {
	r         *Receiver
	activated bool
}

// enter counts a receive-pack in, or says no while draining.
func (r *Receiver) enter() (*pushTrack, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.drain.draining {
		return nil, false
	}
	r.drain.inflight++
	r.notifyLocked()
	return &pushTrack{r: r}, true
}

// leave counts the receive-pack out; one that never became a running build
// was refused on the way.
func (t *pushTrack) leave() {
	if !t.activated {
		t.r.metrics.refused()
	}
	t.r.mu.Lock()
	t.r.drain.inflight--
	t.r.notifyLocked()
	t.r.mu.Unlock()
}

// refuseDraining turns a push away before anything starts (DESIGN rule 2).
func (r *Receiver) refuseDraining(req Request) int {
	r.log.Info("push refused: draining", "conn", req.ConnID, "app", req.App, "user", req.User.Name)
	r.metrics.refused()
	_ = RefuseGit(req.Stdout, MsgRestarting)
	return 1
}

// activate makes p one of the running builds (status, drain, metrics); the
// returned func undoes it once p has finished and counts the push by result.
func (t *pushTrack) activate(p *push) (deactivate func()) {
	r := t.r
	t.activated = true
	r.mu.Lock()
	r.active[p.req.App] = p
	if r.drain.cause != nil {
		p.cancel(r.drain.cause)
	}
	r.notifyLocked()
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		if r.active[p.req.App] == p {
			delete(r.active, p.req.App)
		}
		r.notifyLocked()
		r.mu.Unlock()
		r.metrics.observe(p)
	}
}

// Healthy reports whether the hook callback socket still serves: without it
// every push would fail in its pre-receive hook.
// The accept loop itself only ends in Close; what goes wrong in practice is
// the socket file vanishing under it (a cleaner sweeping a temp directory).
func (r *Receiver) Healthy() error {
	st, err := os.Stat(r.hooks.path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHookSocketDown, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%w: %s is not a socket", ErrHookSocketDown, r.hooks.path)
	}
	return nil
}

// Pinger is a backend that can tell whether it is reachable (stow.S3,
// cluster.Redis).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Backend is one of the receiver's collaborators, for a readiness check.
type Backend struct {
	Name   string
	Pinger Pinger
}

// Backends lists the store, the coordination backend and the releaser. Local
// ones (a directory, the in-process lease table) are not Pingers: they are
// always ready.
func (r *Receiver) Backends() []Backend {
	var out []Backend
	for _, b := range []struct {
		name string
		dep  any
	}{{"store", r.deps.Store}, {"cluster", r.deps.Leases}, {"release", r.deps.Releaser}} {
		p, ok := b.dep.(Pinger)
		if !ok {
			p = alwaysReady{}
		}
		out = append(out, Backend{Name: b.name, Pinger: p})
	}
	return out
}

// Ping checks every backend, naming each one that is not reachable.
func (r *Receiver) Ping(ctx context.Context) error {
	var errs []error
	for _, b := range r.Backends() {
		if err := b.Pinger.Ping(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.Name, err))
		}
	}
	return errors.Join(errs...)
}

type alwaysReady struct{}

func (alwaysReady) Ping(context.Context) error { return nil }
