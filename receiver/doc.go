// Package receiver runs one push (or clone) of one app from start to end: it takes
// the app's lease, prepares the repository from the node cache or stow, runs the
// real `git receive-pack` whose pre-receive hook calls back here to build and
// release, then stows the repository and records the build. It never parses SSH
// and never talks to S3 or Redis directly: those sit behind small interfaces.
package receiver
