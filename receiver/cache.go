package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/sokoban-deploy/sokoban/buildpack"
	"github.com/sokoban-deploy/sokoban/stow"
)

// cacheKey is where an app's build cache lives in stow (DESIGN "Where
// durable state goes"). Any node restores it; no node keeps it.
func cacheKey(app string) string { return "apps/" + app + "/cache.tgz" }

// PurgeCache deletes app's stowed build cache, so its next build starts with
// an empty CACHE_DIR (the `cache:purge APP` command). No cache is no error.
func (r *Receiver) PurgeCache(ctx context.Context, app string) error {
	if err := r.deps.Store.Delete(ctx, cacheKey(app)); err != nil && !errors.Is(err, stow.ErrNotFound) {
		return fmt.Errorf("receiver: purge cache of %s: %w", app, err)
	}
	return nil
}

// restoreCache makes this push's CACHE_DIR inside its workspace and fills it
// from stow (SPEC C6), streaming. `git push -o cache=purge` starts empty and
// deletes the stowed cache. A missing cache starts empty quietly (every first
// build has none); an unreadable or corrupt one starts empty with a note.
func (p *push) restoreCache(hookEnv map[string]string, out io.Writer) string {
	dir := filepath.Join(p.work, "cache")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		p.log.Error("cache dir", "err", err)
		return dir // the build reports the workspace problem itself
	}
	if v, ok := pushOption(hookEnv, "cache"); ok && v == "purge" {
		buildpack.Step(out, "Purging the build cache (git push -o cache=purge); this build starts with an empty cache.")
		if err := p.r.PurgeCache(p.ctx, p.req.App); err != nil {
			p.log.Warn("purge cache", "err", err)
		}
		return dir
	}
	p.setStage("restoring")
	rc, _, err := p.r.deps.Store.Get(p.ctx, cacheKey(p.req.App))
	if errors.Is(err, stow.ErrNotFound) {
		return dir
	}
	if err == nil {
		err = buildpack.UnpackCache(rc, dir)
		_ = rc.Close()
	}
	if err != nil && p.ctx.Err() == nil {
		p.log.Warn("build cache not restored", "err", err)
		_ = os.RemoveAll(dir)
		_ = os.MkdirAll(dir, 0o700)
		buildpack.Detail(out, "The build cache could not be restored; this build starts with an empty cache.")
	}
	return dir
}

// defaultMaxCacheSize is Config.MaxCacheSize's default, Heroku's cache limit.
const defaultMaxCacheSize = 1 << 30

// saveCache stows the CACHE_DIR of a successful build, streaming: the tarball
// is never held in memory or on disk. It runs after the release, so it is not
// cut short by a pusher who leaves then; a failure only costs the next build
// its cache. A cache past MaxCacheSize is not saved and the stowed one is
// deleted, so the next build starts empty rather than with a stale cache.
func (p *push) saveCache(dir string, out io.Writer) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), p.r.cfg.StowTimeout)
	defer cancel()
	limit := p.r.cfg.MaxCacheSize
	if limit <= 0 {
		limit = defaultMaxCacheSize
	}
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	var packErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		packErr = buildpack.PackCache(ctx, dir, pw, limit)
		_ = pw.CloseWithError(packErr)
	}()
	_, err := p.r.deps.Store.Put(ctx, cacheKey(p.req.App), pr)
	_ = pr.CloseWithError(err) // unblock the packer if stow gave up
	wg.Wait()
	switch {
	case errors.Is(packErr, buildpack.ErrPackTooLarge):
		p.log.Warn("build cache not saved", "err", packErr, "limit", limit)
		if err := p.r.PurgeCache(ctx, p.req.App); err != nil {
			p.log.Warn("purge oversized cache", "err", err)
		}
		buildpack.Warn(out, "Warning: the build cache is larger than %s and was not saved; the next build starts without it.",
			buildpack.Limit(limit))
	case err != nil:
		p.log.Warn("build cache not saved", "err", err)
		buildpack.Warn(out, "Warning: the build cache could not be saved; the next build starts without it.")
	}
}

// pushOption returns the value of `git push -o NAME=VALUE` (or "" for a bare
// `-o NAME`), as the hook forwards them in GIT_PUSH_OPTION_*.
func pushOption(env map[string]string, name string) (string, bool) {
	n, err := strconv.Atoi(env["GIT_PUSH_OPTION_COUNT"])
	if err != nil {
		return "", false
	}
	for i := 0; i < n && i < 100; i++ {
		opt := env["GIT_PUSH_OPTION_"+strconv.Itoa(i)]
		k, v, _ := strings.Cut(opt, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}
