// Package proc runs a child process the way every part of Sokoban needs: an
// environment built from nothing, its own process group that dies as a whole on
// cancel or when the main process exits, and output fully drained before Run
// returns. It knows nothing about git or buildpacks.
package proc
