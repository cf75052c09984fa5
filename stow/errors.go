package stow

import "errors"

// ErrNotFound is returned when no object exists under a key.
var ErrNotFound = errors.New("stow: object not found")

// ErrBadKey is returned for keys that are empty, absolute, or climb out of the store.
var ErrBadKey = errors.New("stow: invalid key")
