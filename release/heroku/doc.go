// Package heroku is the client for the part of Heroku's Platform API that Heroku
// mode needs (SPEC G): who a token belongs to and its SSH keys, whether the token
// may push an app, the app's build settings, and slug upload → release.
// It never builds, never stores anything and never makes the access decision itself.
package heroku
