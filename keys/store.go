package keys

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/stow"
)

// StoreKey is where the key store lives in stow, so every node sees the same keys.
const StoreKey = "keys/authorized_keys"

// Role is what a user may do beyond their own apps.
type Role string

// Roles, from least to most privileged.
const (
	RoleUser  Role = "user"
	RoleAdmin Role = "admin"
)

var userRE = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,64}$`)

// ValidUser reports whether name is an acceptable user name: an e-mail address or
// a simple name.
func ValidUser(name string) bool { return userRE.MatchString(name) }

// Key is one registered public key.
type Key struct {
	User        string
	Role        Role
	PublicKey   gossh.PublicKey
	Comment     string
	Fingerprint string // SHA256:…, as ssh-keygen -l prints it
}

// Type is the key's algorithm, e.g. ssh-ed25519.
func (k Key) Type() string { return k.PublicKey.Type() }

// Store is the key store: a file in stow, one key per line, re-read when it
// changes so a running server sees `sokoban keys` edits without a restart.
type Store struct {
	stow    stow.Store
	refresh time.Duration
	now     func() time.Time

	mu      sync.Mutex
	keys    []Key
	etag    string
	checked time.Time
	loaded  bool
}

// NewStore returns a key store kept in s. refresh bounds how stale a lookup may
// be: the store checks whether the file changed at most once per refresh.
func NewStore(s stow.Store, refresh time.Duration) *Store {
	return &Store{stow: s, refresh: refresh, now: time.Now}
}

// Lookup returns the registered key equal to pk.
func (s *Store) Lookup(ctx context.Context, pk gossh.PublicKey) (Key, error) {
	keys, err := s.current(ctx)
	if err != nil {
		return Key{}, err
	}
	want := pk.Marshal()
	for _, k := range keys {
		if bytes.Equal(k.PublicKey.Marshal(), want) {
			return k, nil
		}
	}
	return Key{}, ErrUnknownKey
}

// List returns every registered key, sorted by user then fingerprint.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	keys, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	out := append([]Key(nil), keys...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Fingerprint < out[j].Fingerprint
	})
	return out, nil
}

// Add registers pk for user with role. A key belongs to one user only.
func (s *Store) Add(ctx context.Context, user string, role Role, pk gossh.PublicKey, comment string) (Key, error) {
	if !ValidUser(user) {
		return Key{}, fmt.Errorf("%w: %q (use an e-mail address or letters, digits and ._@+-, at most 64)", ErrBadUser, user)
	}
	if role != RoleUser && role != RoleAdmin {
		return Key{}, fmt.Errorf("keys: unknown role %q", role)
	}
	k := Key{User: user, Role: role, PublicKey: pk, Comment: cleanComment(comment), Fingerprint: gossh.FingerprintSHA256(pk)}
	err := s.update(ctx, func(keys []Key) ([]Key, error) {
		for _, old := range keys {
			if old.Fingerprint == k.Fingerprint {
				return nil, fmt.Errorf("%w: %s belongs to %s", ErrDuplicateKey, k.Fingerprint, old.User)
			}
		}
		return append(keys, k), nil
	})
	return k, err
}

// Remove deletes the key with the given SHA256 fingerprint (with or without the
// "SHA256:" prefix).
func (s *Store) Remove(ctx context.Context, fingerprint string) (Key, error) {
	if !strings.HasPrefix(fingerprint, "SHA256:") {
		fingerprint = "SHA256:" + fingerprint
	}
	var removed Key
	err := s.update(ctx, func(keys []Key) ([]Key, error) {
		out := keys[:0:0]
		for _, k := range keys {
			if k.Fingerprint == fingerprint {
				removed = k
				continue
			}
			out = append(out, k)
		}
		if len(out) == len(keys) {
			return nil, fmt.Errorf("%w: %s", ErrNoSuchKey, fingerprint)
		}
		return out, nil
	})
	return removed, err
}

// HasUser reports whether name has a key here.
func (s *Store) HasUser(ctx context.Context, name string) (bool, error) {
	keys, err := s.current(ctx)
	if err != nil {
		return false, err
	}
	for _, k := range keys {
		if k.User == name {
			return true, nil
		}
	}
	return false, nil
}

// update applies fn to the freshly read key list and writes the result only
// if the file is still the one read (Create when there was none, Swap on its
// ETag), reading again after a lost race: two nodes adding keys at once both
// land. The mutex only spares this process's own writers the retry.
func (s *Store) update(ctx context.Context, fn func([]Key) ([]Key, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 0; ; attempt++ {
		keys, etag, err := s.read(ctx)
		if err != nil {
			return err
		}
		keys, err = fn(keys)
		if err != nil {
			return err
		}
		var info stow.Info
		if etag == "" {
			info, err = s.stow.Create(ctx, StoreKey, bytes.NewReader(Format(keys)))
		} else {
			info, err = s.stow.Swap(ctx, StoreKey, bytes.NewReader(Format(keys)), etag)
		}
		if errors.Is(err, stow.ErrConflict) && attempt < updateAttempts {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(1+rand.IntN(5)) * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("keys: write store: %w", err)
		}
		s.keys, s.etag, s.checked, s.loaded = keys, info.ETag, s.now(), true
		return nil
	}
}

// updateAttempts bounds update's retries after lost races, as UpdateJSON's do.
const updateAttempts = 50

// current returns the cached keys, re-reading the store when it changed.
func (s *Store) current(ctx context.Context) ([]Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded && s.now().Sub(s.checked) < s.refresh {
		return s.keys, nil
	}
	info, err := s.stow.Stat(ctx, StoreKey)
	switch {
	case errors.Is(err, stow.ErrNotFound):
		s.keys, s.etag, s.checked, s.loaded = nil, "", s.now(), true
		return nil, nil
	case err != nil:
		if s.loaded {
			// Keep serving the last good copy; stow may be briefly unreachable.
			return s.keys, nil
		}
		return nil, fmt.Errorf("keys: stat store: %w", err)
	}
	if s.loaded && info.ETag == s.etag {
		s.checked = s.now()
		return s.keys, nil
	}
	keys, etag, err := s.read(ctx)
	if err != nil {
		if s.loaded {
			return s.keys, nil
		}
		return nil, err
	}
	s.keys, s.etag, s.checked, s.loaded = keys, etag, s.now(), true
	return keys, nil
}

func (s *Store) read(ctx context.Context) ([]Key, string, error) {
	b, info, err := stow.ReadAll(ctx, s.stow, StoreKey)
	if errors.Is(err, stow.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("keys: read store: %w", err)
	}
	keys, err := Parse(b)
	if err != nil {
		return nil, "", err
	}
	return keys, info.ETag, nil
}

const header = `# Sokoban key store: one key per line, "USER ROLE KEYTYPE BASE64 [COMMENT]".
# Managed with "sokoban keys add|list|remove"; running servers pick up changes within seconds.
`

// Format renders keys in the store's file format.
func Format(keys []Key) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	for _, k := range keys {
		line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k.PublicKey)))
		fmt.Fprintf(&b, "%s %s %s", k.User, k.Role, line)
		if k.Comment != "" {
			fmt.Fprintf(&b, " %s", k.Comment)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Parse reads the store's file format. Blank lines and # comments are ignored.
func Parse(data []byte) ([]Key, error) {
	var keys []Key
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 {
			return nil, fmt.Errorf("%w: key store line %d: want USER ROLE KEYTYPE BASE64", ErrBadKeyFile, n)
		}
		user, role := fields[0], Role(fields[1])
		if !ValidUser(user) || (role != RoleUser && role != RoleAdmin) {
			return nil, fmt.Errorf("%w: key store line %d: bad user or role", ErrBadKeyFile, n)
		}
		pk, comment, _, _, err := gossh.ParseAuthorizedKey([]byte(strings.Join(fields[2:], " ")))
		if err != nil {
			return nil, fmt.Errorf("%w: key store line %d: %v", ErrBadKeyFile, n, err)
		}
		keys = append(keys, Key{User: user, Role: role, PublicKey: pk, Comment: comment, Fingerprint: gossh.FingerprintSHA256(pk)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKeyFile, err)
	}
	return keys, nil
}

// ParsePublicKey reads one public key in authorized_keys form (as in id_ed25519.pub).
func ParsePublicKey(data []byte) (gossh.PublicKey, string, error) {
	pk, comment, _, rest, err := gossh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrBadKeyFile, err)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, "", fmt.Errorf("%w: expected exactly one public key", ErrBadKeyFile)
	}
	return pk, comment, nil
}

// cleanComment keeps the comment on one line of printable text.
func cleanComment(c string) string {
	c = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, c)
	return strings.Join(strings.Fields(c), " ")
}
