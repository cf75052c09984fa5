package receiver

import "github.com/sokoban-deploy/sokoban/buildpack"

// MaxSourceDepth bounds how deep the pushed tree may nest directories.
const MaxSourceDepth = 128

// sourceLimits bound the pushed commit's tree: it is measured against them
// before anything is exported (buildpack.MeasureTree), then unpacked under
// them (buildpack.ArchiveTree).
func (p *push) sourceLimits() buildpack.TreeLimits {
	return buildpack.TreeLimits{MaxBytes: p.r.cfg.MaxSourceSize, MaxEntries: p.r.cfg.MaxSourceFiles, MaxDepth: MaxSourceDepth}
}
