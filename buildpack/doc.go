// Package buildpack runs the classic Heroku buildpack API on a source directory:
// it fetches buildpacks (directories, git, tarballs, short names; cached per node),
// runs bin/detect, bin/compile and bin/release in a bubblewrap sandbox with an
// environment built from nothing, applies .slugignore, reads the Procfile, packs
// the slug and the build cache. It knows nothing about SSH, git pushes or who
// owns an app.
package buildpack
