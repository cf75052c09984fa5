package buildpack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sokoban-deploy/sokoban/internal/proc"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Config is the operator's side of every build on this node.
type Config struct {
	Stack          string        // shown and exported as STACK; default heroku-24
	Defaults       []string      // default buildpacks, auto-detected in order
	Git            string        // git binary; default "git"
	FetchTimeout   time.Duration // per buildpack fetch attempt; default 5m (SPEC D3)
	FetchRetries   int           // attempts per fetch; default 3
	CompileTimeout time.Duration // all compile steps together; default 15m (SPEC E3)
	// ScriptTimeout bounds each bin/detect and each bin/release; default 2m.
	ScriptTimeout time.Duration
	SlugSoftLimit int64 // warn above; default 300M (SPEC E2)
	SlugHardLimit int64 // reject above; default 500M
	// OutputLimit caps the buildpack output a build forwards; past it the
	// output is swallowed (and the build goes on). Default 64M; < 0: no cap.
	OutputLimit int64
	// ShortNames maps names such as heroku/python to URLs (SPEC D2), over
	// DefaultShortNames. The operator chooses them, so they may be local.
	ShortNames map[string]string
	// FetchCacheDir keeps fetched buildpacks between builds on this node;
	// "" fetches every time.
	FetchCacheDir  string
	FetchCacheSize int64 // bound of FetchCacheDir; default 1G
	// MaxBuildpackSize bounds what one tarball or git buildpack unpacks to; default 1G.
	MaxBuildpackSize int64
	// Sandbox confines build processes (DESIGN "Sandbox"); default auto.
	Sandbox SandboxMode
	Bwrap   string // bubblewrap binary; default "bwrap"
	// HideFromSandbox are host paths a build must never see even when they
	// lie under a directory the sandbox shows (a data directory under /usr).
	HideFromSandbox []string
	HTTPClient      *http.Client // tarball downloads; default: a fresh client
	Logger          *slog.Logger
	// UserFetchAllow lists the loopback, private, link-local and other
	// special destinations that a user's buildpack URL may still reach
	// (--user-fetch-allow); by default it reaches only public addresses,
	// and HTTPClient is not used for it. UserFetchSSH lets users name ssh
	// URLs, fetched with no key of the server's. See egress.go.
	UserFetchAllow []netip.Prefix
	UserFetchSSH   bool

	// Build confinement (README "Sandbox"). A sandboxed build's network
	// reaches the outside world but no loopback, link-local or private
	// destination and no address of this host, except what BuildNetAllow
	// lists. BuildPids bounds a build's processes and threads (default
	// 4096), BuildMemory its memory in bytes (default 4G); < 0: no limit.
	BuildNetAllow []netip.Prefix
	BuildPids     int64
	BuildMemory   int64
	Slirp4netns   string // default "slirp4netns"
	Nft           string // default "nft"
}

// Builder runs builds with one Config. It is safe for concurrent use.
type Builder struct {
	cfg        Config
	log        *slog.Logger
	shortNames map[string]string
	cache      *fetchCache // nil: no fetch cache
	http       *http.Client
	egress     *egress
	retryDelay time.Duration // first back-off between fetch attempts

	probeOnce sync.Once
	probeErr  error
	conf      confinement // build network and limits, probed once (sandbox.go)
}

// New returns a Builder, filling in Config defaults.
func New(cfg Config) *Builder {
	if cfg.Stack == "" {
		cfg.Stack = "heroku-24"
	}
	if cfg.Git == "" {
		cfg.Git = "git"
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 5 * time.Minute
	}
	if cfg.FetchRetries <= 0 {
		cfg.FetchRetries = 3
	}
	if cfg.CompileTimeout <= 0 {
		cfg.CompileTimeout = 15 * time.Minute
	}
	if cfg.ScriptTimeout <= 0 {
		cfg.ScriptTimeout = 2 * time.Minute
	}
	if cfg.SlugSoftLimit <= 0 {
		cfg.SlugSoftLimit = 300 << 20
	}
	if cfg.SlugHardLimit <= 0 {
		cfg.SlugHardLimit = 500 << 20
	}
	if cfg.OutputLimit == 0 {
		cfg.OutputLimit = 64 << 20
	}
	if cfg.FetchCacheSize <= 0 {
		cfg.FetchCacheSize = 1 << 30
	}
	if cfg.MaxBuildpackSize <= 0 {
		cfg.MaxBuildpackSize = 1 << 30
	}
	if cfg.Sandbox == "" {
		cfg.Sandbox = SandboxAuto
	}
	if cfg.Bwrap == "" {
		cfg.Bwrap = "bwrap"
	}
	if cfg.Slirp4netns == "" {
		cfg.Slirp4netns = "slirp4netns"
	}
	if cfg.Nft == "" {
		cfg.Nft = "nft"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Builder{cfg: cfg, log: log, shortNames: DefaultShortNames(), http: cfg.HTTPClient, retryDelay: time.Second}
	for k, v := range cfg.ShortNames {
		b.shortNames[k] = v
	}
	if b.http == nil {
		b.http = &http.Client{}
	}
	b.egress = newEgress(cfg.UserFetchAllow, cfg.UserFetchSSH)
	if cfg.FetchCacheDir != "" {
		c, err := newFetchCache(cfg.FetchCacheDir, cfg.FetchCacheSize, log)
		if err != nil {
			log.Warn("buildpack fetch cache unavailable; fetching every time", "dir", cfg.FetchCacheDir, "err", err)
		} else {
			b.cache = c
		}
	}
	return b
}

// Stack is the stack builds run on.
func (b *Builder) Stack() string { return b.cfg.Stack }

// Job is one build.
type Job struct {
	ID            string            // REQUEST_ID; the build id
	BuildDir      string            // the source; compile changes it; it becomes the slug
	WorkDir       string            // private scratch space: buildpack copies, ENV_DIR, HOME, /tmp
	CacheDir      string            // CACHE_DIR, kept between builds of an app (SPEC C6)
	Env           map[string]string // config vars, written to ENV_DIR (SPEC C3)
	Buildpacks    []string          // the app's own buildpack setting, if any (SPEC D1)
	SourceVersion string            // the commit being built
	Output        io.Writer         // what the pusher sees
	Slug          io.Writer         // the packed slug streams here
	Stage         func(stage string)
	// TrustSource lets the source's own buildpack choices name local paths;
	// only for `sokoban build`, where the source belongs to the operator.
	TrustSource bool
}

// Result describes a successful build.
type Result struct {
	Buildpacks   []string          // URLs that ran, in order
	Names        []string          // what each detected
	ProcessTypes map[string]string // Procfile over the last bin/release's defaults
	Slug         PackResult
	Stack        string
}

// Description is what the buildpacks said they built, for the release.
func (r *Result) Description() string { return strings.Join(r.Names, ", ") }

type chosen struct {
	src  source
	name string
}

// workspace is one build's directories, environment and jail.
type workspace struct {
	job    Job
	envDir string
	home   string
	bpDir  string // the buildpacks' private copies
	jail   *jail
	env    []string
	out    *outputCap // buildpack output on its way to the pusher
}

// Build runs the whole pipeline. On failure it has printed why to Job.Output and
// returns an error wrapping one of this package's sentinels, or the context's
// error when the build was cancelled.
func (b *Builder) Build(ctx context.Context, job Job) (result *Result, err error) {
	out := job.Output
	stage := job.Stage
	if stage == nil {
		stage = func(string) {}
	}
	log := b.log.With("build", job.ID)
	Step(out, "Building on the %s stack", b.cfg.Stack)

	// A Procfile that can never parse fails before minutes of compiling.
	if _, err := readProcfile(job.BuildDir); err != nil {
		Warn(out, "Push rejected, %v", procfileMessage(err))
		return nil, err
	}
	n, err := b.slugignore(ctx, job)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		Step(out, "Deleting %d files matching .slugignore patterns.", n)
	}
	w, err := b.prepare(job)
	if err != nil {
		Warn(out, "Push rejected, the server could not prepare the build.")
		return nil, fmt.Errorf("buildpack: prepare: %w", err)
	}
	if b.cfg.Sandbox == SandboxBwrap {
		if _, err := b.Sandbox(); err != nil {
			Warn(out, "Push rejected, the build sandbox does not work on this server; tell the operator.")
			return nil, err
		}
	}
	// The build's own network and cgroup; ctx ends when it hits a limit.
	ctx, err = b.confine(ctx, w)
	defer func() {
		if hit := w.jail.close(); hit != nil {
			w.out.endLine()
			Warn(out, "Push rejected, %s.", strings.TrimPrefix(hit.Error(), "buildpack: "))
			result, err = nil, hit
		}
	}()
	if err != nil {
		Warn(out, "Push rejected, the build sandbox could not be set up; tell the operator.")
		return nil, err
	}

	stage("detecting")
	bps, err := b.choose(ctx, w)
	if err != nil {
		return nil, err
	}

	stage("compiling")
	compileCtx, cancel := context.WithTimeout(ctx, b.cfg.CompileTimeout)
	defer cancel()
	var exports []string
	for _, bp := range bps {
		Step(out, "%s app detected", bp.name)
		start := time.Now()
		compile := filepath.Join(bp.src.dir, "bin", "compile")
		err := runnable(compile)
		if err == nil {
			argv := sourceExports(exports, w.jail.path(compile),
				w.jail.path(job.BuildDir), w.jail.path(job.CacheDir), w.jail.path(w.envDir))
			err = w.run(compileCtx, argv, w.out, nil)
		}
		log.Debug("compile finished", "buildpack", bp.src.url, "duration", time.Since(start), "err", err)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case compileCtx.Err() != nil:
			Warn(out, "Push rejected, compiling %s app timed out after %s.", bp.name, b.cfg.CompileTimeout)
			return nil, fmt.Errorf("%w after %s", ErrTimeout, b.cfg.CompileTimeout)
		case err != nil:
			Warn(out, "Push rejected, failed to compile %s app.", bp.name)
			return nil, fmt.Errorf("%w: %s: %v", ErrCompile, bp.src.url, err)
		}
		if exp := filepath.Join(bp.src.dir, "export"); fileExists(exp) {
			exports = append(exports, w.jail.path(exp))
		}
	}

	defaults, err := b.release(ctx, w, bps)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		Warn(out, "Push rejected, %s", strings.TrimPrefix(err.Error(), "buildpack: "))
		return nil, err
	}
	procfile, err := readProcfile(job.BuildDir)
	if err != nil {
		Warn(out, "Push rejected, %v", procfileMessage(err))
		return nil, err
	}
	types := map[string]string{}
	for k, v := range defaults {
		types[k] = v
	}
	for k, v := range procfile {
		types[k] = v
	}
	Step(out, "Discovering process types")
	printTypes(out, procfile, defaults)

	stage("packing")
	Step(out, "Compressing...")
	// Packing stops as soon as the slug passes the hard limit, or before a
	// file would make the files walked add up to more than filesBound of it
	// (a sparse file takes no disk but hours to gzip), or when the build
	// is cancelled: past the limit the slug is refused, not measured.
	packed, err := packTar(ctx, job.BuildDir, job.Slug, "./app", true,
		packLimits{packed: b.cfg.SlugHardLimit, files: filesBound(b.cfg.SlugHardLimit)})
	var le *PackLimitError
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.As(err, &le) && le.Files > 0:
		Warn(out, "Compiled slug size: more than %s is too large (max is %s); its files add up to more than %s.",
			Limit(b.cfg.SlugHardLimit), Limit(b.cfg.SlugHardLimit), Limit(le.Files))
		return nil, fmt.Errorf("%w: %v", ErrSlugTooLarge, err)
	case errors.As(err, &le):
		Warn(out, "Compiled slug size: more than %s is too large (max is %s).", Limit(b.cfg.SlugHardLimit), Limit(b.cfg.SlugHardLimit))
		return nil, fmt.Errorf("%w: %v", ErrSlugTooLarge, err)
	case err != nil:
		Warn(out, "Push rejected, the slug could not be packed.")
		return nil, fmt.Errorf("buildpack: %w", err)
	}
	Detail(out, "Done: %s", Size(packed.Size))
	if packed.Size > b.cfg.SlugSoftLimit {
		Warn(out, "Warning: Your slug size (%s) exceeds the soft limit (%s), which may affect boot time.",
			Size(packed.Size), Limit(b.cfg.SlugSoftLimit))
	}
	res := &Result{ProcessTypes: types, Slug: packed, Stack: b.cfg.Stack}
	for _, bp := range bps {
		res.Buildpacks = append(res.Buildpacks, bp.src.url)
		res.Names = append(res.Names, bp.name)
	}
	return res, nil
}

// slugignore applies the source's .slugignore (SPEC E1). Its patterns are
// the pusher's and run on the server, so they get the compile timeout and
// stop on cancel; on failure the pusher has been told why.
func (b *Builder) slugignore(ctx context.Context, job Job) (int, error) {
	out := job.Output
	data, err := readSourceFile(job.BuildDir, ".slugignore", MaxSourceFile)
	if err != nil {
		Warn(out, "Push rejected, %s", sourceFileMessage(err))
		return 0, err
	}
	ictx, cancel := context.WithTimeout(ctx, b.cfg.CompileTimeout)
	defer cancel()
	n, err := applySlugignore(ictx, job.BuildDir, data, func(format string, args ...any) { Warn(out, format, args...) })
	switch {
	case err == nil:
		return n, nil
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case ictx.Err() != nil:
		Warn(out, "Push rejected, applying .slugignore timed out after %s; use fewer or simpler patterns.", b.cfg.CompileTimeout)
		return 0, fmt.Errorf("%w: .slugignore after %s", ErrTimeout, b.cfg.CompileTimeout)
	case errors.Is(err, ErrSlugignore):
		Warn(out, "Push rejected, %s.", strings.TrimPrefix(err.Error(), "buildpack: "))
		return 0, err
	}
	Warn(out, "Push rejected, %v", err)
	return 0, fmt.Errorf("buildpack: %w", err)
}

// prepare makes the build's private directories and its jail: ENV_DIR, HOME
// and /tmp live in WorkDir; CACHE_DIR may start missing (SPEC C6).
func (b *Builder) prepare(job Job) (*workspace, error) {
	w := &workspace{
		job:    job,
		envDir: filepath.Join(job.WorkDir, "env"),
		home:   filepath.Join(job.WorkDir, "home"),
		bpDir:  filepath.Join(job.WorkDir, "buildpacks"),
		out:    newOutputCap(job.Output, b.cfg.OutputLimit),
	}
	tmp := filepath.Join(job.WorkDir, "tmp")
	for _, d := range []string{w.home, w.bpDir, tmp, job.CacheDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := writeEnvDir(w.envDir, job.Env); err != nil {
		return nil, fmt.Errorf("write ENV_DIR: %w", err)
	}
	w.jail = b.jobJail([]mount{
		{host: job.BuildDir, inside: sandboxBuild, rw: true},
		{host: job.CacheDir, inside: sandboxCache, rw: true},
		{host: w.envDir, inside: sandboxEnv},
		{host: w.bpDir, inside: sandboxBuildpacks, rw: true},
		{host: w.home, inside: sandboxHome, rw: true},
	}, tmp)
	w.env = b.buildEnv(job, w.jail.path(w.home))
	return w, nil
}

// run runs one buildpack script in the build directory, in the jail, with the
// build's environment. stderr nil means with stdout.
//
// A step's output that ends mid-line is ended with a newline, so the
// server's next line starts a line of its own: the pusher's terminal filter
// ends any escape sequence a buildpack left open only at a line break, and
// would otherwise swallow " !     Push rejected" with it.
func (w *workspace) run(ctx context.Context, argv []string, stdout, stderr io.Writer) error {
	defer w.out.endLine()
	return w.jail.run(ctx, proc.Cmd{Argv: argv, Dir: w.job.BuildDir, Env: w.env, Stdout: stdout, Stderr: stderr})
}

// choose applies SPEC D1's precedence, fetches and detects, and prints the
// "Using buildpack" lines.
func (b *Builder) choose(ctx context.Context, w *workspace) ([]chosen, error) {
	job := w.job
	out := job.Output
	var explicit []string
	switch {
	case len(job.Buildpacks) > 0:
		explicit = job.Buildpacks
	case strings.TrimSpace(job.Env["BUILDPACK_URL"]) != "":
		explicit = []string{strings.TrimSpace(job.Env["BUILDPACK_URL"])}
	default:
		data, err := readSourceFile(job.BuildDir, ".buildpacks", MaxSourceFile)
		if err != nil {
			Warn(out, "Push rejected, %s", sourceFileMessage(err))
			return nil, err
		}
		// Checked whole before a line of it is printed.
		if explicit, err = ReadBuildpacksFile(data); err != nil {
			Warn(out, "Push rejected, %s.", strings.TrimPrefix(err.Error(), "buildpack: "))
			return nil, err
		}
	}
	if len(explicit) > 0 {
		printUsing(out, explicit)
		origin := User
		if job.TrustSource {
			origin = Operator
		}
		var bps []chosen
		for i, url := range explicit {
			src, err := b.fetch(ctx, url, origin, filepath.Join(w.bpDir, strconv.Itoa(i)))
			if err != nil {
				return nil, b.fetchFailed(ctx, out, err)
			}
			name, ok, err := b.detect(ctx, w, src, true)
			if err != nil {
				return nil, b.fetchFailed(ctx, out, err)
			}
			if !ok {
				Step(out, "App not compatible with buildpack: %s", url)
				return nil, fmt.Errorf("%w: %s", ErrNotDetected, url)
			}
			bps = append(bps, chosen{src, name})
		}
		return bps, nil
	}

	var found []chosen
	for i, url := range b.cfg.Defaults {
		src, err := b.fetch(ctx, url, Operator, filepath.Join(w.bpDir, strconv.Itoa(i)))
		if err != nil {
			return nil, b.fetchFailed(ctx, out, err)
		}
		name, ok, err := b.detect(ctx, w, src, false)
		if err != nil {
			return nil, b.fetchFailed(ctx, out, err)
		}
		if ok {
			found = append(found, chosen{src, name})
		}
	}
	if len(found) == 0 {
		Warn(out, "No default buildpack detected this app.")
		Warn(out, "Set one with `ssh git@HOST buildpacks:set APP URL` or list them in a .buildpacks file.")
		return nil, ErrNotDetected
	}
	printUsing(out, []string{found[0].src.url})
	if len(found) > 1 {
		var names []string
		for _, f := range found {
			names = append(names, fmt.Sprintf("%s (%s)", f.src.url, f.name))
		}
		Warn(out, "Warning: several buildpacks detected this app: %s.", strings.Join(names, ", "))
		Warn(out, "Using the first one. Set the buildpacks explicitly to choose.")
	}
	return found[:1], nil
}

func (b *Builder) fetchFailed(ctx context.Context, out io.Writer, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	msg := err.Error()
	switch {
	case errors.Is(err, ErrFetch):
		msg = "could not fetch buildpack " + strings.TrimPrefix(msg, ErrFetch.Error()+": ")
	case errors.Is(err, ErrBroken):
		msg = "buildpack " + strings.TrimPrefix(msg, ErrBroken.Error()+": ")
	default:
		msg = strings.TrimPrefix(msg, "buildpack: ")
	}
	Warn(out, "Push rejected, %s", msg)
	return err
}

// detect runs bin/detect (SPEC C1). Only its stderr reaches the pusher (SPEC B5).
func (b *Builder) detect(ctx context.Context, w *workspace, src source, explicit bool) (string, bool, error) {
	bin := filepath.Join(src.dir, "bin", "detect")
	if !fileExists(bin) {
		// An explicitly chosen buildpack without bin/detect is taken at its word.
		return filepath.Base(strings.TrimSuffix(strings.SplitN(src.url, "#", 2)[0], ".git")), explicit, nil
	}
	if err := runnable(bin); err != nil {
		return "", false, fmt.Errorf("%w: %s: bin/detect could not run: %v (are the bin/ scripts executable?)", ErrBroken, src.url, err)
	}
	var stdout bytes.Buffer
	sctx, cancel := context.WithTimeout(ctx, b.cfg.ScriptTimeout)
	defer cancel()
	err := w.run(sctx, []string{w.jail.path(bin), w.jail.path(w.job.BuildDir)}, &limitedBuffer{buf: &stdout, max: 4096}, w.out)
	if ctx.Err() != nil {
		return "", false, ctx.Err()
	}
	if sctx.Err() != nil {
		return "", false, fmt.Errorf("%w: %s: bin/detect timed out after %s", ErrBroken, src.url, b.cfg.ScriptTimeout)
	}
	if err != nil {
		if proc.ExitCode(err) < 0 {
			return "", false, fmt.Errorf("%w: %s: bin/detect could not run: %s (are the bin/ scripts executable?)", ErrBroken, src.url, rootCause(err))
		}
		return "", false, nil
	}
	name := strings.TrimSpace(strings.SplitN(stdout.String(), "\n", 2)[0])
	if name == "" {
		name = "App"
	}
	return name, true, nil
}

// release runs each buildpack's bin/release; the last one's default process
// types win (SPEC C7).
func (b *Builder) release(ctx context.Context, w *workspace, bps []chosen) (map[string]string, error) {
	var defaults map[string]string
	for _, bp := range bps {
		bin := filepath.Join(bp.src.dir, "bin", "release")
		if !fileExists(bin) {
			defaults = nil
			continue
		}
		if err := runnable(bin); err != nil {
			return nil, fmt.Errorf("%w: %s: bin/release could not run: %v", ErrRelease, bp.src.url, err)
		}
		var stdout, stderr bytes.Buffer
		sctx, cancel := context.WithTimeout(ctx, b.cfg.ScriptTimeout)
		err := w.run(sctx, []string{w.jail.path(bin), w.jail.path(w.job.BuildDir)},
			// One byte past the bound, for parseRelease to refuse.
			&limitedBuffer{buf: &stdout, max: maxReleaseOutput + 1}, &limitedBuffer{buf: &stderr, max: 4096})
		timedOut := sctx.Err() != nil && ctx.Err() == nil
		cancel()
		if timedOut {
			return nil, fmt.Errorf("%w: %s: bin/release timed out after %s", ErrRelease, bp.src.url, b.cfg.ScriptTimeout)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %s", ErrRelease, bp.src.url, lastLine(stderr.String()+"\n"+err.Error()))
		}
		info, err := parseRelease(stdout.Bytes())
		if err != nil {
			return nil, fmt.Errorf("%w (%s)", err, bp.src.url)
		}
		defaults = info.DefaultProcessTypes
	}
	return defaults, nil
}

// buildEnv is a buildpack's whole environment (SPEC C4): built from nothing.
func (b *Builder) buildEnv(job Job, home string) []string {
	return []string{
		"STACK=" + b.cfg.Stack,
		"SOURCE_VERSION=" + job.SourceVersion,
		"HOME=" + home,
		"PATH=" + defaultPath,
		"LANG=en_US.UTF-8",
		"REQUEST_ID=" + job.ID,
		"CURL_CONNECT_TIMEOUT=30",
		"CURL_TIMEOUT=600",
	}
}

// sourceExports runs compile after sourcing earlier buildpacks' export files
// (SPEC C8), without building a shell string from paths.
func sourceExports(exports []string, compile, buildDir, cacheDir, envDir string) []string {
	if len(exports) == 0 {
		return []string{compile, buildDir, cacheDir, envDir}
	}
	const script = `n=$1; shift; while [ "$n" -gt 0 ]; do . "$1"; shift; n=$((n-1)); done; exec "$@"`
	argv := []string{"/bin/sh", "-c", script, "sh", strconv.Itoa(len(exports))}
	argv = append(argv, exports...)
	return append(argv, compile, buildDir, cacheDir, envDir)
}

func writeEnvDir(dir string, env map[string]string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func printUsing(out io.Writer, urls []string) {
	if len(urls) == 1 {
		Step(out, "Using buildpack: %s", urls[0])
		return
	}
	Step(out, "Using buildpacks:")
	for i, u := range urls {
		Detail(out, "%d. %s", i+1, u)
	}
}

func printTypes(out io.Writer, procfile, defaults map[string]string) {
	list := func(m map[string]string) string {
		if len(m) == 0 {
			return "(none)"
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		return strings.Join(names, ", ")
	}
	if len(defaults) == 0 {
		Detail(out, "Procfile declares types -> %s", list(procfile))
		return
	}
	Detail(out, "Procfile declares types     -> %s", list(procfile))
	Detail(out, "Default types for buildpack -> %s", list(defaults))
}

func procfileMessage(err error) string {
	if errors.Is(err, ErrSourceFile) {
		return sourceFileMessage(err)
	}
	return "Procfile" + strings.TrimPrefix(err.Error(), ErrProcfile.Error())
}

// sourceFileMessage is the pusher's line for an ErrSourceFile: the reason,
// without the error chain's prefixes.
func sourceFileMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ErrSourceFile.Error()+": "); i >= 0 {
		msg = msg[i+len(ErrSourceFile.Error())+2:]
	}
	return msg + "."
}

// Limit formats a configured size limit: whole units without a decimal ("500M").
func Limit(n int64) string {
	for _, u := range []struct {
		size int64
		unit string
	}{{1 << 30, "G"}, {1 << 20, "M"}, {1 << 10, "K"}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.unit
		}
	}
	return Size(n)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// runnable checks that a bin/ script can be executed, so a missing x bit is
// reported as such rather than as bwrap's exit status.
func runnable(p string) error {
	st, err := os.Stat(p)
	switch {
	case err != nil:
		return errors.New(rootCause(err))
	case !st.Mode().IsRegular():
		return errors.New("not a file")
	case st.Mode().Perm()&0o111 == 0:
		return errors.New("permission denied")
	}
	return nil
}

// limitedBuffer keeps at most max bytes and discards the rest, so a chatty
// bin/detect cannot fill the server's memory.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

// rootCause is the innermost error, e.g. "permission denied" rather than the
// whole fork/exec chain with server paths in it.
func rootCause(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
