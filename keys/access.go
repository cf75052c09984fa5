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

// Create records owner as the owner of a new app. It is idempotent for the same
// owner, so a retried first push does not fail.
func (a *Apps) Create(ctx context.Context, app, owner string) (*App, error) {
	if old, err := a.Get(ctx, app); err == nil {
		return old, nil
	} else if !errors.Is(err, ErrNoApp) {
		return nil, err
	}
	rec := &App{Name: app, Owner: owner, CreatedAt: a.now().UTC()}
	if _, err := stow.PutJSON(ctx, a.stow, accessKey(app), rec); err != nil {
		return nil, fmt.Errorf("keys: create app %s: %w", app, err)
	}
	return rec, nil
}

// Put replaces the app's record.
func (a *Apps) Put(ctx context.Context, rec *App) error {
	if _, err := stow.PutJSON(ctx, a.stow, accessKey(rec.Name), rec); err != nil {
		return fmt.Errorf("keys: save app %s: %w", rec.Name, err)
	}
	return nil
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
