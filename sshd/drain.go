package sshd

// SetDraining turns the refusal of new pushes on or off (SPEC H5, DESIGN
// "Drain"). While draining, the listener stays open: admin commands, clones and
// pushes already running go on; a new push hears the git ERR line
// "server is restarting, try again in a moment" before receive-pack starts.
func (s *Server) SetDraining(on bool) { s.draining.Store(on) }

// Draining reports whether new pushes are refused.
func (s *Server) Draining() bool { return s.draining.Load() }
