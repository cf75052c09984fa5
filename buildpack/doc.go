// Package buildpack runs the classic Heroku buildpack API on a source directory:
// it fetches buildpacks, runs bin/detect, bin/compile and bin/release with an
// environment built from nothing, reads the Procfile, and packs the slug. It knows
// nothing about SSH, git pushes or who owns an app.
package buildpack
