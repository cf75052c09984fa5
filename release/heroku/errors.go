package heroku

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// ErrNoAccess is what App returns when Heroku answers 403 or 404: the pusher must
// not learn which of the two it was. Its text is the fixed one of DESIGN.md.
var ErrNoAccess = errors.New("no such app or no access")

// ErrUnauthorized matches (errors.Is) an *APIError with status 401: the token is
// invalid, expired or revoked, so any key linked through it must stop working.
var ErrUnauthorized = errors.New("heroku: token rejected")

// ErrRetriesExhausted matches an error returned after the retry budget ran out on
// 429, 5xx or timeouts (SPEC F2). The last API error is wrapped alongside it.
var ErrRetriesExhausted = errors.New("retries exhausted")

// APIError is a non-2xx answer from the Platform API or the blob store. Error()
// is Message alone, because that is what the pusher is shown (SPEC G2).
type APIError struct {
	Status    int    // HTTP status
	ID        string // Heroku's error id ("unauthorized", "rate_limit", …) or the blob store's code
	Message   string // human text from the API; never contains the token
	RequestID string // the Request-Id we sent, for support tickets
}

func (e *APIError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("Heroku API answered %d %s", e.Status, http.StatusText(e.Status))
}

// Is makes errors.Is(err, ErrUnauthorized) true for a 401.
func (e *APIError) Is(target error) bool {
	return target == ErrUnauthorized && e.Status == http.StatusUnauthorized
}

// noAccessError keeps the API's answer behind ErrNoAccess's fixed text, so the log
// can still say whether it was a 403 or a 404 (errors.As to *APIError).
type noAccessError struct{ api *APIError }

func (e *noAccessError) Error() string        { return ErrNoAccess.Error() }
func (e *noAccessError) Is(target error) bool { return target == ErrNoAccess }
func (e *noAccessError) Unwrap() error        { return e.api }

// UserMessage is the one line to show a pusher for an error from this package:
// the fixed no-access text, the API's own message, or a short reason when the API
// never answered. The full chain belongs in the log.
func UserMessage(err error) string {
	if err == nil {
		return ""
	}
	if ue, ok := errors.AsType[*UserError](err); ok {
		return ue.Message
	}
	if errors.Is(err, ErrNoAccess) {
		return ErrNoAccess.Error()
	}
	if api, ok := errors.AsType[*APIError](err); ok {
		return api.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errAttemptTimeout) {
		return "Heroku API did not answer in time"
	}
	if errors.Is(err, errUploadBroken) {
		return "slug upload to Heroku failed: connection broken"
	}
	if errors.Is(err, context.Canceled) {
		return "cancelled"
	}
	return "Heroku API unreachable"
}

// errUploadBroken marks a slug PUT whose connection broke before an answer.
var errUploadBroken = errors.New("slug upload broke")

// errAttemptTimeout marks one attempt that hit Config.CallTimeout (or UploadTimeout).
var errAttemptTimeout = errors.New("no answer in time")

// UserError is what Heroku mode's seams (Keys, Access, Settings, Releaser,
// Linker) return: Message is the one line for the pusher (shown by the
// receiver and the CLI through UserMessage), Err the chain for the log.
type UserError struct {
	Message string
	Err     error
}

func (e *UserError) Error() string {
	if e.Err == nil {
		return e.Message
	}
	return e.Message + ": " + e.Err.Error()
}

// UserMessage is Message.
func (e *UserError) UserMessage() string { return e.Message }

func (e *UserError) Unwrap() error { return e.Err }

// userError wraps err, a failed API call, with the line a pusher sees: the
// API's own words (SPEC G2), and what to do when the token was refused.
func userError(err error) *UserError {
	msg := UserMessage(err)
	if errors.Is(err, ErrUnauthorized) {
		msg += " (Heroku rejected the linked token: link your key again with a new one)"
	}
	return &UserError{Message: msg, Err: err}
}
