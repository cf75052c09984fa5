package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/sokoban-deploy/sokoban/buildpack"
	"github.com/sokoban-deploy/sokoban/receiver"
)

// buildpackFlags are the buildpack runner's settings shared by `serve` and
// `build`.
type buildpackFlags struct {
	sandbox      string
	shortNames   listFlag
	fetchTimeout time.Duration
	scriptTime   time.Duration
	outputLimit  sizeFlag
	cacheSize    sizeFlag
	userAllow    listFlag // serve only: `sokoban build` has no users
	userSSH      bool

	// Build confinement (README "Sandbox").
	netAllow listFlag
	pids     int64
	memory   sizeFlag
}

// register adds the flags; serving adds the server's own: the fetch cache
// and what users' buildpack URLs may reach.
func (b *buildpackFlags) register(fs *flag.FlagSet, serving bool) {
	b.outputLimit, b.cacheSize = 64<<20, 1<<30
	fs.StringVar(&b.sandbox, "sandbox", "auto", "build sandbox: auto (bubblewrap when it works), bwrap (required) or none")
	fs.Var(&b.shortNames, "buildpack-map", "buildpack short names, NAME=URL, comma-separated or repeated (over the built-in heroku/* names)")
	fs.DurationVar(&b.fetchTimeout, "fetch-timeout", 5*time.Minute, "limit for one attempt at fetching a buildpack (3 attempts)")
	fs.DurationVar(&b.scriptTime, "script-timeout", 2*time.Minute, "limit for each bin/detect and bin/release run")
	fs.Var(&b.outputLimit, "build-output-limit", "buildpack output shown per build before the rest is swallowed (K/M/G)")
	if serving {
		fs.Var(&b.cacheSize, "buildpack-cache-size", "size bound of the fetched-buildpack cache under DATA/buildpacks (K/M/G)")
		fs.Var(&b.userAllow, "user-fetch-allow", "loopback, private or link-local destinations (CIDR or address, comma-separated or repeated) that users' buildpack URLs may reach; default: public addresses only")
		fs.BoolVar(&b.userSSH, "user-fetch-ssh", false, "let users name ssh buildpack URLs (fetched with no key or agent of the server's)")
	}
	b.memory = 4 << 30
	fs.Var(&b.netAllow, "build-net-allow", "private destinations sandboxed builds may reach, CIDR,... (default: none)")
	fs.Int64Var(&b.pids, "build-pids", 4096, "processes and threads one build may run (0: no limit)")
	fs.Var(&b.memory, "build-memory", "memory one build may use (K/M/G; 0: no limit)")
}

// builder makes the build pipeline from cfg plus these flags, and checks the
// sandbox: with --sandbox=bwrap a machine where bubblewrap does not work is
// an error; with auto it is a loud warning, because buildpacks then run with
// the server's privileges.
func (b *buildpackFlags) builder(cfg buildpack.Config, log *slog.Logger) (*buildpack.Builder, error) {
	mode, err := buildpack.ParseSandbox(b.sandbox)
	if err != nil {
		return nil, fmt.Errorf("--sandbox: %w", err)
	}
	names, err := buildpack.ParseShortNames(b.shortNames)
	if err != nil {
		return nil, fmt.Errorf("--buildpack-map: %w", err)
	}
	allow, err := buildpack.ParseFetchAllow(b.userAllow)
	if err != nil {
		return nil, fmt.Errorf("--user-fetch-allow: %w", err)
	}
	cfg.Sandbox, cfg.ShortNames, cfg.FetchTimeout, cfg.ScriptTimeout = mode, names, b.fetchTimeout, b.scriptTime
	cfg.UserFetchAllow, cfg.UserFetchSSH = allow, b.userSSH
	cfg.OutputLimit, cfg.FetchCacheSize = int64(b.outputLimit), int64(b.cacheSize)
	if cfg.OutputLimit == 0 {
		cfg.OutputLimit = -1 // 0 means no cap on the command line
	}
	if cfg.BuildNetAllow, err = buildpack.ParseNetAllow(b.netAllow); err != nil {
		return nil, fmt.Errorf("--build-net-allow: %w", err)
	}
	if b.pids < 0 {
		return nil, fmt.Errorf("--build-pids: %d is not a process count (0 for no limit)", b.pids)
	}
	cfg.BuildPids, cfg.BuildMemory = noLimit(b.pids), noLimit(int64(b.memory))
	builder := buildpack.New(cfg)
	switch effective, err := builder.Sandbox(); {
	case err != nil && mode == buildpack.SandboxBwrap:
		return nil, fmt.Errorf("--sandbox=bwrap: %w (apt-get install bubblewrap; containers may need unprivileged user namespaces)", err)
	case err != nil:
		log.Warn("BUILDS ARE NOT SANDBOXED: bubblewrap does not work on this machine, so buildpacks run with this server's "+
			"privileges and can read its data directory, keys and environment. Install bubblewrap (apt-get install bubblewrap), "+
			"or pass --sandbox=none to say this is intended.", "err", err)
	case effective == buildpack.SandboxNone:
		log.Info("build sandbox turned off (--sandbox=none): builds use this host's network")
	default:
		switch nerr := builder.NetworkIsolation(); {
		case nerr != nil && mode == buildpack.SandboxBwrap:
			return nil, fmt.Errorf("--sandbox=bwrap: %w (apt-get install slirp4netns nftables)", nerr)
		case nerr != nil:
			log.Warn("BUILDS HAVE NO NETWORK: their network cannot be kept off this host's loopback and private networks "+
				"here, so builds run with no network at all and buildpacks that download toolchains fail. Install slirp4netns "+
				"and nftables (apt-get install slirp4netns nftables), or pass --sandbox=none to give builds this host's network.",
				"err", nerr)
		default:
			log.Info("builds run in a bubblewrap sandbox with a network of their own", "net_allow", b.netAllow.String())
		}
	}
	pids, memory, lerr := builder.Limits()
	var unlimited []string
	if pids == 0 && b.pids > 0 {
		unlimited = append(unlimited, "process")
	}
	if memory == 0 && b.memory > 0 {
		unlimited = append(unlimited, "memory")
	}
	if len(unlimited) > 0 {
		log.Warn("BUILDS HAVE NO "+strings.ToUpper(strings.Join(unlimited, " or "))+" LIMIT: a fork bomb or a runaway "+
			"compile can take this server down. Run it with a cgroup it may manage (the systemd unit's Delegate=yes, "+
			"or root on cgroup v1), or pass --build-pids 0 --build-memory 0 to say this is intended.", "err", lerr)
	} else if pids > 0 || memory > 0 {
		log.Info("builds are limited", "processes", pids, "memory", buildpack.Limit(memory))
	}
	return builder, nil
}

// noLimit maps a flag's 0 (no limit) to Config's.
func noLimit(v int64) int64 {
	if v == 0 {
		return -1
	}
	return v
}

// buildCmd runs the push pipeline's build on a local directory, with the same
// output, for buildpack authors.
func buildCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := newFlags("build", stderr)
	var bps listFlag
	var bf buildpackFlags
	fs.Var(&bps, "buildpack", "buildpack URL, directory, tarball or short name (repeatable); default: DIR's .buildpacks")
	envDir := fs.String("env-dir", "", "directory of config vars, one file per variable (ENV_DIR)")
	cacheDir := fs.String("cache", "", "CACHE_DIR kept between builds (default: a temporary one)")
	out := fs.String("o", "slug.tgz", "where to write the slug")
	stack := fs.String("stack", "heroku-24", "stack name shown to buildpacks as STACK")
	timeout := fs.Duration("compile-timeout", 15*time.Minute, "compile time limit")
	slugSoft, slugHard := sizeFlag(300<<20), sizeFlag(500<<20)
	fs.Var(&slugSoft, "slug-soft-limit", "slug size that prints a warning (K/M/G)")
	fs.Var(&slugHard, "slug-hard-limit", "slug size that fails the build (K/M/G)")
	bf.register(fs, false)
	if err := parseFlags(fs, args, getenv); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		_, _ = fmt.Fprintln(stderr, "usage: sokoban build [--buildpack URL]... [--env-dir DIR] [--cache DIR] [-o slug.tgz] DIR")
		return 2
	}
	resolved, err := resolveBuildpacks(bps)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := bf.builder(buildpack.Config{
		Stack: *stack, CompileTimeout: *timeout, SlugSoftLimit: int64(slugSoft), SlugHardLimit: int64(slugHard), Logger: log,
	}, log)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	err = b.BuildLocal(ctx, buildpack.LocalBuild{
		ID: receiver.NewBuildID(), Source: fs.Arg(0), Buildpacks: resolved,
		EnvDir: *envDir, CacheDir: *cacheDir, Slug: *out, Output: stdout,
	})
	switch {
	case errors.Is(err, buildpack.ErrLocalBuild):
		return 1 // the build's output said why
	case err != nil:
		return fail(stderr, "%v", err)
	}
	return 0
}
