package cluster

import (
	"context"
	"sync"
	"time"
)

// Holder describes who holds a lease, for the message a refused pusher sees.
type Holder struct {
	User    string    `json:"user"`
	Node    string    `json:"node"`
	BuildID string    `json:"build_id"`
	Since   time.Time `json:"since"`
}

// Lease is a held per-app lease.
type Lease interface {
	// Holder is who holds it.
	Holder() Holder
	// Generation increases every time the app's lease is granted; writes that
	// matter carry it so a stale holder cannot overwrite a newer one's work.
	Generation() int64
	// Lost is closed if the lease can no longer be guaranteed (renewal failed).
	Lost() <-chan struct{}
	// Check answers, right before a write that matters, whether this lease is
	// still held and its generation still the newest: nil, ErrLeaseLost, or an
	// error wrapping ErrUnavailable when the backend cannot tell.
	Check(ctx context.Context) error
	// Release gives the lease up. It is safe to call more than once.
	Release(ctx context.Context) error
}

// Leaser grants per-app leases: Local in process, Redis across nodes.
type Leaser interface {
	// Acquire takes app's lease for h, or returns a *BusyError naming the
	// holder (errors.Is(err, ErrBusy)), or an error wrapping ErrUnavailable.
	Acquire(ctx context.Context, app string, h Holder) (Lease, error)
}

var _ Leaser = (*Local)(nil)

// Local is the in-process lease table of the embedded default (one node).
type Local struct {
	mu   sync.Mutex
	held map[string]*localLease
	gen  map[string]int64
}

// NewLocal returns an empty lease table.
func NewLocal() *Local {
	return &Local{held: map[string]*localLease{}, gen: map[string]int64{}}
}

// Acquire takes app's lease for h, or returns a *BusyError naming the holder.
func (l *Local) Acquire(_ context.Context, app string, h Holder) (Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.held[app]; ok {
		return nil, &BusyError{App: app, Holder: cur.holder}
	}
	l.gen[app]++
	lease := &localLease{owner: l, app: app, holder: h, gen: l.gen[app], lost: make(chan struct{})}
	l.held[app] = lease
	return lease, nil
}

// Holders returns the current holder of every held lease, keyed by app.
func (l *Local) Holders() map[string]Holder {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Holder, len(l.held))
	for app, lease := range l.held {
		out[app] = lease.holder
	}
	return out
}

type localLease struct {
	owner  *Local
	app    string
	holder Holder
	gen    int64
	lost   chan struct{} // never closed: an in-process lease cannot be lost
}

func (l *localLease) Holder() Holder        { return l.holder }
func (l *localLease) Generation() int64     { return l.gen }
func (l *localLease) Lost() <-chan struct{} { return l.lost }

// Check reports ErrLeaseLost once the lease was released (an in-process lease
// is otherwise never lost, and its generation is the newest while it is held).
func (l *localLease) Check(context.Context) error {
	l.owner.mu.Lock()
	defer l.owner.mu.Unlock()
	if l.owner.held[l.app] != l {
		return ErrLeaseLost
	}
	return nil
}

func (l *localLease) Release(context.Context) error {
	l.owner.mu.Lock()
	defer l.owner.mu.Unlock()
	if l.owner.held[l.app] == l {
		delete(l.owner.held, l.app)
	}
	return nil
}
