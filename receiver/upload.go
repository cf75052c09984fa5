package receiver

import (
	"context"
	"errors"
	"time"

	"github.com/sokoban-deploy/sokoban/internal/proc"
)

// UploadPack serves `git-upload-pack` (clone and fetch, SPEC A10) from the node's
// repository cache, restoring it from stow first when it is stale. It takes no
// lease: a clone must not wait for a build.
func (r *Receiver) UploadPack(ctx context.Context, req Request) int {
	r.wg.Add(1)
	defer r.wg.Done()
	log := r.log.With("conn", req.ConnID, "app", req.App, "user", req.User.Name)
	start := time.Now()
	dir, _, err := r.repos.prepare(ctx, req.App, false)
	if err != nil {
		msg := "the app's repository could not be read; try again in a moment"
		switch {
		case errors.Is(err, ErrNoRepo):
			msg = "no such app: " + req.App + " (nothing has been pushed to it yet)"
		case errors.Is(err, ErrCorruptRepo):
			msg = "the app's stowed repository failed verification; ask an operator to restore it"
		}
		log.Warn("upload-pack refused", "err", err)
		_ = RefuseGit(req.Stdout, msg)
		return 1
	}
	var env []string
	if gp := cleanGitProtocol(req.GitProtocol); gp != "" {
		env = append(env, "GIT_PROTOCOL="+gp)
	}
	err = proc.Run(ctx, proc.Cmd{
		Argv: []string{r.cfg.Git, "-c", "uploadpack.allowFilter=true", "upload-pack", "--strict", dir},
		Dir:  dir, Env: gitEnv(env),
		Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr,
	})
	code := 0
	if err != nil {
		if code = proc.ExitCode(err); code <= 0 {
			code = 1
		}
	}
	log.Info("upload-pack finished", "exit", code, "duration", time.Since(start).Round(time.Millisecond))
	return code
}
