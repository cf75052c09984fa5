package buildpack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sokoban-deploy/sokoban/internal/proc"
)

// TreeLimits bound a git tree measured before it is exported; zero means no
// bound.
type TreeLimits struct {
	MaxBytes   int64 // the blobs' sizes, summed
	MaxEntries int   // files and directories
	MaxDepth   int   // directory nesting
}

// MeasureTree runs ls, a `git ls-tree -r -t -l -z --full-tree <commit>`
// (its Stdout and Stderr are set here), and measures the tree as the listing
// streams: files and directories, the blobs' sizes summed, nesting depth.
// git is stopped as soon as a bound is passed, with a *LimitError. Measure
// before `git archive` or a checkout: archive first loads the whole tree
// into an in-memory index, and a tree of ten identical subtrees ten levels
// deep, a 56 KB pack, kept it busy for minutes before its first byte and
// then unpacked to gigabytes. The receiver measures pushed commits this way,
// the fetch of a git buildpack its commit.
func MeasureTree(ctx context.Context, ls proc.Cmd, lim TreeLimits) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := &treeMeter{lim: lim, stop: cancel}
	var stderr bytes.Buffer
	ls.Stdout, ls.Stderr = m, &limitedBuffer{buf: &stderr, max: 4096}
	err := proc.Run(ctx, ls)
	if m.err != nil {
		return m.err
	}
	if err != nil {
		return fmt.Errorf("git ls-tree: %s", lastLine(stderr.String()))
	}
	return nil
}

// ArchiveTree runs archive, a `git archive --format=tar <commit>` (its
// Stdout and Stderr are set here), and unpacks its output into dst under
// lim's bytes and entries (UntarLimited). git is stopped as soon as the
// unpacking fails rather than drained: past a limit it may have gigabytes
// left to write. Measure the tree with MeasureTree first.
func ArchiveTree(ctx context.Context, archive proc.Cmd, dst string, lim TreeLimits) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	var extractErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		extractErr = UntarLimited(pr, dst, lim.MaxBytes, lim.MaxEntries)
		if extractErr != nil {
			cancel()
			_ = pr.CloseWithError(extractErr) // git's next write fails at once
			return
		}
		_, _ = io.Copy(io.Discard, pr) // the archive's trailing padding
	}()
	var stderr bytes.Buffer
	archive.Stdout, archive.Stderr = pw, &limitedBuffer{buf: &stderr, max: 4096}
	err := proc.Run(ctx, archive)
	_ = pw.CloseWithError(err)
	<-done
	if extractErr != nil {
		return extractErr
	}
	if err != nil {
		return fmt.Errorf("git archive: %s", lastLine(stderr.String()))
	}
	return nil
}

// treeMeter parses ls-tree -z -l records as they stream:
// "<mode> <type> <oid> <size>\t<path>\0".
type treeMeter struct {
	lim  TreeLimits
	stop context.CancelFunc

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
	if m.entries++; m.lim.MaxEntries > 0 && m.entries > m.lim.MaxEntries {
		return &LimitError{Reason: fmt.Sprintf("more than %d files and directories", m.lim.MaxEntries)}
	}
	if depth := bytes.Count(path, []byte{'/'}) + 1; m.lim.MaxDepth > 0 && depth > m.lim.MaxDepth {
		return &LimitError{Reason: fmt.Sprintf("directories nested more than %d deep", m.lim.MaxDepth)}
	}
	if f[1] == "blob" {
		size, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return fmt.Errorf("git ls-tree: bad size in %q", truncateBytes(rec, 80))
		}
		if m.bytes += size; m.lim.MaxBytes > 0 && m.bytes > m.lim.MaxBytes {
			return &LimitError{Reason: "more than " + Limit(m.lim.MaxBytes) + " of file contents"}
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
