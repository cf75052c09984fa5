// Command sokoban is the single binary: `serve` runs the SSH front door, `keys`
// manages the key store, `build` runs the buildpack pipeline on a directory, and
// `hook` is the git hook client. This package only turns flags and environment
// into configuration and wires the packages together; it holds no logic.
package main
