package release

import (
	"context"
	"errors"
	"fmt"

	"github.com/sokoban-deploy/sokoban/stow"
)

// Settings are an app's build settings: config vars (ENV_DIR) and an explicit
// buildpack list, which wins over every other way of choosing (SPEC D1).
type Settings struct {
	Config     map[string]string `json:"config"`
	Buildpacks []string          `json:"buildpacks,omitempty"`
}

// MaxConfigSize bounds an app's config vars, keys and values together, as
// Heroku does (64 KB): every build writes them into ENV_DIR and every
// settings read loads them whole.
const MaxConfigSize = 64 << 10

// ConfigSize is what MaxConfigSize counts.
func ConfigSize(config map[string]string) int {
	n := 0
	for k, v := range config {
		n += len(k) + len(v)
	}
	return n
}

// CheckConfig refuses config vars larger than MaxConfigSize.
func CheckConfig(config map[string]string) error {
	if n := ConfigSize(config); n > MaxConfigSize {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrConfigTooLarge, n, MaxConfigSize)
	}
	return nil
}

// LocalSettings keeps Settings in stow under apps/APP/settings.json.
type LocalSettings struct {
	stow stow.Store
}

// NewLocalSettings returns a settings store kept in s.
func NewLocalSettings(s stow.Store) *LocalSettings { return &LocalSettings{stow: s} }

func settingsKey(app string) string { return "apps/" + app + "/settings.json" }

// Get returns app's settings; an app without any has empty ones.
func (l *LocalSettings) Get(ctx context.Context, app string) (Settings, error) {
	var s Settings
	_, err := stow.GetJSON(ctx, l.stow, settingsKey(app), &s)
	if err != nil && !errors.Is(err, stow.ErrNotFound) {
		return Settings{}, fmt.Errorf("release: settings for %s: %w", app, err)
	}
	if s.Config == nil {
		s.Config = map[string]string{}
	}
	return s, nil
}

// Put replaces app's settings.
func (l *LocalSettings) Put(ctx context.Context, app string, s Settings) error {
	if err := CheckConfig(s.Config); err != nil {
		return err
	}
	if _, err := stow.PutJSON(ctx, l.stow, settingsKey(app), s); err != nil {
		return fmt.Errorf("release: save settings for %s: %w", app, err)
	}
	return nil
}

// BuildSettings is Get for a build; locally every user sees the same settings.
func (l *LocalSettings) BuildSettings(ctx context.Context, _, app string) (Settings, error) {
	return l.Get(ctx, app)
}
