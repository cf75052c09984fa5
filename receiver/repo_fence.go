package receiver

import (
	"context"
	"errors"

	"github.com/sokoban-deploy/sokoban/cluster"
)

// leaseLostError is the cause of a push cancelled because its lease could not
// be renewed (SPEC F3): the pusher reads it after " !     Build cancelled: ".
type leaseLostError struct{}

func (leaseLostError) Error() string {
	return "coordination unavailable: this server lost the app's lease, so the build was stopped and nothing was released; push again in a moment"
}

func (leaseLostError) Unwrap() error { return cluster.ErrLeaseLost }

// fenceError is a failed lease check: a reason for the pusher, the cause for
// the log.
type fenceError struct {
	reason string
	err    error
}

func (e *fenceError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *fenceError) Unwrap() error { return e.err }

// fenceReason is the part of a fence failure the pusher is shown.
func fenceReason(err error) string {
	var fe *fenceError
	if errors.As(err, &fe) {
		return fe.reason
	}
	return err.Error()
}

// fence asks, right before a write that matters (the release, the repository
// manifest), whether this push still holds the app's lease and its generation
// is still the newest (DESIGN rule 8).
func (p *push) fence(ctx context.Context) error {
	err := p.lease.Check(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cluster.ErrUnavailable):
		return &fenceError{"coordination unavailable: the server could not confirm it still holds the app's lease", err}
	default:
		return &fenceError{"this push no longer holds the app's lease (it expired or another push took it over)", err}
	}
}
