package keys

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sokoban-deploy/sokoban/stow"
)

// Level is what a user may do to one app. Levels are ordered: a handler asks for
// the least level it needs and compares.
type Level int

// Access levels, least to most.
const (
	// NoAccess: the app is invisible to the user ("no such app").
	NoAccess Level = iota
	// ReadOnly: clone and fetch.
	ReadOnly
	// Collaborator: push, logs, cancel, config.
	Collaborator
	// Owner: everything a collaborator may do, plus managing access.
	Owner
	// Admin: everything, on every app.
	Admin
)

func (l Level) String() string {
	switch l {
	case ReadOnly:
		return "read-only"
	case Collaborator:
		return "collaborator"
	case Owner:
		return "owner"
	case Admin:
		return "admin"
	}
	return "none"
}

// User is an authenticated identity: who, with what role, by which key.
type User struct {
	Name        string
	Role        Role
	Fingerprint string
}

// App is what the access decision needs to know about an app.
type App struct {
	Name          string    `json:"name"`
	Owner         string    `json:"owner"`
	Collaborators []string  `json:"collaborators,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
}

// Decide is the one access decision. app is nil when the app does not exist;
// autoCreate says whether any registered user may create one by pushing.
func Decide(u User, app *App, autoCreate bool) Level {
	switch {
	case u.Role == RoleAdmin:
		return Admin
	case app == nil && autoCreate:
		// Pushing creates the app and makes the pusher its owner.
		return Owner
	case app == nil:
		return NoAccess
	case app.Owner == u.Name:
		return Owner
	case slices.Contains(app.Collaborators, u.Name):
		return Collaborator
	}
	return NoAccess
}

var appRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,28}[a-z0-9]$`)

// ValidApp reports whether name follows Heroku's app name rule.
func ValidApp(name string) bool { return appRE.MatchString(name) }

// ErrNoApp means the app has no access record yet (it was never pushed).
var ErrNoApp = errors.New("keys: no such app")

// Apps keeps each app's access record in stow under apps/APP/access.json.
type Apps struct {
	stow stow.Store
	now  func() time.Time
}

// NewApps returns an access-record store kept in s.
func NewApps(s stow.Store) *Apps { return &Apps{stow: s, now: time.Now} }

func accessKey(app string) string { return "apps/" + app + "/access.json" }

// Get returns the app's record, or ErrNoApp.
func (a *Apps) Get(ctx context.Context, app string) (*App, error) {
	if !ValidApp(app) {
		return nil, ErrNoApp
	}
	var rec App
	_, err := stow.GetJSON(ctx, a.stow, accessKey(app), &rec)
	if errors.Is(err, stow.ErrNotFound) {
		return nil, ErrNoApp
	}
	if err != nil {
		return nil, fmt.Errorf("keys: app %s: %w", app, err)
	}
	return &rec, nil
}

// Create records owner as the owner of a new app, create-only: of two first
// pushes racing on two nodes exactly one becomes the owner, and both get that
// record back. It is idempotent, so a retried first push does not fail.
func (a *Apps) Create(ctx context.Context, app, owner string) (*App, error) {
	rec := &App{Name: app, Owner: owner, CreatedAt: a.now().UTC()}
	_, err := stow.CreateJSON(ctx, a.stow, accessKey(app), rec)
	if errors.Is(err, stow.ErrConflict) {
		return a.Get(ctx, app)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: create app %s: %w", app, err)
	}
	return rec, nil
}

// UserSet says whether a user has a key here (keys.Store).
type UserSet interface {
	HasUser(ctx context.Context, name string) (bool, error)
}

// AddCollaborator lets user push app, in one conditional write so an access
// change on another node is never undone. Access goes only to users who have
// a key (ErrNotRegistered): a typo cannot grant a name someone registers
// later. added is false when user already had access.
func (a *Apps) AddCollaborator(ctx context.Context, app, user string, users UserSet) (added bool, err error) {
	if !ValidUser(user) {
		return false, fmt.Errorf("%w: %q", ErrBadUser, user)
	}
	if rec, err := a.Get(ctx, app); err != nil {
		return false, err
	} else if user == rec.Owner || slices.Contains(rec.Collaborators, user) {
		return false, nil
	}
	known, err := users.HasUser(ctx, user)
	if err != nil {
		return false, err
	}
	if !known {
		return false, fmt.Errorf("%w: %s", ErrNotRegistered, user)
	}
	err = a.update(ctx, app, func(rec *App) error {
		if user == rec.Owner || slices.Contains(rec.Collaborators, user) {
			return stow.ErrNoChange
		}
		added = true
		rec.Collaborators = append(rec.Collaborators, user)
		return nil
	})
	return added, err
}

// RemoveCollaborator stops user pushing app. The owner cannot be removed
// (ErrOwner); a user who is not a collaborator is ErrNotCollaborator.
func (a *Apps) RemoveCollaborator(ctx context.Context, app, user string) error {
	return a.update(ctx, app, func(rec *App) error {
		if user == rec.Owner {
			return fmt.Errorf("%w: %s owns %s", ErrOwner, user, app)
		}
		i := slices.Index(rec.Collaborators, user)
		if i < 0 {
			return fmt.Errorf("%w: %s", ErrNotCollaborator, user)
		}
		rec.Collaborators = slices.Delete(rec.Collaborators, i, i+1)
		return nil
	})
}

// update is the one conditional write of an existing app's record.
func (a *Apps) update(ctx context.Context, app string, fn func(rec *App) error) error {
	if !ValidApp(app) {
		return ErrNoApp
	}
	_, err := stow.UpdateJSON(ctx, a.stow, accessKey(app), func(rec *App, exists bool) error {
		if !exists {
			return ErrNoApp
		}
		return fn(rec)
	})
	if err != nil && !errors.Is(err, ErrNoApp) && !errors.Is(err, ErrOwner) && !errors.Is(err, ErrNotCollaborator) {
		return fmt.Errorf("keys: save app %s: %w", app, err)
	}
	return err
}

// List returns every app with an access record, by name.
func (a *Apps) List(ctx context.Context) ([]*App, error) {
	infos, err := a.stow.List(ctx, "apps/")
	if err != nil {
		return nil, fmt.Errorf("keys: list apps: %w", err)
	}
	var out []*App
	for _, info := range infos {
		name, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, "apps/"), "/access.json")
		if !ok || !ValidApp(name) {
			continue
		}
		rec, err := a.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}
