package receiver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sokoban-deploy/sokoban/internal/proc"
	"github.com/sokoban-deploy/sokoban/stow"
)

// Repositories are durable in stow as a git bundle plus a manifest that points
// at it (apps/APP/repo.json → apps/APP/repo/GEN.bundle). Bundles are immutable
// and named by generation, so a reader that fetched manifest N never reads half
// of bundle N+1. Each node keeps a bare repository per app as a cache
// (DATA/repos/APP.git) and a note of the generation it matches
// (DATA/repos/APP.json); the cache is used only when that generation is the
// stowed one, so a node never serves or builds on a stale repository.

// manifest describes the stowed repository of an app.
type manifest struct {
	Generation int64             `json:"generation"`
	Bundle     string            `json:"bundle,omitempty"` // stow key; empty when the repository has no refs
	SHA256     string            `json:"sha256,omitempty"`
	Size       int64             `json:"size,omitempty"`
	Refs       map[string]string `json:"refs"`
	Fence      int64             `json:"fence,omitempty"` // lease generation of the writer
	UpdatedAt  time.Time         `json:"updated_at"`
}

// cacheState is the node's note about its cached repository.
type cacheState struct {
	Generation int64 `json:"generation"`
}

func manifestKey(app string) string { return "apps/" + app + "/repo.json" }
func bundleKey(app string, gen int64) string {
	return fmt.Sprintf("apps/%s/repo/%012d.bundle", app, gen)
}

type repos struct {
	dir  string // DATA/repos
	tmp  string // DATA/tmp, same filesystem for renames
	stow stow.Store
	git  string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func newRepos(dataDir string, s stow.Store, git string) (*repos, error) {
	r := &repos{dir: filepath.Join(dataDir, "repos"), tmp: filepath.Join(dataDir, "tmp"), stow: s, git: git, locks: map[string]*sync.Mutex{}}
	for _, d := range []string{r.dir, r.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("receiver: %w", err)
		}
	}
	return r, nil
}

func (r *repos) path(app string) string      { return filepath.Join(r.dir, app+".git") }
func (r *repos) statePath(app string) string { return filepath.Join(r.dir, app+".json") }

// lock serializes cache changes for one app on this node (a push and a clone may
// both want to restore it).
func (r *repos) lock(app string) func() {
	r.mu.Lock()
	m, ok := r.locks[app]
	if !ok {
		m = &sync.Mutex{}
		r.locks[app] = m
	}
	r.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// prepare returns the app's repository directory, current with stow, creating
// an empty one when the app has never been pushed and create is set. It
// returns the stowed manifest the repository matches (nil for none).
func (r *repos) prepare(ctx context.Context, app string, create bool) (string, *manifest, error) {
	unlock := r.lock(app)
	defer unlock()
	dir := r.path(app)
	stowed, err := r.readManifest(ctx, app)
	if err != nil {
		return "", nil, err
	}
	state, haveCache := r.readState(app), isDir(dir)
	switch {
	case haveCache && stowed == nil:
		// Pushed here but never stowed (stow failed after the push): the cache is
		// the only copy, and the next successful push stows it.
		return dir, nil, nil
	case haveCache && state != nil && state.Generation == stowed.Generation:
		return dir, stowed, nil
	case stowed == nil && !create:
		return "", nil, ErrNoRepo
	case stowed == nil:
		if err := r.initBare(ctx, dir); err != nil {
			return "", nil, err
		}
		return dir, nil, nil
	}
	if err := r.restore(ctx, app, stowed); err != nil {
		return "", nil, err
	}
	return dir, stowed, nil
}

func (r *repos) initBare(ctx context.Context, dir string) error {
	tmp, err := os.MkdirTemp(r.tmp, "init-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if _, err := r.run(ctx, "", "init", "--quiet", "--bare", "--initial-branch=main", tmp); err != nil {
		return fmt.Errorf("receiver: create repository: %w", err)
	}
	return r.swap(tmp, dir)
}

// restore replaces the cache with the stowed repository, verifying it first.
func (r *repos) restore(ctx context.Context, app string, m *manifest) error {
	tmp, err := os.MkdirTemp(r.tmp, "restore-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	repo := filepath.Join(tmp, "repo.git")
	if _, err := r.run(ctx, "", "init", "--quiet", "--bare", "--initial-branch=main", repo); err != nil {
		return fmt.Errorf("receiver: restore %s: %w", app, err)
	}
	if m.Bundle != "" {
		bundle := filepath.Join(tmp, "repo.bundle")
		if err := r.download(ctx, m, bundle); err != nil {
			return err
		}
		if out, err := r.run(ctx, repo, "bundle", "verify", "--quiet", bundle); err != nil {
			return fmt.Errorf("%w: %s: git bundle verify: %s", ErrCorruptRepo, m.Bundle, lastLine(out))
		}
		if out, err := r.run(ctx, repo, "fetch", "--quiet", "--no-tags", bundle, "+refs/*:refs/*"); err != nil {
			return fmt.Errorf("%w: %s: %s", ErrCorruptRepo, m.Bundle, lastLine(out))
		}
		refs, err := r.refs(ctx, repo)
		if err != nil {
			return err
		}
		if !sameRefs(refs, m.Refs) {
			return fmt.Errorf("%w: %s: refs do not match the manifest", ErrCorruptRepo, m.Bundle)
		}
		r.fixHead(ctx, repo, refs)
	}
	dir := r.path(app)
	if err := r.swap(repo, dir); err != nil {
		return err
	}
	return r.writeState(app, cacheState{Generation: m.Generation})
}

// download fetches the manifest's bundle into path, checking size and SHA256.
func (r *repos) download(ctx context.Context, m *manifest, path string) error {
	rc, _, err := r.stow.Get(ctx, m.Bundle)
	if errors.Is(err, stow.ErrNotFound) {
		return fmt.Errorf("%w: %s is missing", ErrCorruptRepo, m.Bundle)
	}
	if err != nil {
		return fmt.Errorf("receiver: fetch repository: %w", err)
	}
	defer func() { _ = rc.Close() }()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("receiver: fetch repository: %w", err)
	}
	if n != m.Size || hex.EncodeToString(h.Sum(nil)) != m.SHA256 {
		return fmt.Errorf("%w: %s: %d bytes with checksum %x, manifest says %d bytes with %s",
			ErrCorruptRepo, m.Bundle, n, h.Sum(nil)[:6], m.Size, shortSum(m.SHA256))
	}
	return nil
}

// save stows the repository at dir as the next generation after base. fence is
// the writer's lease generation.
func (r *repos) save(ctx context.Context, app, dir string, base *manifest, fence int64) error {
	refs, err := r.refs(ctx, dir)
	if err != nil {
		return err
	}
	next := &manifest{Generation: 1, Refs: refs, Fence: fence, UpdatedAt: time.Now().UTC()}
	if base != nil {
		next.Generation = base.Generation + 1
	}
	if len(refs) > 0 {
		tmp, err := os.MkdirTemp(r.tmp, "bundle-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		bundle := filepath.Join(tmp, "repo.bundle")
		if out, err := r.run(ctx, dir, "bundle", "create", "--quiet", bundle, "--all"); err != nil {
			return fmt.Errorf("receiver: bundle repository: %s", lastLine(out))
		}
		f, err := os.Open(bundle)
		if err != nil {
			return err
		}
		h := sha256.New()
		next.Bundle = bundleKey(app, next.Generation)
		info, err := r.stow.Put(ctx, next.Bundle, io.TeeReader(f, h))
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("receiver: stow repository: %w", err)
		}
		next.Size, next.SHA256 = info.Size, hex.EncodeToString(h.Sum(nil))
	}
	if _, err := stow.PutJSON(ctx, r.stow, manifestKey(app), next); err != nil {
		return fmt.Errorf("receiver: stow repository manifest: %w", err)
	}
	if base != nil && base.Bundle != "" && base.Bundle != next.Bundle {
		_ = r.stow.Delete(ctx, base.Bundle) // a leftover only costs space
	}
	r.fixHead(ctx, dir, refs)
	return r.writeState(app, cacheState{Generation: next.Generation})
}

func (r *repos) readManifest(ctx context.Context, app string) (*manifest, error) {
	var m manifest
	if _, err := stow.GetJSON(ctx, r.stow, manifestKey(app), &m); err != nil {
		if errors.Is(err, stow.ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("receiver: read repository manifest: %w", err)
	}
	if m.Bundle != "" && m.Bundle != bundleKey(app, m.Generation) {
		return nil, fmt.Errorf("%w: manifest names %q", ErrCorruptRepo, m.Bundle)
	}
	return &m, nil
}

func (r *repos) readState(app string) *cacheState {
	b, err := os.ReadFile(r.statePath(app))
	if err != nil {
		return nil
	}
	var s cacheState
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	return &s
}

func (r *repos) writeState(app string, s cacheState) error {
	b, _ := json.Marshal(s)
	tmp := r.statePath(app) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, r.statePath(app))
}

// swap moves a freshly built repository into place.
func (r *repos) swap(src, dst string) error {
	old := ""
	if isDir(dst) {
		old = dst + ".old-" + fmt.Sprint(time.Now().UnixNano())
		if err := os.Rename(dst, old); err != nil {
			return err
		}
	}
	if err := os.Rename(src, dst); err != nil {
		if old != "" {
			_ = os.Rename(old, dst)
		}
		return err
	}
	if old != "" {
		_ = os.RemoveAll(old)
	}
	return nil
}

// refs lists the repository's refs (name → object id).
func (r *repos) refs(ctx context.Context, dir string) (map[string]string, error) {
	out, err := r.run(ctx, dir, "for-each-ref", "--format=%(objectname) %(refname)")
	if err != nil {
		return nil, fmt.Errorf("receiver: list refs: %s", lastLine(out))
	}
	refs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if oid, name, ok := strings.Cut(line, " "); ok {
			refs[name] = oid
		}
	}
	return refs, nil
}

// fixHead points HEAD at a branch that exists, so `git clone` checks it out.
func (r *repos) fixHead(ctx context.Context, dir string, refs map[string]string) {
	for _, b := range []string{"refs/heads/main", "refs/heads/master"} {
		if _, ok := refs[b]; ok {
			_, _ = r.run(ctx, dir, "symbolic-ref", "HEAD", b)
			return
		}
	}
}

// run runs a git command with the server-side environment and returns its
// combined output.
func (r *repos) run(ctx context.Context, dir string, args ...string) (string, error) {
	var out bytes.Buffer
	err := proc.Run(ctx, proc.Cmd{Argv: append([]string{r.git}, args...), Dir: dir, Env: gitEnv(nil), Stdout: &limitWriter{w: &out, n: 1 << 20}})
	return out.String(), err
}

func sameRefs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "failed"
	}
	return s
}

func shortSum(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// limitWriter keeps the first n bytes and drops the rest.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(int64(len(p)), l.n)
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.n -= k
	}
	return len(p), nil
}
