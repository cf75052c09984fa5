package keys

import "context"

// Reload re-reads the key store now, whatever the refresh interval says, so an
// operator's SIGHUP makes an edit live at once. On error the last good copy
// stays in use.
func (s *Store) Reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys, etag, err := s.read(ctx)
	if err != nil {
		return err
	}
	s.keys, s.etag, s.checked, s.loaded = keys, etag, s.now(), true
	return nil
}
