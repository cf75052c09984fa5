package receiver

import (
	"context"

	"github.com/sokoban-deploy/sokoban/buildpack"
	"github.com/sokoban-deploy/sokoban/internal/proc"
)

// MaxSourceDepth bounds how deep the pushed tree may nest directories.
const MaxSourceDepth = 128

// checkTree measures the pushed commit's tree before anything is exported
// (buildpack.MeasureTree): a tree bomb is refused at the source limits
// before git archive loads it.
func (p *push) checkTree(ctx context.Context, commit string, qenv []string) error {
	return buildpack.MeasureTree(ctx, proc.Cmd{
		Argv: []string{p.r.cfg.Git, "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit},
		Dir:  p.repoDir,
		Env:  gitEnv(qenv),
	}, buildpack.TreeLimits{MaxBytes: p.r.cfg.MaxSourceSize, MaxEntries: p.r.cfg.MaxSourceFiles, MaxDepth: MaxSourceDepth})
}
