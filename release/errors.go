package release

import "errors"

// ErrNoRelease means the app has no release yet.
var ErrNoRelease = errors.New("release: no release yet")
