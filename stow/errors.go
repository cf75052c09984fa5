package stow

import "errors"

// ErrNotFound is returned when no object exists under a key.
var ErrNotFound = errors.New("stow: object not found")

// ErrBadKey is returned for keys that are empty, absolute, or climb out of the store.
var ErrBadKey = errors.New("stow: invalid key")

// ErrCorrupt is returned while reading an object whose body does not match what
// the store recorded for it: fewer or more bytes than its size, or another hash.
var ErrCorrupt = errors.New("stow: object truncated or corrupt")

// ErrBadURL is returned for a store location (s3://BUCKET/PREFIX, an S3
// endpoint) that cannot be used.
var ErrBadURL = errors.New("stow: invalid store URL")

// ErrConflict is returned by a conditional write (Create, Swap) whose
// precondition no longer held: another writer got there first. Nothing was
// written.
var ErrConflict = errors.New("stow: conditional write lost a race")
