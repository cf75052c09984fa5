package receiver

import "errors"

var (
	// ErrNoRepo means the app has no repository yet (nothing was ever pushed).
	ErrNoRepo = errors.New("receiver: no such app")
	// ErrCorruptRepo means the stowed repository failed verification. It is
	// never replaced by an empty repository (SPEC F9).
	ErrCorruptRepo = errors.New("receiver: stowed repository is corrupt")
	// ErrBadHookRequest means the pre-receive hook sent something unexpected.
	ErrBadHookRequest = errors.New("receiver: bad hook request")
	// ErrHookSocketDown means the hook callback socket is gone: pushes would
	// fail in their pre-receive hook.
	ErrHookSocketDown = errors.New("receiver: hook socket is down")
	// ErrRestarting is the cause of pushes cancelled because the server stops
	// after its drain timeout (SPEC H5).
	ErrRestarting = errors.New(MsgRestarting)
)
