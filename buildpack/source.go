package buildpack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sokoban-deploy/sokoban/internal/proc"
)

// Origin says who chose a buildpack URL. Only the operator may name paths on
// the server: a user's .buildpacks pointing at the data directory must not
// copy it into their build.
type Origin int

const (
	// Operator: the server's --buildpacks list, its short-name map, or
	// `sokoban build`.
	Operator Origin = iota
	// User: app settings, BUILDPACK_URL, .buildpacks.
	User
)

// source is a buildpack named by URL, fetched into a directory.
type source struct {
	url string // as the user or operator wrote it, shown in messages
	dir string // the build's private copy, with bin/
}

// kind of a buildpack URL (SPEC D2).
type kind int

const (
	kindDir     kind = iota // a local directory with bin/
	kindGit                 // a git repository, remote or (operator only) local
	kindTarball             // a .tgz or .tar.gz, over http(s) or (operator only) local
)

// location is a classified buildpack URL.
type location struct {
	kind  kind
	base  string // URL or path without the #ref
	ref   string // branch, tag or commit for git
	local bool   // names something on this server
	// user: a user chose this URL, so it is fetched under the egress rule
	// (egress.go): checked destinations, none of the server's credentials.
	user   bool
	pinned string    // for git: base with its host checked (and maybe replaced by the address)
	proxy  *gitProxy // for git: the fetch's way to http(s) remotes
}

// gitURL is what git is given to fetch.
func (l location) gitURL() string {
	if l.pinned != "" {
		return l.pinned
	}
	return l.base
}

// shortNameRE is what a short name (heroku/python) looks like.
var shortNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$`)

var (
	fullSHARE   = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
	abbrevSHARE = regexp.MustCompile(`^[0-9a-f]{4,63}$`)
)

// DefaultShortNames maps Heroku's official classic buildpacks' short names to
// their public repositories. The operator's map (--buildpack-map) is applied
// over it.
func DefaultShortNames() map[string]string {
	m := map[string]string{}
	for _, lang := range []string{"clojure", "go", "gradle", "java", "nodejs", "php", "python", "ruby", "scala"} {
		m["heroku/"+lang] = "https://github.com/heroku/heroku-buildpack-" + lang + ".git"
	}
	return m
}

// ParseShortNames reads NAME=URL entries (the --buildpack-map flag).
func ParseShortNames(entries []string) (map[string]string, error) {
	m := map[string]string{}
	for _, e := range entries {
		name, url, ok := strings.Cut(strings.TrimSpace(e), "=")
		name, url = strings.TrimSpace(name), strings.TrimSpace(url)
		if !ok || name == "" || url == "" || strings.ContainsAny(name, "#= \t") {
			return nil, fmt.Errorf("%w: %q (want NAME=URL)", ErrShortName, e)
		}
		m[name] = url
	}
	return m, nil
}

// classify decides how to fetch base.
func classify(base, ref string) location {
	loc := location{kind: kindGit, base: base, ref: ref}
	lower := strings.ToLower(base)
	switch {
	case strings.HasPrefix(lower, "https://"), strings.HasPrefix(lower, "http://"):
		if u, err := neturl.Parse(base); err == nil && isTarballName(u.Path) {
			loc.kind = kindTarball
		}
	case strings.HasPrefix(lower, "git://"), strings.HasPrefix(lower, "ssh://"), isSCPLike(base):
	case strings.HasPrefix(lower, "file://"):
		loc.local = true
		if isTarballName(base) {
			loc.kind, loc.base = kindTarball, strings.TrimPrefix(base[len("file://"):], "localhost")
		}
	case strings.Contains(base, "://"):
		// Another transport (ext::, fd::...): let the security check refuse
		// it for users; git refuses it for everyone (protocol.allow).
		loc.local = true
	default:
		loc.local = true
		st, err := os.Stat(base)
		switch {
		case err == nil && st.Mode().IsRegular() && isTarballName(base):
			loc.kind = kindTarball
		case err == nil && st.IsDir() && ref == "" && isDir(filepath.Join(base, "bin")):
			loc.kind = kindDir
		}
	}
	return loc
}

func isTarballName(p string) bool {
	p = strings.ToLower(p)
	return strings.HasSuffix(p, ".tgz") || strings.HasSuffix(p, ".tar.gz")
}

func isSCPLike(s string) bool {
	at := strings.Index(s, "@")
	colon := strings.Index(s, ":")
	return at > 0 && colon > at && !strings.Contains(s[:colon], "/")
}

// resolve applies the short-name map and the rule that only the operator may
// name local things. shown is the URL as messages name it.
func (b *Builder) resolve(url string, origin Origin) (loc location, shown string, err error) {
	base, ref, _ := strings.Cut(strings.TrimSpace(url), "#")
	shown = url
	if to, ok := b.shortNames[base]; ok && (origin == User || !exists(base)) {
		// The map is the operator's: its targets may be local.
		tbase, tref, _ := strings.Cut(to, "#")
		if ref == "" {
			ref = tref
		}
		return classify(tbase, ref), url + " (" + to + ")", nil
	}
	if shortNameRE.MatchString(base) && (origin == User || !exists(base)) {
		return loc, shown, fmt.Errorf("%w: %s: not a known buildpack name; use its URL (known names: %s)",
			ErrFetch, url, strings.Join(b.knownNames(), ", "))
	}
	loc = classify(base, ref)
	if origin == User && loc.local {
		return loc, shown, fmt.Errorf("%w: %s", ErrLocalNotAllow, url)
	}
	loc.user = origin == User
	return loc, shown, nil
}

func (b *Builder) knownNames() []string {
	names := make([]string, 0, len(b.shortNames))
	for n := range b.shortNames {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// fetch makes a private copy of the buildpack in dst (SPEC D2, D3).
func (b *Builder) fetch(ctx context.Context, url string, origin Origin, dst string) (source, error) {
	src := source{url: url, dir: dst}
	loc, shown, err := b.resolve(url, origin)
	if err != nil {
		return src, err
	}
	switch {
	case loc.kind == kindDir:
		err = copyTree(loc.base, dst)
	case loc.kind == kindTarball && loc.local:
		err = unpackFile(loc.base, dst, b.cfg.MaxBuildpackSize)
	case loc.kind == kindTarball && loc.user:
		err = b.fetchTarball(ctx, b.egress.http, loc.base, dst)
	case loc.kind == kindTarball:
		err = b.fetchTarball(ctx, b.http, loc.base, dst)
	case loc.user:
		err = b.fetchUserGit(ctx, loc, dst)
	default:
		err = b.fetchGit(ctx, loc, dst)
	}
	if err != nil {
		if ctx.Err() != nil {
			return src, ctx.Err()
		}
		return src, fmt.Errorf("%w: %s: %w", ErrFetch, shown, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "bin", "compile")); err != nil || st.IsDir() {
		return src, fmt.Errorf("%w: %s: no bin/compile in the buildpack", ErrFetch, shown)
	}
	return src, nil
}

// fetchGit fetches a git buildpack, through the node cache when it is remote
// and there is one.
func (b *Builder) fetchGit(ctx context.Context, loc location, dst string) error {
	if loc.local || b.cache == nil {
		return b.retry(ctx, func(ctx context.Context) error {
			_ = os.RemoveAll(dst)
			return b.gitClone(ctx, loc, dst)
		})
	}
	return b.fetchGitCached(ctx, loc, dst)
}

// fetchUserGit fetches a git URL a user chose under the egress rule: the URL
// is checked (and pinned to the checked address) first, and git reaches
// http(s) only through this fetch's checking proxy.
func (b *Builder) fetchUserGit(ctx context.Context, loc location, dst string) error {
	err := b.retry(ctx, func(ctx context.Context) error {
		var err error
		loc.pinned, err = b.egress.pin(ctx, loc.base)
		return err
	})
	if err != nil {
		return err
	}
	if loc.proxy, err = b.egress.startGitProxy(ctx); err != nil {
		return err
	}
	defer loc.proxy.close()
	return b.fetchGit(ctx, loc, dst)
}

func unpackFile(path, dst string, max int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	return unpackBuildpack(f, dst, max)
}

// permanentError is a fetch failure that retrying cannot fix (a 404, a
// malformed archive).
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// retry runs op with the fetch timeout, up to FetchRetries times, backing
// off between attempts (SPEC D3).
func (b *Builder) retry(ctx context.Context, op func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, b.cfg.FetchTimeout)
		err := op(actx)
		timedOut := errors.Is(actx.Err(), context.DeadlineExceeded)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if timedOut {
			err = fmt.Errorf("timed out after %s", b.cfg.FetchTimeout)
		}
		var perm permanentError
		if errors.As(err, &perm) || errors.Is(err, ErrArchive) || attempt >= b.cfg.FetchRetries {
			if attempt > 1 {
				return fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return err
		}
		t := time.NewTimer(b.retryDelay << (attempt - 1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// fetchTarball downloads an http(s) tarball buildpack into dst, through the
// node cache when there is one: a cached copy is revalidated with a
// conditional GET and reused while the server says it is unchanged.
func (b *Builder) fetchTarball(ctx context.Context, client *http.Client, url, dst string) error {
	if b.cache == nil {
		return b.retry(ctx, func(ctx context.Context) error {
			_ = os.RemoveAll(dst)
			_, _, err := b.download(ctx, client, url, cacheMeta{}, dst)
			return err
		})
	}
	key := fetchKey("tarball", url)
	unlock, err := b.cache.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	old, oldTree, cached := b.cache.get(key)
	if !cached {
		old = cacheMeta{}
	}
	stage, err := b.cache.stage()
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(stage) }()
	tree := filepath.Join(stage, "tree")
	var fresh cacheMeta
	var unchanged bool
	err = b.retry(ctx, func(ctx context.Context) error {
		_ = os.RemoveAll(tree)
		var err error
		unchanged, fresh, err = b.download(ctx, client, url, old, tree)
		return err
	})
	if err != nil {
		return err
	}
	if unchanged && cached {
		return copyTree(oldTree, dst)
	}
	fresh.URL = url
	installed, err := b.cache.install(key, fresh, stage)
	if err != nil {
		return err
	}
	return copyTree(installed, dst)
}

// download GETs a tarball and unpacks it into dst. With validators from an
// earlier download it may answer "unchanged" (304) instead.
func (b *Builder) download(ctx context.Context, client *http.Client, url string, old cacheMeta, dst string) (bool, cacheMeta, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, old, permanentError{err}
	}
	req.Header.Set("User-Agent", "sokoban-buildpack-fetch")
	if old.ETag != "" {
		req.Header.Set("If-None-Match", old.ETag)
	}
	if old.LastModified != "" {
		req.Header.Set("If-Modified-Since", old.LastModified)
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is in the message already
		}
		var d *destError
		if errors.As(err, &d) { // the egress rule refused it: no retry
			err = d
			if uerr != nil && uerr.URL != url {
				err = fmt.Errorf("redirected to %s: %w", uerr.URL, d)
			}
			return false, old, permanentError{err}
		}
		return false, old, err
	}
	defer func() { _ = resp.Body.Close() }()
	switch {
	case resp.StatusCode == http.StatusNotModified && (old.ETag != "" || old.LastModified != ""):
		return true, old, nil
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode >= 500:
		return false, old, fmt.Errorf("HTTP %s", resp.Status)
	default:
		return false, old, permanentError{fmt.Errorf("HTTP %s", resp.Status)}
	}
	if err := unpackBuildpack(resp.Body, dst, b.cfg.MaxBuildpackSize); err != nil {
		if errors.Is(err, ErrArchive) {
			return false, old, permanentError{errors.New(strings.TrimPrefix(err.Error(), "buildpack: "))}
		}
		return false, old, err
	}
	return false, cacheMeta{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}, nil
}

// fetchGitCached fetches a remote git buildpack through the node cache,
// keyed by URL and ref. A full commit id never changes; a branch or tag is
// checked with `git ls-remote` and fetched again when it moved.
func (b *Builder) fetchGitCached(ctx context.Context, loc location, dst string) error {
	remote := ""
	if !fullSHARE.MatchString(loc.ref) {
		err := b.retry(ctx, func(ctx context.Context) error {
			var err error
			remote, err = b.lsRemote(ctx, loc)
			return err
		})
		if err != nil {
			return err
		}
	}
	key := fetchKey("git", loc.base, loc.ref)
	unlock, err := b.cache.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	if m, tree, ok := b.cache.get(key); ok && m.Remote == remote {
		return copyTree(tree, dst)
	}
	stage, err := b.cache.stage()
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(stage) }()
	tree := filepath.Join(stage, "tree")
	err = b.retry(ctx, func(ctx context.Context) error {
		_ = os.RemoveAll(tree)
		return b.gitClone(ctx, loc, tree)
	})
	if err != nil {
		return err
	}
	installed, err := b.cache.install(key, cacheMeta{URL: loc.base, Ref: loc.ref, Remote: remote}, stage)
	if err != nil {
		return err
	}
	return copyTree(installed, dst)
}

// lsRemote returns what the ref points to now: a branch first, then a tag;
// HEAD without a ref. "" means the ref names no branch or tag (an
// abbreviated commit id), which never moves.
func (b *Builder) lsRemote(ctx context.Context, loc location) (string, error) {
	patterns := []string{"HEAD"}
	if loc.ref != "" {
		patterns = []string{"refs/heads/" + loc.ref, "refs/tags/" + loc.ref}
	}
	out, err := b.git(ctx, "", loc, append([]string{"ls-remote", "--"}, append([]string{loc.gitURL()}, patterns...)...)...)
	if err != nil {
		return "", err
	}
	found := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if id, name, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok {
			found[name] = id
		}
	}
	for _, p := range patterns {
		if id := found[p]; id != "" {
			return id, nil
		}
	}
	return "", nil
}

// Bounds on a git buildpack's tree, measured before it is written out
// (issue 10): the bytes are Config.MaxBuildpackSize, as for tarballs.
const (
	maxBuildpackEntries = 200_000
	maxBuildpackDepth   = 128
)

// gitClone fetches repo at ref (branch, tag or commit; default: its HEAD)
// into dst, shallowly where git allows. The objects go into a scratch
// repository beside dst with no checkout; the commit's tree is measured
// (MeasureTree) and only then written out with git archive under the same
// bounds. A checkout wrote whatever the tree held: a public repository of
// ten identical subtrees ten levels deep, a tiny pack, filled DATA with
// gigabytes until the fetch timed out, three times over. On failure nothing
// is left at dst.
func (b *Builder) gitClone(ctx context.Context, loc location, dst string) (err error) {
	repo := dst + ".git"
	_ = os.RemoveAll(repo)
	defer func() { _ = os.RemoveAll(repo) }()
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dst)
		}
	}()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if _, err := b.git(ctx, "", loc, "init", "--quiet", "--bare", "--", repo); err != nil {
		return err
	}
	// The files exactly as committed, as a checkout had them: the tree's
	// own .gitattributes may not drop (export-ignore) or rewrite
	// (export-subst) any of them in the archive.
	if err := os.MkdirAll(filepath.Join(repo, "info"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(repo, "info", "attributes"), []byte("* -export-ignore -export-subst\n"), 0o644); err != nil {
		return err
	}
	commit, err := b.gitFetchCommit(ctx, loc, repo)
	if err != nil {
		return err
	}
	lim := TreeLimits{MaxBytes: b.cfg.MaxBuildpackSize, MaxEntries: maxBuildpackEntries, MaxDepth: maxBuildpackDepth}
	err = MeasureTree(ctx, proc.Cmd{
		Argv: append(b.localGit(), "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit),
		Dir:  repo, Env: gitEnv(),
	}, lim)
	if err == nil {
		err = ArchiveTree(ctx, proc.Cmd{Argv: append(b.localGit(), "archive", "--format=tar", commit), Dir: repo, Env: gitEnv()}, dst, lim)
	}
	var le *LimitError
	if errors.As(err, &le) {
		return permanentError{fmt.Errorf("it unpacks to %s", le.Reason)}
	}
	return err
}

// gitFetchCommit fetches loc's ref into the bare repository repo and
// returns the commit's id. Every command here may reach the network, so
// each goes through b.git with loc's rules (the user's proxy).
func (b *Builder) gitFetchCommit(ctx context.Context, loc location, repo string) (string, error) {
	ref := loc.ref
	if ref == "" {
		ref = "HEAD"
	}
	// Fetching by name works for branches, tags and full commit ids (those
	// need protocol v2 or uploadpack.allowAnySHA1InWant, which GitHub and
	// local repositories have). An abbreviated commit id needs the history.
	rev := "FETCH_HEAD^{commit}"
	if _, err := b.git(ctx, repo, loc, "fetch", "--quiet", "--no-tags", "--depth", "1", "--", loc.gitURL(), ref); err != nil {
		if !abbrevSHARE.MatchString(loc.ref) {
			return "", err
		}
		if _, err := b.git(ctx, repo, loc, "fetch", "--quiet", "--", loc.gitURL(), "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"); err != nil {
			return "", err
		}
		rev = loc.ref + "^{commit}"
	}
	out, err := b.git(ctx, repo, loc, "rev-parse", "--verify", "--quiet", "--end-of-options", rev)
	if err != nil {
		return "", permanentError{fmt.Errorf("no commit %s in the repository", ref)}
	}
	return strings.TrimSpace(out), nil
}

// localGit is the start of a git command that works on a local repository
// only: no transport at all, so nothing it does can reach the network.
func (b *Builder) localGit() []string {
	return []string{b.cfg.Git, "-c", "protocol.allow=never"}
}

// git runs one server-side git command for a fetch of loc and returns its
// output; on failure the error is git's last line, or the destination the
// egress rule refused.
func (b *Builder) git(ctx context.Context, dir string, loc location, args ...string) (string, error) {
	var out bytes.Buffer
	// Only the network transports for a remote URL; file:// only for the
	// operator's local repositories; ssh for a user only where the operator
	// allows it. Never ext:: and the like.
	ssh := "always"
	if loc.user && !b.egress.ssh {
		ssh = "never"
	}
	argv := []string{b.cfg.Git, "-c", "protocol.allow=never", "-c", "protocol.https.allow=always",
		"-c", "protocol.http.allow=always", "-c", "protocol.git.allow=always", "-c", "protocol.ssh.allow=" + ssh}
	if loc.local {
		argv = append(argv, "-c", "protocol.file.allow=always")
	}
	env := gitEnv()
	if loc.user {
		env = userGitEnv(loc.proxy)
	}
	err := proc.Run(ctx, proc.Cmd{Argv: append(argv, args...), Dir: dir, Env: env,
		Stdout: &limitedBuffer{buf: &out, max: 1 << 20}})
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if loc.proxy != nil {
			if r := loc.proxy.refusal(); r != nil {
				return "", permanentError{r}
			}
		}
		return "", fmt.Errorf("git %s: %s", args[0], lastLine(out.String()))
	}
	return out.String(), nil
}

// gitEnv is the environment for server-side git commands: nothing from the
// server, no prompts, no user or system configuration.
func gitEnv() []string {
	return []string{
		"PATH=" + defaultPath,
		"HOME=/nonexistent",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_ASKPASS=/bin/false",
		"SSH_ASKPASS=/bin/false",
		"GIT_SSH_COMMAND=ssh -o BatchMode=yes",
		"LANG=C",
	}
}

// userGitEnv is gitEnv for a URL a user chose: ssh without any key, agent
// or configuration of the server's account, and, with a proxy, http(s)
// only through it. Git's own config already starts from nothing (no
// credential helper), curl's netrc is $HOME/.netrc, which does not exist,
// and no proxy variable of the server's is passed on.
func userGitEnv(proxy *gitProxy) []string {
	env := gitEnv()
	for i, kv := range env {
		if strings.HasPrefix(kv, "GIT_SSH_COMMAND=") {
			env[i] = "GIT_SSH_COMMAND=" + userSSHCommand
		}
	}
	if proxy != nil {
		env = append(env, proxy.env()...)
	}
	return env
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	if s == "" {
		return "failed"
	}
	return s
}

// Bounds on a .buildpacks (issue 10): Heroku allows a handful of buildpacks
// per app, and a URL is a short line.
const (
	maxBuildpacksURLs = 32
	maxBuildpacksLine = 2 << 10 // bytes, comments included
)

// ReadBuildpacksFile parses a .buildpacks file (SPEC D4): one URL per line,
// #ref allowed, blank lines and # comments ignored. The URLs are echoed to
// the pusher (and to whoever reads the build's log), so the whole file is
// checked first: more than 32 URLs, a line longer than 2 KiB, or a URL with a
// control character, invalid UTF-8 or another unprintable rune is refused
// (ErrBuildpacksFile) with its line number, and nothing of the line is quoted.
func ReadBuildpacksFile(data []byte) ([]string, error) {
	var urls []string
	n := 0
	for raw := range bytes.Lines(data) {
		n++
		if len(bytes.TrimRight(raw, "\r\n")) > maxBuildpacksLine {
			return nil, fmt.Errorf("%w line %d: longer than %s; write one URL per line", ErrBuildpacksFile, n, Limit(maxBuildpacksLine))
		}
		line := strings.TrimLeftFunc(string(raw), unicode.IsSpace)
		col := len(raw) - len(line) + 1 // where line starts, for messages
		line = strings.TrimRightFunc(line, unicode.IsSpace)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for i := 0; i < len(line); {
			r, size := utf8.DecodeRuneInString(line[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				return nil, fmt.Errorf("%w line %d: column %d is not UTF-8; write the URL in plain text", ErrBuildpacksFile, n, col+i)
			case !unicode.IsPrint(r):
				return nil, fmt.Errorf("%w line %d: column %d holds %U, which is not printable; write the URL in plain text", ErrBuildpacksFile, n, col+i, r)
			}
			i += size
		}
		if len(urls) == maxBuildpacksURLs {
			return nil, fmt.Errorf("%w line %d: more than %d buildpacks", ErrBuildpacksFile, n, maxBuildpacksURLs)
		}
		urls = append(urls, line)
	}
	return urls, nil
}

// copyTree copies a directory tree, keeping modes and symlinks (never
// following them). .git directories and special files are left out.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if d.Name() == ".git" && p != src {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, mode|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// CopyDir copies a source directory for a build, leaving .git out.
func CopyDir(src, dst string) error { return copyTree(src, dst) }
