package keys

// NoAccessMessage is what local mode tells a user without access to app: it
// does not hide which apps exist from users who may push (the receiver's
// Access declares it, so every access source states its own text).
func (l *Local) NoAccessMessage(app string) string { return NoAccessMessage(nil, app) }
