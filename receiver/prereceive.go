package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sokoban-deploy/sokoban/buildpack"
	"github.com/sokoban-deploy/sokoban/internal/proc"
	"github.com/sokoban-deploy/sokoban/release"
)

// DeployBranches are the branches whose pushes build (SPEC A4).
var DeployBranches = []string{"refs/heads/main", "refs/heads/master"}

var oidRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

type refUpdate struct{ old, new, ref string }

func (u refUpdate) deletes() bool { return strings.Trim(u.new, "0") == "" }

func parseRefs(s string) ([]refUpdate, error) {
	var out []refUpdate
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		if len(out) == MaxRefUpdates {
			return nil, fmt.Errorf("%w: more than %d ref updates", ErrBadHookRequest, MaxRefUpdates)
		}
		f := strings.Fields(line)
		if len(f) != 3 || !oidRE.MatchString(f[0]) || !oidRE.MatchString(f[1]) || !strings.HasPrefix(f[2], "refs/") {
			return nil, fmt.Errorf("%w: ref line %q", ErrBadHookRequest, line)
		}
		out = append(out, refUpdate{f[0], f[1], f[2]})
	}
	return out, nil
}

func isDeployBranch(ref string) bool {
	for _, b := range DeployBranches {
		if ref == b {
			return true
		}
	}
	return false
}

// preReceive decides whether git may update the refs, building and releasing
// when the deploy branch moves. Everything written to w reaches the pusher as
// "remote:" lines as it is written (SPEC A2).
func (p *push) preReceive(h hookRequest, w io.Writer, logFile io.Writer) (ok bool) {
	p.mu.Lock()
	p.phase = hookRunning
	p.mu.Unlock()
	defer close(p.hookDone)
	out := newOutput(w, io.MultiWriter(logFile, p.running.Output()), p.r.cfg.Heartbeat, p.currentStage)
	defer out.stop()
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("panic in pre-receive", "panic", v)
			buildpack.Warn(out, "Push rejected, the server hit an internal error.")
			ok = false
		}
		p.mu.Lock()
		p.verdict = rejected
		if ok {
			p.verdict = accepted
		}
		p.mu.Unlock()
	}()
	reject := func(status, format string, args ...any) bool {
		msg := fmt.Sprintf(format, args...)
		buildpack.Warn(out, "Push rejected, %s", msg)
		p.finish(status, msg)
		return false
	}
	if h.TooMany {
		return reject(StatusRejected, "this push updates more than %d refs (or %d MiB of ref names); push them in smaller batches.", MaxRefUpdates, maxRefBytes>>20)
	}
	updates, err := parseRefs(h.Refs)
	if err != nil {
		p.log.Error("bad hook request", "err", err)
		return reject(StatusRejected, "the server could not read the pushed refs.")
	}
	if h.Env["GIT_SHALLOW_FILE"] != "" {
		// SPEC A7: building from a shallow history would build the wrong thing.
		return reject(StatusRejected, "this is a shallow clone. Run `git fetch --unshallow` and push again.")
	}
	var deploy *refUpdate
	otherBranch := false
	for i, u := range updates {
		switch {
		case isDeployBranch(u.ref) && u.deletes():
			return reject(StatusRejected, "deleting the deploy branch %s is not allowed.", strings.TrimPrefix(u.ref, "refs/heads/"))
		case isDeployBranch(u.ref) && deploy != nil:
			return reject(StatusRejected, "push either main or master, not both at once.")
		case isDeployBranch(u.ref):
			deploy = &updates[i]
		case strings.HasPrefix(u.ref, "refs/heads/"):
			otherBranch = true
		}
	}
	if deploy == nil {
		if otherBranch {
			buildpack.Step(out, "Pushed to branch other than [main, master], skipping build.")
		}
		return true
	}
	env, err := p.quarantineEnv(h.Env)
	if err != nil {
		p.log.Error("bad hook request", "err", err)
		return reject(StatusRejected, "the server could not read the pushed objects.")
	}
	return p.build(*deploy, env, h.Env, out)
}

// quarantineEnv is what `git archive` needs to see the not-yet-accepted objects
// (SPEC A3), checked to point inside this push's repository.
func (p *push) quarantineEnv(env map[string]string) ([]string, error) {
	objects := filepath.Join(p.repoDir, "objects")
	inside := func(path string) bool {
		rel, err := filepath.Rel(objects, filepath.Clean(path))
		return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
	}
	out := []string{"GIT_DIR=" + p.repoDir}
	if q := env["GIT_OBJECT_DIRECTORY"]; q != "" {
		if !filepath.IsAbs(q) || !inside(q) {
			return nil, fmt.Errorf("%w: object directory %q", ErrBadHookRequest, q)
		}
		out = append(out, "GIT_OBJECT_DIRECTORY="+q)
	}
	if a := env["GIT_ALTERNATE_OBJECT_DIRECTORIES"]; a != "" {
		for _, dir := range filepath.SplitList(a) {
			if !filepath.IsAbs(dir) || !inside(dir) {
				return nil, fmt.Errorf("%w: alternate object directory %q", ErrBadHookRequest, dir)
			}
		}
		out = append(out, "GIT_ALTERNATE_OBJECT_DIRECTORIES="+a)
	}
	return out, nil
}

// build exports the pushed commit, runs the buildpacks, stows the slug and
// creates the release.
func (p *push) build(u refUpdate, qenv []string, hookEnv map[string]string, out *output) bool {
	r, ctx, app := p.r, p.ctx, p.req.App
	p.mu.Lock()
	p.commit = u.new
	p.mu.Unlock()
	buildpack.Step(out, "Build ID: %s", p.id)
	if v := p.builtBefore(u.new); v > 0 {
		buildpack.Detail(out, "Commit %s was released before as v%d; building it again.", u.new[:7], v)
	}
	failed := func(status, reason string) bool {
		if ctx.Err() != nil {
			return p.cancelled(out)
		}
		buildpack.Warn(out, "Push failed")
		p.finish(status, reason)
		return false
	}

	buildDir := filepath.Join(p.work, "build")
	if err := os.MkdirAll(buildDir, 0o755); err != nil {
		p.log.Error("build dir", "err", err)
		buildpack.Warn(out, "Push rejected, the server could not prepare the build.")
		return failed(StatusFailed, "workspace")
	}
	if err := p.export(ctx, u.new, qenv, buildDir); err != nil {
		if ctx.Err() != nil {
			return p.cancelled(out)
		}
		if le, ok := errors.AsType[*buildpack.LimitError](err); ok {
			p.log.Info("source over limit", "err", err)
			buildpack.Warn(out, "Push rejected, the pushed commit unpacks to %s, past the server's source limit.", le.Reason)
			buildpack.Warn(out, "Keep large or generated files out of the repository.")
			return failed(StatusRejected, "source too large: "+le.Reason)
		}
		p.log.Error("export source", "err", err)
		buildpack.Warn(out, "Push rejected, the pushed commit could not be unpacked (%s).", exportReason(err))
		return failed(StatusFailed, "export source")
	}
	settings, err := r.deps.Settings.BuildSettings(ctx, p.req.User.Name, app)
	if err != nil {
		p.log.Error("app settings", "err", err)
		msg := "the app's settings could not be read; try again in a moment."
		if m := userMessage(err); m != "" {
			msg = "the app's settings could not be read: " + m
		}
		buildpack.Warn(out, "Push rejected, %s", msg)
		return failed(StatusFailed, "settings")
	}

	cacheDir := p.restoreCache(hookEnv, out) // SPEC C6, from stow; -o cache=purge starts empty
	slugKey := "apps/" + app + "/slugs/" + p.id + ".tgz"
	pr, pw := io.Pipe()
	var putErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, putErr = r.deps.Store.Put(ctx, slugKey, pr)
		_ = pr.CloseWithError(putErr) // unblock the packer if stow gave up
	}()
	res, err := r.deps.Builder.Build(ctx, buildpack.Job{
		ID: p.id, BuildDir: buildDir, WorkDir: filepath.Join(p.work, "bp"),
		CacheDir:   cacheDir,
		Env:        settings.Config,
		Buildpacks: settings.Buildpacks, SourceVersion: u.new,
		Output: out, Slug: pw, Stage: p.setStage,
	})
	_ = pw.CloseWithError(err)
	wg.Wait()
	if res != nil {
		p.mu.Lock()
		p.buildpacks = res.Buildpacks
		p.mu.Unlock()
	}
	if err != nil || putErr != nil {
		_ = r.deps.Store.Delete(context.WithoutCancel(ctx), slugKey)
		if err == nil {
			p.log.Error("stow slug", "err", putErr)
			buildpack.Warn(out, "Push rejected, the slug could not be stored; try again in a moment.")
			return failed(StatusFailed, "stow slug")
		}
		p.log.Info("build failed", "err", err)
		return failed(StatusFailed, strings.TrimPrefix(err.Error(), "buildpack: "))
	}

	// Fencing (DESIGN rule 8): only the app's current lease holder releases.
	if err := p.fence(ctx); err != nil && ctx.Err() == nil {
		p.log.Error("lease check before release", "err", err)
		_ = r.deps.Store.Delete(context.WithoutCancel(ctx), slugKey)
		buildpack.Warn(out, "Push rejected, nothing was released: %s.", fenceReason(err))
		return failed(StatusFailed, "lease: "+err.Error())
	}
	// The point of no return (SPEC A12): once the release request is sent, the
	// push completes even if the pusher goes away.
	p.mu.Lock()
	if ctx.Err() != nil {
		p.mu.Unlock()
		_ = r.deps.Store.Delete(context.WithoutCancel(ctx), slugKey)
		return p.cancelled(out)
	}
	p.phase = releaseSent
	p.mu.Unlock()
	p.setStage("releasing")
	buildpack.Step(out, "Launching...")
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ReleaseTimeout)
	defer cancel()
	rel, err := r.deps.Releaser.Create(rctx, app, release.Request{
		BuildID: p.id, Slug: slugKey, SlugSize: res.Slug.Size, Checksum: res.Slug.Checksum,
		Commit: u.new, ProcessTypes: res.ProcessTypes, Buildpacks: res.Buildpacks, Stack: res.Stack,
		User: p.req.User.Name, Description: "Deploy " + u.new[:7], BuildpackDescription: res.Description(),
		Base: p.baseVersion,
	})
	if se, ok := errors.AsType[*release.SupersededError](err); ok {
		// Fencing's last word (DESIGN rule 8): the version this push was to
		// write exists, so it was paused past its lease and another push
		// released meanwhile. Its slug will never be current.
		p.log.Error("release superseded", "err", err)
		_ = r.deps.Store.Delete(context.WithoutCancel(ctx), slugKey)
		buildpack.Warn(out, "Push rejected, nothing was released: "+MsgReleaseSuperseded, se.Version)
		buildpack.Warn(out, "Push failed")
		p.finish(StatusFailed, "superseded: "+err.Error())
		return false
	}
	if err != nil {
		// SPEC F12: the slug stays stowed, but is not current.
		p.log.Error("release failed", "err", err)
		msg := strings.TrimPrefix(err.Error(), "release: ")
		if m := userMessage(err); m != "" {
			msg = m
		}
		buildpack.Warn(out, "Push rejected, the release failed: %s", msg)
		buildpack.Warn(out, "Push failed")
		p.finish(StatusFailed, "release: "+err.Error())
		return false
	}
	p.mu.Lock()
	p.version = rel.Version
	p.mu.Unlock()
	buildpack.Detail(out, "Released v%d", rel.Version)
	if rel.URL != "" {
		buildpack.Detail(out, "%s deployed to Heroku", rel.URL)
	}
	p.saveCache(cacheDir, out)
	return true
}

func (p *push) cancelled(out io.Writer) bool {
	cause := context.Cause(p.ctx)
	var c *CancelledError
	if errors.As(cause, &c) {
		buildpack.Warn(out, "Build cancelled by %s", c.By)
	} else {
		buildpack.Warn(out, "Build cancelled: %v", cause)
	}
	p.finish(StatusCancelled, cause.Error())
	return false
}

// export writes the pushed commit's tree into dir with `git archive`, reading
// the quarantined objects (SPEC A3). The tree is the pusher's: it is measured
// and then unpacked under the source limits.
func (p *push) export(ctx context.Context, commit string, qenv []string, dir string) error {
	lim := p.sourceLimits()
	if err := buildpack.MeasureTree(ctx, proc.Cmd{
		Argv: []string{p.r.cfg.Git, "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit},
		Dir:  p.repoDir, Env: gitEnv(qenv),
	}, lim); err != nil {
		return err
	}
	return buildpack.ArchiveTree(ctx, proc.Cmd{
		Argv: []string{p.r.cfg.Git, "archive", "--format=tar", commit},
		Dir:  p.repoDir, Env: gitEnv(qenv),
	}, dir, lim)
}

// builtBefore returns the version that last released commit, or 0 (SPEC A8).
// The note is a courtesy: a failed look-up only drops it.
func (p *push) builtBefore(commit string) int {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := p.r.deps.Releaser.ReleasedCommit(ctx, p.req.App, commit)
	if err != nil {
		p.log.Info("look up earlier releases of the commit", "err", err)
		return 0
	}
	return v
}

// userMessage is the line for the pusher that err carries (Heroku mode's
// errors do: the API's own words), or "".
func userMessage(err error) string {
	if um, ok := errors.AsType[UserError](err); ok {
		return um.UserMessage()
	}
	return ""
}

// exportReason is an export failure in words for the pusher: an archive
// error names only the entry; a filesystem error would carry the server's
// paths, so only its cause is shown ("file name too long").
func exportReason(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err.Error()
	}
	if errors.Is(err, buildpack.ErrArchive) {
		return strings.TrimPrefix(err.Error(), buildpack.ErrArchive.Error()+": ")
	}
	return "git could not read it"
}
