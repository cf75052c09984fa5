package cluster

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrBusy is matched by *BusyError: someone else holds the app's lease.
	ErrBusy = errors.New("cluster: app is busy")
	// ErrUnavailable means the coordination backend cannot be reached.
	ErrUnavailable = errors.New("coordination unavailable")
	// ErrLeaseLost means a held lease could not be renewed or was taken over.
	ErrLeaseLost = errors.New("cluster: lease lost")
	// ErrBuildLost ends a follower whose build's node stopped heartbeating
	// before the build finished (the node died or lost Redis).
	ErrBuildLost = errors.New("cluster: build lost (its node stopped responding)")
	// ErrClosed is returned by a closed Follower, Redis or Running.
	ErrClosed = errors.New("cluster: closed")
)

// BusyError says who holds an app's lease.
type BusyError struct {
	App    string
	Holder Holder
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%s is being deployed by %s since %s (%s ago)", e.App, e.Holder.User,
		e.Holder.Since.UTC().Format(time.RFC3339), time.Since(e.Holder.Since).Round(time.Second))
}

// Is makes errors.Is(err, ErrBusy) true for a *BusyError.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }
