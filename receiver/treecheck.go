package receiver

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/sokoban-deploy/sokoban/buildpack"
	"github.com/sokoban-deploy/sokoban/internal/proc"
)

// MaxSourceDepth bounds how deep the pushed tree may nest directories.
const MaxSourceDepth = 128

// checkTree measures the pushed commit's tree before anything is exported:
// files and directories, the blobs' sizes summed, and nesting depth. It
// reads `git ls-tree -r -t -l` as it streams and stops git as soon as a
// bound is passed. git archive would first load the whole tree into an
// in-memory index: a tree of ten identical subtrees ten levels deep, a
// 56 KB pack, kept it busy for minutes before its first byte.
func (p *push) checkTree(ctx context.Context, commit string, qenv []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := &treeMeter{maxBytes: p.r.cfg.MaxSourceSize, maxEntries: p.r.cfg.MaxSourceFiles, stop: cancel}
	var stderr strings.Builder
	err := proc.Run(ctx, proc.Cmd{
		Argv:   []string{p.r.cfg.Git, "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit},
		Dir:    p.repoDir,
		Env:    gitEnv(qenv),
		Stdout: m, Stderr: &limitWriter{w: &stderr, n: 4096},
	})
	if m.err != nil {
		return m.err
	}
	if err != nil {
		return fmt.Errorf("git ls-tree: %s", lastLine(stderr.String()))
	}
	return nil
}

// treeMeter parses ls-tree -z -l records as they stream:
// "<mode> <type> <oid> <size>\t<path>\0".
type treeMeter struct {
	maxBytes   int64
	maxEntries int
	stop       context.CancelFunc

	partial []byte
	bytes   int64
	entries int
	err     error
}

func (m *treeMeter) Write(p []byte) (int, error) {
	if m.err != nil {
		return len(p), nil // git is being stopped; swallow the rest
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			if len(m.partial)+len(p) > 64<<10 {
				return n, m.fail(fmt.Errorf("git ls-tree: record too long"))
			}
			m.partial = append(m.partial, p...)
			return n, nil
		}
		rec := p[:i]
		if len(m.partial) > 0 {
			rec = append(m.partial, rec...)
			m.partial = m.partial[:0]
		}
		p = p[i+1:]
		if err := m.record(rec); err != nil {
			return n, m.fail(err)
		}
	}
	return n, nil
}

func (m *treeMeter) fail(err error) error {
	m.err = err
	m.stop()
	return nil
}

func (m *treeMeter) record(rec []byte) error {
	meta, path, ok := bytes.Cut(rec, []byte{'\t'})
	f := strings.Fields(string(meta))
	if !ok || len(f) != 4 {
		return fmt.Errorf("git ls-tree: unexpected record %q", truncateBytes(rec, 80))
	}
	if m.entries++; m.maxEntries > 0 && m.entries > m.maxEntries {
		return &buildpack.LimitError{Reason: fmt.Sprintf("more than %d files and directories", m.maxEntries)}
	}
	if depth := bytes.Count(path, []byte{'/'}) + 1; depth > MaxSourceDepth {
		return &buildpack.LimitError{Reason: fmt.Sprintf("directories nested more than %d deep", MaxSourceDepth)}
	}
	if f[1] == "blob" {
		size, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return fmt.Errorf("git ls-tree: bad size in %q", truncateBytes(rec, 80))
		}
		if m.bytes += size; m.maxBytes > 0 && m.bytes > m.maxBytes {
			return &buildpack.LimitError{Reason: "more than " + buildpack.Limit(m.maxBytes) + " of file contents"}
		}
	}
	return nil
}

func truncateBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
