package keys

// RefusedError is a lookup failure for a registered key that may not be used
// right now: in Heroku mode, its account link failed re-verification (the key
// was removed from the account, the token was revoked, or Heroku could not be
// asked). The front door lets such a key complete the handshake, so it can tell
// the user why with UserMessage instead of a bare "Permission denied", then
// ends the session before anything runs.
type RefusedError struct {
	Reason string // one line for the user; never a secret
	Err    error  // the cause, for the log
}

func (e *RefusedError) Error() string {
	if e.Err != nil {
		return "keys: key refused: " + e.Reason + ": " + e.Err.Error()
	}
	return "keys: key refused: " + e.Reason
}

// UserMessage is the line to show the user.
func (e *RefusedError) UserMessage() string { return e.Reason }

func (e *RefusedError) Unwrap() error { return e.Err }

// NoAccessMessager is implemented by an access source whose refusal text
// differs from local mode's: Heroku mode cannot tell a missing app from one the
// user may not see, and says so.
type NoAccessMessager interface {
	NoAccessMessage(app string) string
}

// NoAccessMessage is what a user without access to app is told by src (an
// access source such as Local): "no such app: APP" unless src says otherwise.
func NoAccessMessage(src any, app string) string {
	if m, ok := src.(NoAccessMessager); ok {
		return m.NoAccessMessage(app)
	}
	return "no such app: " + app
}
