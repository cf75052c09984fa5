package buildpack

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Bounds on a .slugignore (issue 10). The file is the pusher's and its
// patterns run on the server, outside any sandbox, before compile's timeout
// starts; Heroku's own examples are a dozen short lines.
const (
	maxSlugignoreSize     = 1 << 20 // bytes in the file
	maxSlugignorePatterns = 1000
	maxSlugignorePattern  = 1 << 10 // bytes in one pattern
)

// ignoreRule is one .slugignore pattern (SPEC E1). The syntax is .gitignore's
// without negation:
//
//   - blank lines and lines starting with # are ignored; so are lines starting
//     with ! (negation is not supported), with a warning;
//   - a pattern without a slash matches a file or directory name at any depth
//     ("*.psd", "tmp");
//   - a pattern with a slash at the start or in the middle is relative to the
//     top of the app ("/docs", "spec/fixtures");
//   - a trailing slash matches directories only ("log/");
//   - *, ? and [a-z] match within one path segment, \ escapes, and ** matches
//     any number of segments ("**/cache", "assets/**/*.map");
//   - a matched directory goes with everything in it.
type ignoreRule struct {
	segs    []string // never two "**" in a row
	dirOnly bool
}

// parseSlugignore reads a .slugignore; skipped lists the line numbers of
// negations, which are not supported. A file past the bounds is refused
// (ErrSlugignore) rather than partly applied.
func parseSlugignore(data []byte) (rules []ignoreRule, skipped []int, err error) {
	if len(data) > maxSlugignoreSize {
		return nil, nil, fmt.Errorf("%w is larger than %s; keep it to the patterns you need", ErrSlugignore, Limit(maxSlugignoreSize))
	}
	n := 0
	for raw := range bytes.Lines(data) {
		n++
		line := strings.TrimRight(string(raw), " \t\r\n")
		switch {
		case strings.TrimSpace(line) == "", strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "!"):
			skipped = append(skipped, n)
			continue
		}
		line = strings.TrimLeft(line, " \t")
		if len(line) > maxSlugignorePattern {
			return nil, nil, fmt.Errorf("%w line %d: the pattern is longer than %s; shorten it", ErrSlugignore, n, Limit(maxSlugignorePattern))
		}
		if len(rules) == maxSlugignorePatterns {
			return nil, nil, fmt.Errorf("%w line %d: more than %d patterns; merge some", ErrSlugignore, n, maxSlugignorePatterns)
		}
		r := ignoreRule{}
		if strings.HasSuffix(line, "/") {
			r.dirOnly = true
			line = strings.TrimRight(line, "/")
		}
		anchored := strings.Contains(line, "/")
		line = strings.TrimPrefix(line, "/")
		if line == "" {
			continue
		}
		segs := strings.Split(line, "/")
		if !anchored {
			segs = append([]string{"**"}, segs...)
		}
		// "**/**" matches what "**" does (any number of segments; at least
		// one at the end either way), so the matcher never sees a run.
		for i, s := range segs {
			if s != "**" || i == 0 || segs[i-1] != "**" {
				r.segs = append(r.segs, s)
			}
		}
		rules = append(rules, r)
	}
	return rules, skipped, nil
}

func (r ignoreRule) match(rel string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	ok, _ := matchSegs(r.segs, strings.Split(rel, "/"))
	return ok
}

// matchSegs reports whether the segments of name match pat, where "**"
// stands for any number of segments (at least one when it ends the pattern).
//
// It keeps the set of pattern positions that the segments read so far can
// have reached (an NFA over segments) and reads each segment of name once,
// so it visits at most len(pat) positions per segment: steps, returned for
// the test that pins it, is at most len(pat)*len(name). The recursion this
// replaces tried every split of name at every "**": 14 "**/" against a
// 30-deep directory pinned a core for minutes (issue 10).
func matchSegs(pat, name []string) (ok bool, steps int) {
	m := len(pat)
	cur, next := make([]bool, m+1), make([]bool, m+1)
	// A "**" that is not last may match no segment: whoever reaches it has
	// reached the position after it too. One pass in order is enough, as
	// this only ever moves forward.
	skip := func(s []bool) {
		for i := 0; i < m-1; i++ {
			if s[i] && pat[i] == "**" {
				s[i+1] = true
			}
		}
	}
	cur[0] = true
	skip(cur)
	for _, seg := range name {
		clear(next)
		alive := false
		for i := 0; i < m; i++ {
			if !cur[i] {
				continue
			}
			steps++
			if pat[i] == "**" {
				// It takes this segment and may take more; at the end of
				// the pattern it has matched.
				next[i] = true
				if i == m-1 {
					next[m] = true
				}
				alive = true
			} else if hit, err := path.Match(pat[i], seg); err == nil && hit {
				next[i+1] = true
				alive = true
			}
		}
		if !alive {
			return false, steps
		}
		skip(next)
		cur, next = next, cur
	}
	return cur[m], steps
}

// applySlugignore deletes what data (the source's .slugignore, nil when there
// is none) matches in dir before any buildpack runs (DESIGN: as Heroku does)
// and returns how many files went. Symlinks are removed, never followed. It
// stops with ctx's error when the build is cancelled or its deadline passes.
func applySlugignore(ctx context.Context, dir string, data []byte, warn func(format string, args ...any)) (int, error) {
	rules, skipped, err := parseSlugignore(data)
	if err != nil {
		return 0, err
	}
	for _, n := range skipped {
		warn(".slugignore line %d: negation (!) is not supported; line ignored.", n)
	}
	if len(rules) == 0 {
		return 0, nil
	}
	var doomed []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		for _, r := range rules {
			// Each rule is linear in the path and the pattern, but a
			// thousand of them over a large tree still add up.
			if err := ctx.Err(); err != nil {
				return err
			}
			if r.match(rel, d.IsDir()) {
				doomed = append(doomed, p)
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf(".slugignore: %w", err)
	}
	removed := 0
	for _, p := range doomed {
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf(".slugignore: %w", err)
		}
		removed += countFiles(p)
		if err := os.RemoveAll(p); err != nil {
			return removed, fmt.Errorf(".slugignore: %w", err)
		}
	}
	return removed, nil
}

// countFiles counts the non-directories at or under p.
func countFiles(p string) int {
	n := 0
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}
