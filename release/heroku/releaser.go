package heroku

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/sokoban-deploy/sokoban/release"
)

// webURLTimeout bounds the look-up of the app's web URL after a release: the
// release already happened, so a slow answer only costs the URL line.
const webURLTimeout = 10 * time.Second

// Releaser releases a stowed slug through the Platform API with the pusher's
// token (SPEC G4): create the slug, PUT its bytes to the blob URL streaming
// from stow, create the release. Until the last call succeeds nothing is
// current on Heroku that was not before (SPEC F12); a failure returns a
// *UserError whose message carries the API's own words (SPEC G2).
type Releaser struct {
	client *Client
	links  LinkStore
	slugs  SlugStore
	keys   *Keys
	log    *slog.Logger
}

// Create implements the receiver's Releaser. req.User is the pusher, whose
// linked token does the work.
func (r *Releaser) Create(ctx context.Context, app string, req release.Request) (release.Release, error) {
	link, err := linkFor(ctx, r.links, req.User)
	if err != nil {
		return release.Release{}, err
	}
	info, err := r.slugs.Stat(ctx, req.Slug)
	if err != nil {
		return release.Release{}, &UserError{Err: err, Message: "the slug could not be read from the store; try again in a moment"}
	}
	commitDesc := req.CommitDescription
	if commitDesc == "" {
		commitDesc = req.Description
	}
	slug, err := r.client.CreateSlug(ctx, link.Token, app, SlugRequest{
		ProcessTypes: req.ProcessTypes, Commit: req.Commit, CommitDescription: commitDesc,
		BuildpackProvidedDescription: req.BuildpackDescription, Checksum: req.Checksum, Stack: req.Stack,
	})
	if err != nil {
		r.keys.tokenRejected(link, err)
		return release.Release{}, userError(err)
	}
	// Each attempt opens the slug afresh, so a broken upload is retried without
	// holding the slug in memory.
	open := func() (io.ReadCloser, error) {
		rc, _, err := r.slugs.Get(ctx, req.Slug)
		return rc, err
	}
	if err := r.client.UploadSlug(ctx, slug.Blob, open, info.Size); err != nil {
		return release.Release{}, userError(err)
	}
	rel, err := r.client.CreateRelease(ctx, link.Token, app, slug.ID, req.Description)
	if err != nil {
		r.keys.tokenRejected(link, err)
		return release.Release{}, userError(err)
	}
	out := release.Release{
		Version: rel.Version, Slug: req.Slug, Commit: req.Commit, Checksum: req.Checksum,
		ProcessTypes: req.ProcessTypes, User: req.User, Description: req.Description,
		CreatedAt: time.Now().UTC(), Current: true, BuildID: req.BuildID, SlugSize: info.Size, Stack: req.Stack,
	}
	uctx, cancel := context.WithTimeout(ctx, webURLTimeout)
	defer cancel()
	if a, err := r.client.App(uctx, link.Token, app); err == nil {
		out.URL = strings.TrimSpace(a.WebURL)
	} else if !errors.Is(err, context.Canceled) {
		r.log.Info("heroku: released, but the app's web URL is unknown", "app", app, "version", rel.Version, "err", err)
	}
	return out, nil
}

// Current implements the receiver's Releaser. The Platform API numbers
// releases itself and has no conditional create, so a push has no base
// version to hand back: ErrNoRelease, and Create ignores Request.Base. The
// lease check right before the release is Heroku mode's fence.
func (r *Releaser) Current(context.Context, string) (release.Release, error) {
	return release.Release{}, release.ErrNoRelease
}

// ReleasedCommit implements the receiver's Releaser: Heroku mode does not
// look its releases up for SPEC A8's note (0, "not known").
func (r *Releaser) ReleasedCommit(context.Context, string, string) (int, error) { return 0, nil }
