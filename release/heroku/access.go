package heroku

import (
	"context"
	"errors"
	"strings"

	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/release"
)

// Access is Heroku mode's access decision (SPEC G5): GET /apps/{app} with the
// user's linked token decides. The app's owner is Owner, anyone else it answers
// for is Collaborator; 403 and 404 are NoAccess, told as "no such app or no
// access". Apps are created on Heroku, never by pushing.
type Access struct {
	client *Client
	links  LinkStore
	keys   *Keys
}

// Level is u's access to app. Admins (operators' keys) are Admin, as in local
// mode; a user without a linked account has no access.
func (a *Access) Level(ctx context.Context, u keys.User, app string) (keys.Level, error) {
	if u.Role == keys.RoleAdmin {
		return keys.Admin, nil
	}
	link, err := a.links.Get(ctx, u.Name)
	if errors.Is(err, keys.ErrNotLinked) {
		return keys.NoAccess, nil
	}
	if err != nil {
		return keys.NoAccess, err
	}
	info, err := a.client.App(ctx, link.Token, app)
	if errors.Is(err, ErrNoAccess) {
		return keys.NoAccess, nil
	}
	if err != nil {
		a.keys.tokenRejected(link, err)
		return keys.NoAccess, err
	}
	if strings.EqualFold(info.Owner.Email, u.Name) {
		return keys.Owner, nil
	}
	return keys.Collaborator, nil
}

// Exists asks Heroku with u's linked token. An operator's key without a
// link cannot ask; for it every valid name counts, which is safe for what
// asks (disable APP only ever touches that one name).
func (a *Access) Exists(ctx context.Context, u keys.User, app string) (bool, error) {
	if !keys.ValidApp(app) {
		return false, nil
	}
	link, err := a.links.Get(ctx, u.Name)
	if errors.Is(err, keys.ErrNotLinked) && u.Role == keys.RoleAdmin {
		return true, nil
	}
	if errors.Is(err, keys.ErrNotLinked) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := a.client.App(ctx, link.Token, app); err != nil {
		if errors.Is(err, ErrNoAccess) {
			return false, nil
		}
		a.keys.tokenRejected(link, err)
		return false, err
	}
	return true, nil
}

// MayCreate is always false: a Heroku app is created on Heroku.
func (a *Access) MayCreate(context.Context, keys.User, string) (bool, error) { return false, nil }

// Claim does nothing: Heroku records who owns an app.
func (a *Access) Claim(context.Context, keys.User, string) error { return nil }

// NoAccessMessage is the fixed text of DESIGN.md: Heroku does not tell a
// missing app from one the user may not see, and neither do we.
func (a *Access) NoAccessMessage(string) string { return ErrNoAccess.Error() }

// Settings reads an app's build settings from Heroku with the pusher's token
// (SPEC G7): config vars become ENV_DIR, buildpack installations the app's
// buildpack list, which wins over every other way of choosing (SPEC D1).
type Settings struct {
	client *Client
	links  LinkStore
	keys   *Keys
}

// BuildSettings implements the receiver's Settings.
func (s *Settings) BuildSettings(ctx context.Context, user, app string) (release.Settings, error) {
	link, err := linkFor(ctx, s.links, user)
	if err != nil {
		return release.Settings{}, err
	}
	vars, err := s.client.ConfigVars(ctx, link.Token, app)
	if err != nil {
		s.keys.tokenRejected(link, err)
		return release.Settings{}, userError(err)
	}
	bps, err := s.client.BuildpackInstallations(ctx, link.Token, app)
	if err != nil {
		s.keys.tokenRejected(link, err)
		return release.Settings{}, userError(err)
	}
	return release.Settings{Config: vars, Buildpacks: bps}, nil
}

// linkFor is user's link, or the error that tells them to make one.
func linkFor(ctx context.Context, links LinkStore, user string) (keys.HerokuLink, error) {
	link, err := links.Get(ctx, user)
	if errors.Is(err, keys.ErrNotLinked) {
		return keys.HerokuLink{}, &UserError{Err: err, Message: "no Heroku account is linked to " + user +
			"; link a key with `sokoban keys add --heroku-token-file FILE KEYFILE`"}
	}
	if err != nil {
		return keys.HerokuLink{}, &UserError{Err: err, Message: "the server could not read the Heroku account link; try again in a moment"}
	}
	return link, nil
}
