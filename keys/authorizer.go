package keys

import (
	"context"
	"errors"
	"fmt"
)

// Local is the embedded default's access decision source: access records in
// stow, decided by Decide. Heroku mode has its own implementation.
type Local struct {
	apps       *Apps
	autoCreate bool
}

// NewLocal returns the local authorizer. With autoCreate, any registered user
// creates an app by pushing to a new name and becomes its owner.
func NewLocal(apps *Apps, autoCreate bool) *Local { return &Local{apps: apps, autoCreate: autoCreate} }

// Level is u's access to an existing app; an app that does not exist yields
// NoAccess (Admin for admins), so no one can touch an app before it is created.
func (l *Local) Level(ctx context.Context, u User, app string) (Level, error) {
	rec, err := l.apps.Get(ctx, app)
	if errors.Is(err, ErrNoApp) {
		rec = nil
	} else if err != nil {
		return NoAccess, err
	}
	return Decide(u, rec, false), nil
}

// MayCreate reports whether u may create app by pushing to it: it does not
// exist yet, and auto-create is on (admins always may).
func (l *Local) MayCreate(ctx context.Context, u User, app string) (bool, error) {
	exists, err := l.Exists(ctx, u, app)
	if err != nil || exists {
		return false, err
	}
	return Decide(u, nil, l.autoCreate) >= Owner, nil
}

// Exists reports whether app has an access record (whoever asks).
func (l *Local) Exists(ctx context.Context, _ User, app string) (bool, error) {
	_, err := l.apps.Get(ctx, app)
	if errors.Is(err, ErrNoApp) {
		return false, nil
	}
	return err == nil, err
}

// Claim makes u the owner of app if it has no owner yet. The record is
// created create-only, so of two first pushes only one owns the app even if
// both passed MayCreate; the other is ErrClaimed and pushes nothing.
func (l *Local) Claim(ctx context.Context, u User, app string) error {
	rec, err := l.apps.Create(ctx, app, u.Name)
	if err != nil {
		return err
	}
	if Decide(u, rec, false) < Collaborator {
		return fmt.Errorf("%w: %s is %s's", ErrClaimed, app, rec.Owner)
	}
	return nil
}
