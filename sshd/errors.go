package sshd

import "errors"

// ErrBadCommand means an SSH command could not be parsed or is not allowed.
var ErrBadCommand = errors.New("sshd: bad command")
