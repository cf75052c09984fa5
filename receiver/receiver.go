package receiver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sokoban-deploy/sokoban/buildpack"
	"github.com/sokoban-deploy/sokoban/cluster"
	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/release"
	"github.com/sokoban-deploy/sokoban/stow"
)

// Leaser grants per-app leases (cluster.Local, or Redis in cluster mode).
type Leaser interface {
	Acquire(ctx context.Context, app string, h cluster.Holder) (cluster.Lease, error)
}

// Builder runs the buildpack pipeline (buildpack.Builder).
type Builder interface {
	Build(ctx context.Context, job buildpack.Job) (*buildpack.Result, error)
}

// Releaser creates releases (release.Local, or the Heroku Platform API).
// Its errors may carry a line for the pusher (UserError).
type Releaser interface {
	// Current is the app's current release, or release.ErrNoRelease: its
	// version, read when the push starts under its lease, is the Base of
	// the release the push creates.
	Current(ctx context.Context, app string) (release.Release, error)
	// Create releases req. A releaser that can tell (the local one) refuses
	// a request whose Base is no longer current with release.ErrSuperseded
	// and writes nothing.
	Create(ctx context.Context, app string, req release.Request) (release.Release, error)
	// ReleasedCommit is the newest version that released commit, 0 when none
	// or not known (SPEC A8's note). It must not read the whole history.
	ReleasedCommit(ctx context.Context, app, commit string) (int, error)
}

// UserError is an error from a collaborator (Releaser, Settings) that carries
// its own line for the pusher, such as Heroku mode's API message.
type UserError interface {
	error
	UserMessage() string
}

// Settings supplies an app's config vars and buildpack setting for a build by
// user (Heroku mode reads them with that user's credentials). Its errors may
// carry a line for the pusher (UserError).
type Settings interface {
	BuildSettings(ctx context.Context, user, app string) (release.Settings, error)
}

// Access is the access decision for pushes (keys.Local, or Heroku mode's).
type Access interface {
	// Level is u's access to an existing app (NoAccess when it does not exist).
	Level(ctx context.Context, u keys.User, app string) (keys.Level, error)
	// MayCreate says whether u's push may create app.
	MayCreate(ctx context.Context, u keys.User, app string) (bool, error)
	// Exists says whether app is an app, as far as u can tell.
	Exists(ctx context.Context, u keys.User, app string) (bool, error)
	// Claim makes u the owner of app if it has none yet.
	Claim(ctx context.Context, u keys.User, app string) error
	// NoAccessMessage is what a user without access to app is told ("no
	// such app: APP" locally; Heroku mode cannot tell a missing app from a
	// hidden one and says so).
	NoAccessMessage(app string) string
}

// mayPush is the push decision: collaborator access, or creating a new app.
func mayPush(ctx context.Context, a Access, u keys.User, app string) (bool, error) {
	level, err := a.Level(ctx, u, app)
	if err != nil || level >= keys.Collaborator {
		return level >= keys.Collaborator, err
	}
	return a.MayCreate(ctx, u, app)
}

// Config is the receiver's node-local configuration.
type Config struct {
	DataDir      string   // node-local: repos/ (cache), work/ (per push), run/ (hook socket)
	Node         string   // this node's name, shown in status and "being deployed" messages
	Hook         []string // argv of the pre-receive hook client, e.g. [/usr/bin/sokoban hook pre-receive]
	Git          string   // git binary; default "git"
	MaxInputSize int64    // receive.maxInputSize in bytes; 0 for no limit
	// MaxSourceSize and MaxSourceFiles bound what the pushed commit's tree
	// may unpack to (file contents, and files plus directories); defaults
	// 1G and 100,000.
	MaxSourceSize  int64
	MaxSourceFiles int
	Heartbeat      time.Duration
	ReleaseTimeout time.Duration // how long a sent release may take; default 2m
	StowTimeout    time.Duration // how long stowing the repository may take; default 10m
	KeepBuilds     int           // build records (and logs) kept per app; default 100
	// MaxCacheSize bounds an app's stowed build cache (compressed; the
	// files in CACHE_DIR may add up to four times as much). A larger cache
	// is not saved and the build still succeeds. Default 1G.
	MaxCacheSize int64
	Logger       *slog.Logger
	// Metrics is where the receiver registers its series (metrics.go); nil
	// keeps them unregistered.
	Metrics prometheus.Registerer
}

// Deps are the receiver's collaborators, chosen by cmd.
type Deps struct {
	Store    stow.Store
	Leases   Leaser
	Builder  Builder
	Releaser Releaser
	Settings Settings
	Access   Access
	// Registry makes running builds visible to status, cancel and logs -f on
	// every node.
	Registry cluster.Registry
}

// Receiver serves pushes and clones on this node.
type Receiver struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	repos *repos
	hooks *hookServer
	hdir  string // core.hooksPath for receive-pack

	mu      sync.Mutex
	active  map[string]*push // by app
	drain   drainState
	wg      sync.WaitGroup
	metrics *metrics
}

// New prepares the data directory and starts the hook callback socket.
func New(cfg Config, deps Deps) (*Receiver, error) {
	if cfg.Git == "" {
		cfg.Git = "git"
	}
	if cfg.MaxSourceSize <= 0 {
		cfg.MaxSourceSize = 1 << 30
	}
	if cfg.MaxSourceFiles <= 0 {
		cfg.MaxSourceFiles = 100_000
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.ReleaseTimeout <= 0 {
		cfg.ReleaseTimeout = 2 * time.Minute
	}
	if cfg.StowTimeout <= 0 {
		cfg.StowTimeout = 10 * time.Minute
	}
	if cfg.MaxCacheSize <= 0 {
		cfg.MaxCacheSize = defaultMaxCacheSize
	}
	if cfg.KeepBuilds <= 0 {
		cfg.KeepBuilds = 100
	}
	if len(cfg.Hook) == 0 {
		return nil, fmt.Errorf("receiver: no hook command configured")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = abs
	r := &Receiver{cfg: cfg, deps: deps, log: log, active: map[string]*push{}}
	if r.metrics, err = newMetrics(cfg.Metrics, r.Active); err != nil {
		return nil, err
	}
	if r.repos, err = newRepos(abs, deps.Store, cfg.Git); err != nil {
		return nil, err
	}
	work := filepath.Join(abs, "work")
	// Workspaces of a previous run that crashed are garbage now.
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	if r.hdir, err = writeHooks(filepath.Join(abs, "hooks"), cfg.Hook); err != nil {
		return nil, err
	}
	if r.hooks, err = newHookServer(filepath.Join(abs, "run"), log); err != nil {
		return nil, err
	}
	return r, nil
}

// Close stops the hook socket after running pushes ended.
func (r *Receiver) Close() error {
	r.wg.Wait()
	return r.hooks.close()
}

// writeHooks writes the pre-receive script that execs the hook client.
func writeHooks(dir string, hook []string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("receiver: hooks dir: %w", err)
	}
	var quoted []string
	for _, a := range hook {
		quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	script := "#!/bin/sh\n# Written by sokoban serve: hand the push to the serving process.\nexec " + strings.Join(quoted, " ") + "\n"
	tmp := filepath.Join(dir, ".pre-receive.tmp")
	if err := os.WriteFile(tmp, []byte(script), 0o700); err != nil {
		return "", fmt.Errorf("receiver: write hook: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "pre-receive")); err != nil {
		return "", fmt.Errorf("receiver: write hook: %w", err)
	}
	return dir, nil
}

// Request is one git command on one app from one authenticated user.
type Request struct {
	App         string
	User        keys.User
	ConnID      string
	GitProtocol string // the client's GIT_PROTOCOL, passed to git when well-formed
	Stdin       io.Reader
	Stdout      io.Writer // the git protocol stream
	Stderr      io.Writer
}

// NewBuildID returns a sortable, unique build id: UTC time then randomness.
func NewBuildID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b[:])
}
