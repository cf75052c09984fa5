// Package herokutest is an in-process fake of the Heroku Platform API endpoints
// Heroku mode uses, plus a presigned-style blob store for slugs. It checks every
// request against Heroku's published schema (and the headers of SPEC G1 in
// docs/behaviour.md), keeps just enough state to answer, and injects faults; it
// never talks to Heroku.
package herokutest
