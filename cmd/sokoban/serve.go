package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sokoban-deploy/sokoban/buildpack"
	"github.com/sokoban-deploy/sokoban/internal/journal"
	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/receiver"
	"github.com/sokoban-deploy/sokoban/sshd"
)

type serveFlags struct {
	storeFlags
	serviceFlags
	heroku         herokuFlags
	cluster        clusterFlags
	listen         string
	node           string
	buildpacks     listFlag
	hostKeys       listFlag
	stack          string
	compileTimeout time.Duration
	slugSoft       sizeFlag
	slugHard       sizeFlag
	maxInput       sizeFlag
	sourceLimit    sizeFlag
	sourceFiles    int
	cacheLimit     sizeFlag
	autoCreate     bool
	logFormat      string
	logLevel       string
	drainTimeout   time.Duration
	keepBuilds     int
	buildpack      buildpackFlags // --sandbox, --buildpack-map, fetch and output limits (build.go)
}

func serve(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	fs := newFlags("serve", stderr)
	f := serveFlags{slugSoft: 300 << 20, slugHard: 500 << 20, sourceLimit: 1 << 30, cacheLimit: 1 << 30}
	f.storeFlags.register(fs)
	f.serviceFlags.register(fs)
	f.heroku.register(fs)
	f.cluster.register(fs)
	f.buildpack.register(fs, true)
	fs.StringVar(&f.listen, "listen", ":2222", "SSH listen address")
	fs.StringVar(&f.node, "node", hostname(), "this node's name in status and logs")
	fs.Var(&f.buildpacks, "buildpacks", "default buildpacks, comma-separated or repeated: local directories, tarballs, git or tarball URLs or short names, auto-detected in order")
	fs.Var(&f.hostKeys, "host-key", "host key file (repeatable); default: generated under DATA/host_keys")
	fs.StringVar(&f.stack, "stack", "heroku-24", "stack name shown to buildpacks as STACK")
	fs.DurationVar(&f.compileTimeout, "compile-timeout", 15*time.Minute, "limit for compiling one push")
	fs.Var(&f.slugSoft, "slug-soft-limit", "slug size that prints a warning (K/M/G)")
	fs.Var(&f.slugHard, "slug-hard-limit", "slug size that rejects the push (K/M/G)")
	fs.Var(&f.maxInput, "max-push-size", "largest pack a push may send (receive.maxInputSize, K/M/G; 0 for no limit)")
	fs.Var(&f.sourceLimit, "source-limit", "most file contents a pushed commit may unpack to (K/M/G)")
	fs.Var(&f.cacheLimit, "cache-limit", "largest build cache stowed per app, compressed (K/M/G); a larger one is not saved")
	fs.IntVar(&f.sourceFiles, "source-files-limit", 100_000, "most files and directories a pushed commit may unpack to")
	fs.BoolVar(&f.autoCreate, "auto-create", true, "let any registered user create an app by pushing to a new name")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 5*time.Minute, "on SIGTERM, how long running pushes may finish")
	fs.IntVar(&f.keepBuilds, "keep-builds", 100, "build records and logs kept per app")
	if err := parseFlags(fs, args, getenv); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		return fail(stderr, "serve takes no arguments (got %q)", fs.Args())
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel, getenv)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if err := runServer(ctx, f, log); err != nil {
		log.Error("server stopped", "err", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, format, level string, getenv func(string) string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var inner func(io.Writer) slog.Handler
	switch format {
	case "text":
		inner = func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) }
	case "json":
		inner = func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, opts) }
	default:
		return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
	}
	if !journal.IsStream(w, getenv("JOURNAL_STREAM")) {
		return slog.New(inner(w)), nil
	}
	// The journal stamps each line itself, and takes its priority from the
	// <N> prefix the handler writes.
	opts.ReplaceAttr = journal.DropTime(opts.ReplaceAttr)
	return slog.New(journal.NewHandler(w, inner)), nil
}

func runServer(ctx context.Context, f serveFlags, log *slog.Logger) error {
	data, err := f.dataDir()
	if err != nil {
		return err
	}
	unlock, err := lockDataDir(data)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := exec.LookPath("git"); err != nil {
		return errors.New("git is not installed (apt-get install git)")
	}
	store, storeURL, err := f.open(ctx, log)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary for the git hook: %w", err)
	}
	defaults, err := resolveBuildpacks(f.buildpacks)
	if err != nil {
		return err
	}
	keyStore := keys.NewStore(store, f.keyRefresh)
	metrics := newMetricsRegistry()
	coord, err := f.cluster.open(ctx, f.node, log)
	if err != nil {
		return err
	}
	defer coord.close() // after the receiver's Close: pushes release their leases first
	registry := coord.registry
	access := keys.NewLocal(keys.NewApps(store), f.autoCreate)
	seams, err := f.heroku.seams(store, keyStore, f.keyRefresh, access, log)
	if err != nil {
		return err
	}
	builder, err := f.buildpack.builder(buildpack.Config{
		Stack: f.stack, Defaults: defaults, CompileTimeout: f.compileTimeout,
		SlugSoftLimit: int64(f.slugSoft), SlugHardLimit: int64(f.slugHard), Logger: log,
		FetchCacheDir: filepath.Join(data, "buildpacks"), HideFromSandbox: append([]string{data}, f.hostKeys...),
	}, log)
	if err != nil {
		return err
	}
	recv, err := receiver.New(receiver.Config{
		DataDir: data, Node: f.node, Hook: []string{exe, "hook", "pre-receive"},
		MaxInputSize: int64(f.maxInput), MaxSourceSize: int64(f.sourceLimit), MaxSourceFiles: f.sourceFiles,
		MaxCacheSize: int64(f.cacheLimit), KeepBuilds: f.keepBuilds, Logger: log, Metrics: metrics,
		ReleaseTimeout: seams.releaseTimeout,
	}, receiver.Deps{
		Store: store, Leases: coord.leases, Builder: builder,
		Releaser: seams.releaser, Settings: seams.settings, Access: seams.access,
		Registry: registry,
	})
	if err != nil {
		return err
	}
	defer func() { _ = recv.Close() }()
	hostKeys, err := f.cluster.hostKeys(ctx, store, filepath.Join(data, "host_keys"), f.hostKeys)
	if err != nil {
		return err
	}
	srv := sshd.New(sshd.Config{HostKeys: hostKeys, Version: Version(), Logger: log, Metrics: metrics},
		sshd.Deps{Keys: seams.keys, Access: seams.access, Git: recv, Commands: sshd.AppCommands(appDeps(appWiring{
			access: seams.access, registry: registry, recv: recv, store: store, keys: keyStore, heroku: seams.heroku,
			linker: seams.keyLinker(),
		}))})
	ln, err := listenSSH(ctx, f.listen, log)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	// Tests and scripts that listen on port 0 read the real address here.
	writeAddrFile(filepath.Join(data, "listen.addr"), addr)
	log.Info("sokoban listening", "addr", addr, "node", f.node, "data", data, "store", storeURL,
		"version", Version(), "buildpacks", strings.Join(defaults, ","))

	lc := &lifecycle{
		log: log, data: data, ssh: srv, ln: ln, recv: recv, metrics: metrics,
		http: f.http, drainTimeout: f.drainTimeout,
		reload: []reloader{{"keys", keyStore.Reload}},
	}
	return lc.run(ctx)
}

// resolveBuildpacks makes local buildpack paths absolute, so they do not depend
// on the directory the server happened to start in.
func resolveBuildpacks(list []string) ([]string, error) {
	var out []string
	for _, u := range list {
		if !strings.Contains(u, "://") && !strings.Contains(u, "@") {
			// A directory, a local git repository (#ref allowed) or a tarball;
			// anything else with a slash may be a short name (heroku/python).
			path, ref, _ := strings.Cut(u, "#")
			if _, err := os.Stat(path); err == nil {
				abs, err := filepath.Abs(path)
				if err != nil {
					return nil, err
				}
				u = abs
				if ref != "" {
					u += "#" + ref
				}
			} else if !strings.Contains(u, "/") || strings.HasPrefix(u, ".") || strings.HasPrefix(u, "/") {
				return nil, fmt.Errorf("--buildpacks: %s does not exist", u)
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// lockDataDir makes sure only one server uses a data directory.
func lockDataDir(data string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(data, "sokoban.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("another sokoban serve is using %s", data)
	}
	return func() { _ = f.Close() }, nil
}
