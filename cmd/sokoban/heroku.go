package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/receiver"
	"github.com/sokoban-deploy/sokoban/release"
	"github.com/sokoban-deploy/sokoban/release/heroku"
	"github.com/sokoban-deploy/sokoban/sshd"
	"github.com/sokoban-deploy/sokoban/stow"
)

// herokuAPIFlags reach the Platform API; `serve` and `keys add` share them.
type herokuAPIFlags struct {
	api           string
	timeout       time.Duration
	retryBudget   time.Duration
	uploadTimeout time.Duration
}

func (h *herokuAPIFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.api, "heroku-api", heroku.DefaultBaseURL, "Heroku mode: Platform API URL")
	fs.DurationVar(&h.timeout, "heroku-timeout", 30*time.Second, "Heroku mode: limit for one API request")
	fs.DurationVar(&h.retryBudget, "heroku-retry-budget", time.Minute,
		"Heroku mode: how long one API call keeps retrying 429, 5xx and timeouts before it fails")
	fs.DurationVar(&h.uploadTimeout, "heroku-upload-timeout", 15*time.Minute, "Heroku mode: limit for one slug upload attempt")
}

func (h *herokuAPIFlags) client(log *slog.Logger) (*heroku.Client, error) {
	if h.timeout <= 0 || h.retryBudget <= 0 || h.uploadTimeout <= 0 {
		return nil, errors.New("--heroku-timeout, --heroku-retry-budget and --heroku-upload-timeout must be positive")
	}
	c, err := heroku.New(heroku.Config{
		BaseURL: h.api, Version: Version(), Logger: log,
		CallTimeout: h.timeout, RetryBudget: h.retryBudget, UploadTimeout: h.uploadTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("--heroku-api: %w", err)
	}
	return c, nil
}

// herokuFlags choose where identity, access, build settings and releases come
// from (`serve --release local|heroku`).
type herokuFlags struct {
	herokuAPIFlags
	release string
	keyTTL  time.Duration
}

func (h *herokuFlags) register(fs *flag.FlagSet) {
	h.herokuAPIFlags.register(fs)
	fs.StringVar(&h.release, "release", "local",
		"local, or heroku: keys checked against Heroku accounts, access, config and releases through the Platform API")
	fs.DurationVar(&h.keyTTL, "heroku-key-ttl", heroku.DefaultKeyTTL, "Heroku mode: how long a verified key link is trusted")
}

// modeSeams are what serve hands to sshd and the receiver for identity,
// access, build settings and releases.
type modeSeams struct {
	keys     sshd.KeyLookup
	access   receiver.Access // sshd.Access too
	settings receiver.Settings
	releaser receiver.Releaser
	heroku   bool
	// linker links keys to Heroku accounts, for the admin SSH command that
	// does what `keys add --heroku-token-file` does; nil in local mode.
	linker *heroku.Linker
	// releaseTimeout bounds a sent release; 0 keeps the receiver's default.
	releaseTimeout time.Duration
}

// seams returns the local seams, or Heroku mode's built over the same key
// store and stow.
func (h *herokuFlags) seams(store stow.Store, keyStore *keys.Store, keyRefresh time.Duration, local *keys.Local, log *slog.Logger) (modeSeams, error) {
	switch h.release {
	case "local":
		return modeSeams{keys: keyStore, access: local, settings: release.NewLocalSettings(store), releaser: release.NewLocal(store)}, nil
	case "heroku":
	default:
		return modeSeams{}, fmt.Errorf("--release must be local or heroku, not %q", h.release)
	}
	if h.keyTTL <= 0 {
		return modeSeams{}, errors.New("--heroku-key-ttl must be positive")
	}
	client, err := h.client(log)
	if err != nil {
		return modeSeams{}, err
	}
	links := keys.NewCachedHerokuLinks(store, keyRefresh)
	m, err := heroku.NewMode(heroku.ModeConfig{
		Client: client, Keys: keyStore, Links: links, Slugs: store, KeyTTL: h.keyTTL, Logger: log,
	})
	if err != nil {
		return modeSeams{}, err
	}
	log.Info("heroku mode", "api", h.api, "key_ttl", h.keyTTL)
	return modeSeams{
		keys: m.Keys, access: m.Access, settings: m.Settings, releaser: m.Releaser, heroku: true,
		linker: heroku.NewLinker(client, keyStore, links),
		// Three API calls, each within its retry budget, around a slug upload.
		releaseTimeout: 3*(h.retryBudget+h.timeout) + h.uploadTimeout,
	}, nil
}

// herokuKeyFlags are `keys add`'s Heroku linking flags.
type herokuKeyFlags struct {
	herokuAPIFlags
	tokenFile string
}

func (h *herokuKeyFlags) register(fs *flag.FlagSet) {
	h.herokuAPIFlags.register(fs)
	fs.StringVar(&h.tokenFile, "heroku-token-file", "",
		"keys add: link the key to the Heroku account of the API token in this file (the account's email is the user)")
}

// add links the key in args (KEYFILE or -) to the token's Heroku account
// (SPEC G6). The token is read from a file, never from the command line where
// other users could see it, and is never printed.
func (h *herokuKeyFlags) add(ctx context.Context, st stow.Store, store *keys.Store, admin bool, args []string,
	stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		return fail(stderr, "usage: sokoban keys add --heroku-token-file FILE KEYFILE|- (the Heroku account's email is the user)")
	}
	if admin {
		return fail(stderr, "--admin does not go with --heroku-token-file: a linked key is a user's")
	}
	token, err := os.ReadFile(h.tokenFile)
	if err != nil {
		return fail(stderr, "read the token file: %v", err)
	}
	data, err := readKeyArg(args[0], stdin)
	if err != nil {
		return fail(stderr, "read key: %v", err)
	}
	client, err := h.client(slog.New(slog.DiscardHandler))
	if err != nil {
		return fail(stderr, "%v", err)
	}
	k, err := heroku.NewLinker(client, store, keys.NewHerokuLinks(st)).LinkKey(ctx, string(token), data)
	if err != nil {
		if ue, ok := errors.AsType[*heroku.UserError](err); ok {
			return fail(stderr, "%s", ue.Message)
		}
		return fail(stderr, "%v", err)
	}
	_, _ = fmt.Fprintf(stdout, "linked %s key %s to the Heroku account %s\n", k.Type(), k.Fingerprint, k.User)
	return 0
}

// keyLinker is the linker as an interface that is nil, not a typed nil
// pointer, outside Heroku mode.
func (m modeSeams) keyLinker() sshd.KeyLinker {
	if m.linker == nil {
		return nil
	}
	return m.linker
}
