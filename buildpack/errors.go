package buildpack

import "errors"

// Build failures. Build has already printed the user-facing lines when it returns
// one of these; callers add their own closing line (" !     Push failed").
var (
	ErrFetch        = errors.New("buildpack: fetch failed")
	ErrBroken       = errors.New("buildpack: broken buildpack")
	ErrNotDetected  = errors.New("buildpack: no buildpack detected the app")
	ErrCompile      = errors.New("buildpack: compile failed")
	ErrRelease      = errors.New("buildpack: bin/release failed")
	ErrProcfile     = errors.New("buildpack: malformed Procfile")
	ErrSlugTooLarge = errors.New("buildpack: slug too large")
	// ErrPackTooLarge is a slug or build cache that passed its bound while
	// being packed (see PackLimitError).
	ErrPackTooLarge  = errors.New("buildpack: too large to pack")
	ErrTimeout       = errors.New("buildpack: compile timed out")
	ErrLocalNotAllow = errors.New("buildpack: local paths are only allowed in the server's configuration")
	// ErrSandbox: bubblewrap does not work on this machine (or failed for a build).
	ErrSandbox = errors.New("buildpack: sandbox unavailable")
	// ErrSandboxMode: a --sandbox value other than auto, bwrap or none.
	ErrSandboxMode = errors.New("buildpack: unknown sandbox mode")
	// ErrShortName: a short-name map entry that is not NAME=URL.
	ErrShortName = errors.New("buildpack: bad short-name mapping")
	// ErrArchive: a tarball (buildpack or build cache) that is not a safe,
	// well-formed gzip'd tar.
	ErrArchive = errors.New("buildpack: bad archive")
	// ErrSourceFile: a file the server reads from the build directory
	// (.buildpacks, Procfile, .slugignore) that is a symlink, not a regular
	// file, or too large.
	ErrSourceFile = errors.New("buildpack: refused source file")
	// ErrUserDestination: a user's URL leads to an address users may not
	// reach (loopback, private, link-local...; see egress.go).
	ErrUserDestination = errors.New("buildpack: destination not allowed for a user's URL")
	// ErrUserSSH: a user's ssh URL on a server that does not allow them.
	ErrUserSSH = errors.New("buildpack: ssh URLs not allowed for users")
	// ErrFetchAllow: a --user-fetch-allow entry that is not a CIDR prefix or
	// an address.
	ErrFetchAllow = errors.New("buildpack: bad address range (want CIDR such as 10.0.0.0/8, or an address)")
)

// Build confinement (README "Sandbox"): the limits a build ran into, and a
// build network that could not be set up.
var (
	ErrProcessLimit = errors.New("buildpack: the build hit its process limit")
	ErrMemoryLimit  = errors.New("buildpack: the build hit its memory limit")
	ErrBuildNetwork = errors.New("buildpack: build network unavailable")
	// ErrNetAllow: a --build-net-allow entry that is not an address or CIDR.
	ErrNetAllow = errors.New("buildpack: bad build network allow-list entry")
	// ErrSlugignore: a .slugignore past its bounds (size, pattern count,
	// pattern length); the message goes on with what is wrong.
	ErrSlugignore = errors.New("buildpack: .slugignore")
	// ErrBuildpacksFile: a .buildpacks that cannot be used as it is (too
	// many lines, a line too long or not printable).
	ErrBuildpacksFile = errors.New("buildpack: .buildpacks")
	// ErrLocalBuild: a BuildLocal whose build ran and failed; its output
	// has told the operator why.
	ErrLocalBuild = errors.New("buildpack: local build failed")
)

// errPackedOver is countWriter's signal that the compressed output passed
// its bound; packTar turns it into a *PackLimitError.
var errPackedOver = errors.New("compressed output passed its bound")
