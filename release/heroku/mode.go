package heroku

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/stow"
)

// KeyStore resolves a public key to its registered owner (keys.Store).
type KeyStore interface {
	Lookup(ctx context.Context, pk ssh.PublicKey) (keys.Key, error)
}

// LinkStore finds the Heroku account linked to a user (keys.HerokuLinks).
type LinkStore interface {
	Get(ctx context.Context, email string) (keys.HerokuLink, error)
}

// SlugStore reads the slugs the receiver stowed (stow.Store).
type SlugStore interface {
	Get(ctx context.Context, key string) (io.ReadCloser, stow.Info, error)
	Stat(ctx context.Context, key string) (stow.Info, error)
}

// DefaultKeyTTL is how long a verified key link is trusted (DESIGN's
// --heroku-key-ttl).
const DefaultKeyTTL = 5 * time.Minute

// transientTTL is how long a failure to reach Heroku is remembered, so the
// key callback and the session that follows it do not both wait out the retry
// budget; short, so a recovered API is used at once.
const transientTTL = 2 * time.Second

// ModeConfig wires Heroku mode.
type ModeConfig struct {
	Client *Client
	Keys   KeyStore         // the key store; keys.Store
	Links  LinkStore        // account links; keys.HerokuLinks
	Slugs  SlugStore        // the stow the receiver puts slugs in
	KeyTTL time.Duration    // DefaultKeyTTL
	Logger *slog.Logger     // discard
	Now    func() time.Time // time.Now; tests move it to expire the key cache
}

// Mode is Heroku mode's set of seams, for cmd to hand to sshd and the receiver
// in place of the local ones.
type Mode struct {
	Keys     *Keys
	Access   *Access
	Settings *Settings
	Releaser *Releaser
}

// NewMode builds Heroku mode from cfg.
func NewMode(cfg ModeConfig) (*Mode, error) {
	if cfg.Client == nil || cfg.Keys == nil || cfg.Links == nil || cfg.Slugs == nil {
		return nil, errors.New("heroku: mode needs a client, a key store, a link store and a slug store")
	}
	if cfg.KeyTTL <= 0 {
		cfg.KeyTTL = DefaultKeyTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	k := &Keys{client: cfg.Client, store: cfg.Keys, links: cfg.Links, ttl: cfg.KeyTTL, now: cfg.Now,
		log: cfg.Logger, cache: map[string]keyCheck{}}
	return &Mode{
		Keys:     k,
		Access:   &Access{client: cfg.Client, links: cfg.Links, keys: k},
		Settings: &Settings{client: cfg.Client, links: cfg.Links, keys: k},
		Releaser: &Releaser{client: cfg.Client, links: cfg.Links, slugs: cfg.Slugs, keys: k, log: cfg.Logger},
	}, nil
}

// Keys is Heroku mode's key lookup for the front door (SPEC G6). A key must be
// in the key store and still be registered on the Heroku account it was linked
// through: the account's keys are fetched with the linked token and trusted for
// the TTL, so a key removed from the account, or a revoked token, stops working
// within it. A refusal is a *keys.RefusedError whose UserMessage says why.
type Keys struct {
	client *Client
	store  KeyStore
	links  LinkStore
	ttl    time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu    sync.Mutex
	cache map[string]keyCheck // by account email and token digest
}

// keyCheck is one fetch of an account's keys: the list, or the refusal to repeat.
type keyCheck struct {
	keys    []Key
	refusal *keys.RefusedError
	expires time.Time
}

// Lookup returns the registered key equal to pk once its account link holds.
// An operator's admin key that was added without a Heroku account works as in
// local mode: it runs admin commands, and cannot push.
func (k *Keys) Lookup(ctx context.Context, pk ssh.PublicKey) (keys.Key, error) {
	key, err := k.store.Lookup(ctx, pk)
	if err != nil {
		return keys.Key{}, err
	}
	link, err := k.links.Get(ctx, key.User)
	switch {
	case errors.Is(err, keys.ErrNotLinked) && key.Role == keys.RoleAdmin:
		return key, nil
	case errors.Is(err, keys.ErrNotLinked):
		return keys.Key{}, &keys.RefusedError{Err: err,
			Reason: "this key is not linked to a Heroku account; link it with `sokoban keys add --heroku-token-file FILE KEYFILE`"}
	case err != nil:
		return keys.Key{}, err
	}
	list, refusal := k.accountKeys(ctx, link)
	if refusal != nil {
		return keys.Key{}, refusal
	}
	for _, hk := range list {
		if KeyMatches(hk, pk) {
			return key, nil
		}
	}
	return keys.Key{}, &keys.RefusedError{Reason: fmt.Sprintf(
		"your key %s is no longer registered on the Heroku account %s; add it there again and link it (sokoban keys add --heroku-token-file)",
		key.Fingerprint, link.Email)}
}

// accountKeys returns link's account keys from the cache or from Heroku.
func (k *Keys) accountKeys(ctx context.Context, link keys.HerokuLink) ([]Key, *keys.RefusedError) {
	id := link.Email + "\x00" + tokenDigest(link.Token)
	k.mu.Lock()
	c, ok := k.cache[id]
	k.mu.Unlock()
	if ok && k.now().Before(c.expires) {
		return c.keys, c.refusal
	}
	list, err := k.client.AccountKeys(ctx, link.Token)
	switch {
	case err == nil:
		k.remember(id, keyCheck{keys: list, expires: k.now().Add(k.ttl)})
		return list, nil
	case errors.Is(err, ErrUnauthorized):
		r := revokedRefusal(link, err)
		k.remember(id, keyCheck{refusal: r, expires: k.now().Add(k.ttl)})
		return nil, r
	}
	k.log.Warn("heroku: key verification failed", "account", link.Email, "err", err)
	r := &keys.RefusedError{Err: err,
		Reason: "your key could not be verified with Heroku (" + UserMessage(err) + "); try again in a moment"}
	if ctx.Err() == nil {
		k.remember(id, keyCheck{refusal: r, expires: k.now().Add(min(k.ttl, transientTTL))})
	}
	return nil, r
}

// tokenRejected records that Heroku answered 401 to link's token during a
// push, so the next connection is refused with the reason at once instead of
// after the TTL.
func (k *Keys) tokenRejected(link keys.HerokuLink, err error) {
	if k == nil || !errors.Is(err, ErrUnauthorized) {
		return
	}
	k.remember(link.Email+"\x00"+tokenDigest(link.Token), keyCheck{refusal: revokedRefusal(link, err), expires: k.now().Add(k.ttl)})
}

func revokedRefusal(link keys.HerokuLink, err error) *keys.RefusedError {
	return &keys.RefusedError{Err: err, Reason: fmt.Sprintf(
		"Heroku rejected the token linked to %s (expired or revoked); link your key again with a new token (sokoban keys add --heroku-token-file)",
		link.Email)}
}

func (k *Keys) remember(id string, c keyCheck) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	for old, e := range k.cache {
		if !now.Before(e.expires) {
			delete(k.cache, old)
		}
	}
	k.cache[id] = c
}
