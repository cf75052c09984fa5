package keys

import "errors"

var (
	// ErrUnknownKey means no user is registered for a public key.
	ErrUnknownKey = errors.New("keys: unknown key")
	// ErrDuplicateKey means the key is already registered (to any user).
	ErrDuplicateKey = errors.New("keys: key already registered")
	// ErrNoSuchKey means no key has the given fingerprint.
	ErrNoSuchKey = errors.New("keys: no key with that fingerprint")
	// ErrBadUser means a user name does not follow the rule in ValidUser.
	ErrBadUser = errors.New("keys: invalid user name")
	// ErrBadKeyFile means a line of the key store or of an input key could not be parsed.
	ErrBadKeyFile = errors.New("keys: malformed key")
	// ErrNotRegistered means a user has no key here, so cannot be given access.
	ErrNotRegistered = errors.New("keys: user has no key registered")
	// ErrOwner means the change would remove an app's owner.
	ErrOwner = errors.New("keys: an owner cannot be removed")
	// ErrNotCollaborator means the user is not on the app's access list.
	ErrNotCollaborator = errors.New("keys: not a collaborator")
	// ErrClaimed means another user created the app first.
	ErrClaimed = errors.New("keys: app already owned by another user")
)
