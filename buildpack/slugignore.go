package buildpack

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
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
	segs    []string
	dirOnly bool
}

// parseSlugignore reads a .slugignore; skipped lists the line numbers of
// negations, which are not supported.
func parseSlugignore(data []byte) (rules []ignoreRule, skipped []int) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		switch {
		case strings.TrimSpace(line) == "", strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "!"):
			skipped = append(skipped, n)
			continue
		}
		line = strings.TrimLeft(line, " \t")
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
		r.segs = strings.Split(line, "/")
		if !anchored {
			r.segs = append([]string{"**"}, r.segs...)
		}
		rules = append(rules, r)
	}
	return rules, skipped
}

func (r ignoreRule) match(rel string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	return matchSegs(r.segs, strings.Split(rel, "/"))
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			if len(pat) == 1 {
				return len(name) > 0
			}
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], name[0]); err != nil || !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// applySlugignore deletes what the source's .slugignore matches before any
// buildpack runs (DESIGN: as Heroku does) and returns how many files went.
// Symlinks are removed, never followed.
func applySlugignore(dir string, warn func(format string, args ...any)) (int, error) {
	data, err := readSourceFile(dir, ".slugignore", MaxSourceFile)
	if err != nil || data == nil {
		return 0, err
	}
	rules, skipped := parseSlugignore(data)
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
