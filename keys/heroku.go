package keys

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sokoban-deploy/sokoban/stow"
)

// HerokuLinkPrefix is where Heroku mode keeps its account links in stow, beside
// the key store, so every node sees them.
const HerokuLinkPrefix = "keys/heroku/"

// ErrNotLinked means no Heroku account is linked to a user.
var ErrNotLinked = errors.New("keys: no Heroku account linked")

// HerokuLink ties a user (a Heroku account's email) to the API token that
// proved the account owns the user's keys (SPEC G6). There is one link per
// account, not per key: releases and build settings are asked for by user, and
// the newest token linked for the account is the one every key of it uses.
type HerokuLink struct {
	Email     string    `json:"email"`
	AccountID string    `json:"account_id"`
	Token     string    `json:"token"`
	LinkedAt  time.Time `json:"linked_at"`
}

// String leaves the token out, so a link printed by mistake shows no secret.
func (l HerokuLink) String() string {
	return fmt.Sprintf("heroku link %s (account %s, linked %s)", l.Email, l.AccountID, l.LinkedAt.Format(time.RFC3339))
}

// GoString is String, for %#v.
func (l HerokuLink) GoString() string { return l.String() }

// LogValue leaves the token out of structured logs.
func (l HerokuLink) LogValue() slog.Value {
	return slog.GroupValue(slog.String("email", l.Email), slog.String("account_id", l.AccountID))
}

// HerokuLinks keeps account links in stow, one object per account, named by a
// digest of the email so the key never carries an address. The local store
// writes them 0600; on S3 they are as private as the bucket.
type HerokuLinks struct {
	stow stow.Store
	now  func() time.Time
	// refresh bounds how stale a cached Get may be; 0 reads stow every time.
	// Every connection looks its link up twice (DESIGN rule 4), so a server
	// caches, as the key store does.
	refresh time.Duration

	mu    sync.Mutex
	cache map[string]cachedLink
}

type cachedLink struct {
	link    HerokuLink
	err     error // ErrNotLinked, cached too; other errors are not
	fetched time.Time
}

// NewHerokuLinks returns the link store kept in s.
func NewHerokuLinks(s stow.Store) *HerokuLinks { return NewCachedHerokuLinks(s, 0) }

// NewCachedHerokuLinks returns a link store whose reads may be up to refresh
// old, like a server's key store: links made elsewhere show within refresh.
func NewCachedHerokuLinks(s stow.Store, refresh time.Duration) *HerokuLinks {
	return &HerokuLinks{stow: s, now: time.Now, refresh: refresh, cache: map[string]cachedLink{}}
}

// HerokuLinkKey is the stow key of email's link.
func HerokuLinkKey(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return HerokuLinkPrefix + hex.EncodeToString(sum[:]) + ".json"
}

// Put stores l, replacing the account's previous link.
func (h *HerokuLinks) Put(ctx context.Context, l HerokuLink) error {
	if !ValidUser(l.Email) {
		return fmt.Errorf("%w: %q", ErrBadUser, l.Email)
	}
	if l.Token == "" {
		return fmt.Errorf("keys: heroku link for %s has no token", l.Email)
	}
	if l.LinkedAt.IsZero() {
		l.LinkedAt = h.now().UTC()
	}
	if _, err := stow.PutJSON(ctx, h.stow, HerokuLinkKey(l.Email), l); err != nil {
		return fmt.Errorf("keys: save heroku link of %s: %w", l.Email, err)
	}
	h.remember(l.Email, l, nil)
	return nil
}

// Get returns email's link, or ErrNotLinked.
func (h *HerokuLinks) Get(ctx context.Context, email string) (HerokuLink, error) {
	if h.refresh > 0 {
		h.mu.Lock()
		c, ok := h.cache[strings.ToLower(email)]
		h.mu.Unlock()
		if ok && h.now().Sub(c.fetched) < h.refresh {
			return c.link, c.err
		}
	}
	l, err := h.read(ctx, email)
	if err == nil || errors.Is(err, ErrNotLinked) {
		h.remember(email, l, err)
	}
	return l, err
}

func (h *HerokuLinks) remember(email string, l HerokuLink, err error) {
	if h.refresh <= 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cache[strings.ToLower(email)] = cachedLink{link: l, err: err, fetched: h.now()}
}

func (h *HerokuLinks) read(ctx context.Context, email string) (HerokuLink, error) {
	var l HerokuLink
	_, err := stow.GetJSON(ctx, h.stow, HerokuLinkKey(email), &l)
	if errors.Is(err, stow.ErrNotFound) {
		return HerokuLink{}, fmt.Errorf("%w to %s", ErrNotLinked, email)
	}
	if err != nil {
		return HerokuLink{}, fmt.Errorf("keys: heroku link of %s: %w", email, err)
	}
	if l.Token == "" || !strings.EqualFold(l.Email, email) {
		return HerokuLink{}, fmt.Errorf("keys: heroku link of %s is damaged; link a key again", email)
	}
	return l, nil
}
