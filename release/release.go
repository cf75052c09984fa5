package release

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sokoban-deploy/sokoban/stow"
)

// Request is what a finished build hands to a Releaser.
type Request struct {
	BuildID      string
	Slug         string // the slug's stow key
	SlugSize     int64
	Checksum     string // SHA256:<hex>
	Commit       string
	ProcessTypes map[string]string
	Buildpacks   []string
	Stack        string
	User         string
	Description  string
	// CommitDescription is the commit's message, when the caller knows it
	// (Heroku mode sends it with the slug).
	CommitDescription string
	// BuildpackDescription is what the buildpacks detected ("Python"), for the
	// slug's buildpack_provided_description in Heroku mode.
	BuildpackDescription string
}

// Release is one version of an app.
type Release struct {
	Version      int               `json:"version"`
	Slug         string            `json:"slug"`
	Commit       string            `json:"commit"`
	Checksum     string            `json:"checksum"`
	ProcessTypes map[string]string `json:"process_types"`
	User         string            `json:"user"`
	Description  string            `json:"description"`
	CreatedAt    time.Time         `json:"created_at"`
	Current      bool              `json:"current"`
	BuildID      string            `json:"build_id,omitempty"`
	SlugSize     int64             `json:"slug_size,omitempty"`
	Stack        string            `json:"stack,omitempty"`
	// URL is where the released app answers (Heroku mode's web_url), when known.
	URL string `json:"url,omitempty"`
}

// Local records releases in stow under apps/APP/releases/vNNNNNNNN.json. The
// caller holds the app's lease, so versions are assigned without races.
type Local struct {
	stow stow.Store
	now  func() time.Time
}

// NewLocal returns a releaser that keeps releases in s.
func NewLocal(s stow.Store) *Local { return &Local{stow: s, now: time.Now} }

func releasesPrefix(app string) string { return "apps/" + app + "/releases/" }

// Create records the next version of app.
func (l *Local) Create(ctx context.Context, app string, req Request) (Release, error) {
	list, err := l.List(ctx, app)
	if err != nil {
		return Release{}, err
	}
	next := 1
	if len(list) > 0 {
		next = list[0].Version + 1
	}
	desc := req.Description
	if desc == "" && req.Commit != "" {
		desc = "Deploy " + short(req.Commit)
	}
	rel := Release{
		Version: next, Slug: req.Slug, Commit: req.Commit, Checksum: req.Checksum,
		ProcessTypes: req.ProcessTypes, User: req.User, Description: desc,
		CreatedAt: l.now().UTC(), BuildID: req.BuildID, SlugSize: req.SlugSize, Stack: req.Stack,
	}
	if _, err := stow.PutJSON(ctx, l.stow, fmt.Sprintf("%sv%08d.json", releasesPrefix(app), next), rel); err != nil {
		return Release{}, fmt.Errorf("release: record v%d: %w", next, err)
	}
	rel.Current = true
	return rel, nil
}

// List returns app's releases, newest first; the newest is current.
func (l *Local) List(ctx context.Context, app string) ([]Release, error) {
	infos, err := l.stow.List(ctx, releasesPrefix(app))
	if err != nil {
		return nil, fmt.Errorf("release: list %s: %w", app, err)
	}
	var out []Release
	for _, info := range infos {
		if !strings.HasSuffix(info.Key, ".json") {
			continue
		}
		var rel Release
		if _, err := stow.GetJSON(ctx, l.stow, info.Key, &rel); err != nil {
			if errors.Is(err, stow.ErrNotFound) {
				continue
			}
			return nil, fmt.Errorf("release: read %s: %w", info.Key, err)
		}
		out = append(out, rel)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version > out[j].Version })
	if len(out) > 0 {
		out[0].Current = true
	}
	return out, nil
}

// Current returns app's current release, or ErrNoRelease.
func (l *Local) Current(ctx context.Context, app string) (Release, error) {
	list, err := l.List(ctx, app)
	if err != nil {
		return Release{}, err
	}
	if len(list) == 0 {
		return Release{}, ErrNoRelease
	}
	return list[0], nil
}

func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}
