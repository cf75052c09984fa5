package release

import "errors"

// ErrNoRelease means the app has no release yet.
var ErrNoRelease = errors.New("release: no release yet")

// ErrConfigTooLarge means an app's config vars would pass MaxConfigSize.
var ErrConfigTooLarge = errors.New("release: config vars too large")

// ErrBadConfigKey means a config var name does not follow ValidConfigKey.
var ErrBadConfigKey = errors.New("release: invalid config var name")
