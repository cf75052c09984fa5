package release

import (
	"context"
	"errors"
	"fmt"
	"regexp"

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

// Each change below is one conditional read-modify-write of settings.json
// (stow.UpdateJSON): two nodes changing the same app at once both land, and
// the size check sees the merged result, not a stale copy (issue 11 item 3).

// SetConfig sets vars on app's config vars. The result must stay within
// MaxConfigSize (ErrConfigTooLarge, and nothing is written).
func (l *LocalSettings) SetConfig(ctx context.Context, app string, vars map[string]string) error {
	for k := range vars {
		if !ValidConfigKey(k) {
			return fmt.Errorf("%w: %q", ErrBadConfigKey, k)
		}
	}
	return l.update(ctx, app, func(s *Settings) error {
		for k, v := range vars {
			s.Config[k] = v
		}
		return CheckConfig(s.Config)
	})
}

// UnsetConfig removes keys from app's config vars and returns those that were
// set; keys not set are no change.
func (l *LocalSettings) UnsetConfig(ctx context.Context, app string, keys []string) ([]string, error) {
	var removed []string
	err := l.update(ctx, app, func(s *Settings) error {
		removed = removed[:0]
		for _, k := range keys {
			if _, ok := s.Config[k]; ok {
				delete(s.Config, k)
				removed = append(removed, k)
			}
		}
		if len(removed) == 0 {
			return stow.ErrNoChange
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// SetBuildpacks makes urls app's buildpacks, in order. The caller has checked
// them with buildpack.CheckUserURL (buildpack imports release, not back).
func (l *LocalSettings) SetBuildpacks(ctx context.Context, app string, urls []string) error {
	return l.update(ctx, app, func(s *Settings) error {
		s.Buildpacks = append([]string(nil), urls...)
		return nil
	})
}

// ClearBuildpacks sends app back to auto-detection.
func (l *LocalSettings) ClearBuildpacks(ctx context.Context, app string) error {
	return l.update(ctx, app, func(s *Settings) error {
		if len(s.Buildpacks) == 0 {
			return stow.ErrNoChange
		}
		s.Buildpacks = nil
		return nil
	})
}

// update is the one conditional write of app's settings; fn may be called
// again after a lost race, so it only changes s.
func (l *LocalSettings) update(ctx context.Context, app string, fn func(s *Settings) error) error {
	_, err := stow.UpdateJSON(ctx, l.stow, settingsKey(app), func(s *Settings, _ bool) error {
		if s.Config == nil {
			s.Config = map[string]string{}
		}
		return fn(s)
	})
	if err != nil && !errors.Is(err, ErrConfigTooLarge) && !errors.Is(err, ErrBadConfigKey) {
		return fmt.Errorf("release: save settings for %s: %w", app, err)
	}
	return err
}

var configKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// ValidConfigKey reports whether k may name a config var: letters, digits and
// _, not starting with a digit, at most 128 (it becomes a file in ENV_DIR and
// an environment variable).
func ValidConfigKey(k string) bool { return configKeyRE.MatchString(k) }

// BuildSettings is Get for a build; locally every user sees the same settings.
func (l *LocalSettings) BuildSettings(ctx context.Context, _, app string) (Settings, error) {
	return l.Get(ctx, app)
}
