package release

import (
	"errors"
	"fmt"
)

// ErrNoRelease means the app has no release yet.
var ErrNoRelease = errors.New("release: no release yet")

// ErrConfigTooLarge means an app's config vars would pass MaxConfigSize.
var ErrConfigTooLarge = errors.New("release: config vars too large")

// ErrSuperseded means another push released the app since this one read its
// current version (Request.Base): the release was not written.
var ErrSuperseded = errors.New("release: superseded by another release")

// SupersededError is ErrSuperseded with the version that got there first.
type SupersededError struct {
	App     string
	Base    int // the version this release was to follow
	Version int // the app's release that is newer than Base
}

func (e *SupersededError) Error() string {
	return fmt.Sprintf("release: %s: v%d was released since v%d, the version this release started from", e.App, e.Version, e.Base)
}

// Is makes errors.Is(err, ErrSuperseded) true.
func (e *SupersededError) Is(target error) bool { return target == ErrSuperseded }

// ErrBadConfigKey means a config var name does not follow ValidConfigKey.
var ErrBadConfigKey = errors.New("release: invalid config var name")
