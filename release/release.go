package release

import (
	"context"
	"errors"
	"fmt"
	"regexp"
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
	// Base is the app's version the push started from (read under its lease
	// when it began; 0 when the app had no release). The local releaser
	// writes v(Base+1) only if Base is still current (ErrSuperseded
	// otherwise); Heroku's Platform API numbers releases itself.
	Base int
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

// Local records releases in stow under apps/APP/releases/vNNNNNNNN.json.
// Each version is create-only at current+1, so versions are dense and two
// pushes racing for vN (a node paused past its lease, and the push that took
// the lease over) cannot both write it: the loser gets ErrSuperseded and
// writes nothing. A small pointer (apps/APP/release.json) names the current
// version so a push never lists the app's history; it is advisory, moved
// after each create, and readers roll forward from it by looking for the next
// versions, so a crash between the create and the pointer's update loses
// nothing. A per-commit marker (apps/APP/commits/SHA.json) answers "was this
// commit released before" the same way (SPEC A8).
type Local struct {
	stow stow.Store
	now  func() time.Time
}

// NewLocal returns a releaser that keeps releases in s.
func NewLocal(s stow.Store) *Local { return &Local{stow: s, now: time.Now} }

func releasesPrefix(app string) string { return "apps/" + app + "/releases/" }
func versionKey(app string, v int) string {
	return fmt.Sprintf("%sv%08d.json", releasesPrefix(app), v)
}
func pointerKey(app string) string { return "apps/" + app + "/release.json" }
func commitKey(app, commit string) string {
	return "apps/" + app + "/commits/" + commit + ".json"
}

// marker is the pointer's and a commit marker's record: a version.
type marker struct {
	Version int `json:"version"`
}

var commitRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// Create records release v(req.Base+1) of app, only if req.Base is still the
// current version and nobody wrote v(Base+1) meanwhile; otherwise it returns
// a *SupersededError (ErrSuperseded) and writes nothing.
func (l *Local) Create(ctx context.Context, app string, req Request) (Release, error) {
	cur, err := l.currentVersion(ctx, app)
	if err != nil {
		return Release{}, err
	}
	if cur != req.Base {
		return Release{}, &SupersededError{App: app, Base: req.Base, Version: cur}
	}
	next := req.Base + 1
	desc := req.Description
	if desc == "" && req.Commit != "" {
		desc = "Deploy " + short(req.Commit)
	}
	rel := Release{
		Version: next, Slug: req.Slug, Commit: req.Commit, Checksum: req.Checksum,
		ProcessTypes: req.ProcessTypes, User: req.User, Description: desc,
		CreatedAt: l.now().UTC(), BuildID: req.BuildID, SlugSize: req.SlugSize, Stack: req.Stack,
	}
	if _, err := stow.CreateJSON(ctx, l.stow, versionKey(app, next), rel); err != nil {
		if errors.Is(err, stow.ErrConflict) {
			return Release{}, &SupersededError{App: app, Base: req.Base, Version: next}
		}
		return Release{}, fmt.Errorf("release: record v%d: %w", next, err)
	}
	// The release is made; the pointer and the commit marker only make later
	// reads cheap, so failing to move them is not the push's failure (readers
	// roll forward past a stale pointer; a missing marker only drops SPEC A8's
	// note).
	_ = l.raise(ctx, pointerKey(app), next)
	if commitRE.MatchString(req.Commit) {
		_ = l.raise(ctx, commitKey(app, req.Commit), next)
	}
	rel.Current = true
	return rel, nil
}

// raise moves the marker under key up to v; it never moves one down, so a
// slow writer of an older version cannot undo a newer one.
func (l *Local) raise(ctx context.Context, key string, v int) error {
	_, err := stow.UpdateJSON(ctx, l.stow, key, func(m *marker, _ bool) error {
		if m.Version >= v {
			return stow.ErrNoChange
		}
		m.Version = v
		return nil
	})
	return err
}

// currentVersion is app's newest version (0 for none): the pointer, rolled
// forward past any version created after it was last moved.
func (l *Local) currentVersion(ctx context.Context, app string) (int, error) {
	var p marker
	_, err := stow.GetJSON(ctx, l.stow, pointerKey(app), &p)
	switch {
	case errors.Is(err, stow.ErrNotFound):
		// No pointer: a new app, or one released before pointers existed,
		// whose releases are listed once (one request, not a Stat per
		// version) until its next release writes the pointer.
		infos, err := l.stow.List(ctx, releasesPrefix(app))
		if err != nil {
			return 0, fmt.Errorf("release: read %s's current version: %w", app, err)
		}
		for _, info := range infos {
			var n int
			if _, err := fmt.Sscanf(strings.TrimPrefix(info.Key, releasesPrefix(app)), "v%08d.json", &n); err == nil && n > p.Version {
				p.Version = n
			}
		}
	case err != nil:
		return 0, fmt.Errorf("release: read %s's current version: %w", app, err)
	}
	v := p.Version
	for {
		_, err := l.stow.Stat(ctx, versionKey(app, v+1))
		if errors.Is(err, stow.ErrNotFound) {
			return v, nil
		}
		if err != nil {
			return 0, fmt.Errorf("release: read %s's current version: %w", app, err)
		}
		v++
	}
}

// ReleasedCommit is the newest version that released commit, or 0.
func (l *Local) ReleasedCommit(ctx context.Context, app, commit string) (int, error) {
	if !commitRE.MatchString(commit) {
		return 0, nil
	}
	var m marker
	if _, err := stow.GetJSON(ctx, l.stow, commitKey(app, commit), &m); err != nil {
		if errors.Is(err, stow.ErrNotFound) {
			return 0, nil
		}
		return 0, fmt.Errorf("release: read %s's releases of %s: %w", app, short(commit), err)
	}
	return m.Version, nil
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
	v, err := l.currentVersion(ctx, app)
	if err != nil {
		return Release{}, err
	}
	if v == 0 {
		return Release{}, ErrNoRelease
	}
	var rel Release
	if _, err := stow.GetJSON(ctx, l.stow, versionKey(app, v), &rel); err != nil {
		return Release{}, fmt.Errorf("release: read v%d of %s: %w", v, app, err)
	}
	rel.Current = true
	return rel, nil
}

func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}
