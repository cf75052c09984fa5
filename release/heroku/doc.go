// Package heroku is Heroku mode (SPEC G in docs/behaviour.md): a client for
// the part of Heroku's Platform API it needs, and on top of it the seams the
// front door and the receiver take — key lookup re-verified against the
// account, access, build settings, releases — plus linking a key to an account.
// Heroku's answers make every decision; the package never builds, and stores
// nothing but account links.
package heroku
