package receiver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sokoban-deploy/sokoban/stow"
)

// Switches that turn pushes off (SPEC F4): one per app, one for the whole
// server. Clone and fetch stay allowed.

// Disabled says who turned pushes off, when and why.
type Disabled struct {
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

func disabledKey(app string) string {
	if app == "" {
		return "config/disabled.json"
	}
	return "apps/" + app + "/disabled.json"
}

// Disable turns pushes to app off (all apps when app is empty).
func (r *Receiver) Disable(ctx context.Context, app, reason, by string) error {
	if _, err := stow.PutJSON(ctx, r.deps.Store, disabledKey(app), Disabled{Reason: reason, By: by, At: time.Now().UTC()}); err != nil {
		return fmt.Errorf("receiver: disable: %w", err)
	}
	return nil
}

// Enable turns pushes to app (or, with app empty, the server-wide switch) back on.
func (r *Receiver) Enable(ctx context.Context, app string) error {
	if err := r.deps.Store.Delete(ctx, disabledKey(app)); err != nil {
		return fmt.Errorf("receiver: enable: %w", err)
	}
	return nil
}

// DisabledState returns the switch for app ("" for the server-wide one), or nil.
func (r *Receiver) DisabledState(ctx context.Context, app string) (*Disabled, error) {
	var d Disabled
	if _, err := stow.GetJSON(ctx, r.deps.Store, disabledKey(app), &d); err != nil {
		if errors.Is(err, stow.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	return &d, nil
}

// pushesDisabled returns the refusal message when pushes to app are off.
func (r *Receiver) pushesDisabled(ctx context.Context, app string) (string, error) {
	for _, scope := range []string{"", app} {
		d, err := r.DisabledState(ctx, scope)
		if err != nil {
			return "", err
		}
		if d == nil {
			continue
		}
		msg := "Pushes are disabled"
		if scope != "" {
			msg = "Pushes to " + app + " are disabled"
		}
		if d.Reason != "" {
			msg += ": " + d.Reason
		}
		return msg, nil
	}
	return "", nil
}
