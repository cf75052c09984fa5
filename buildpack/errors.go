package buildpack

import "errors"

// Build failures. Build has already printed the user-facing lines when it returns
// one of these; callers add their own closing line (" !     Push failed").
var (
	ErrFetch         = errors.New("buildpack: fetch failed")
	ErrBroken        = errors.New("buildpack: broken buildpack")
	ErrNotDetected   = errors.New("buildpack: no buildpack detected the app")
	ErrCompile       = errors.New("buildpack: compile failed")
	ErrRelease       = errors.New("buildpack: bin/release failed")
	ErrProcfile      = errors.New("buildpack: malformed Procfile")
	ErrSlugTooLarge  = errors.New("buildpack: slug too large")
	ErrTimeout       = errors.New("buildpack: compile timed out")
	ErrLocalNotAllow = errors.New("buildpack: local paths are only allowed in the server's configuration")
)
