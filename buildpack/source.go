package buildpack

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sokoban-deploy/sokoban/internal/proc"
)

// Origin says who chose a buildpack URL. Only the operator may name paths on
// the server: a user's .buildpacks pointing at the data directory must not
// copy it into their build.
type Origin int

const (
	// Operator: the server's --buildpacks list or `sokoban build`.
	Operator Origin = iota
	// User: app settings, BUILDPACK_URL, .buildpacks.
	User
)

// source is a buildpack named by URL, fetched into a directory.
type source struct {
	url    string // as the user or operator wrote it, shown in messages
	origin Origin
	dir    string // the build's private copy, with bin/
}

// kind of a buildpack URL.
type kind int

const (
	kindDir kind = iota
	kindGit
)

// classify decides how to fetch url. Schemes and scp-style addresses are git;
// an existing directory with bin/ is a local buildpack; an existing git
// repository directory is cloned.
func classify(url string) (kind, string, string) {
	base, ref, _ := strings.Cut(url, "#")
	switch {
	case strings.HasPrefix(base, "https://"), strings.HasPrefix(base, "http://"),
		strings.HasPrefix(base, "git://"), strings.HasPrefix(base, "ssh://"),
		strings.HasPrefix(base, "file://"), isSCPLike(base):
		return kindGit, base, ref
	}
	if st, err := os.Stat(filepath.Join(base, "bin")); err == nil && st.IsDir() && ref == "" {
		return kindDir, base, ""
	}
	return kindGit, base, ref
}

func isSCPLike(s string) bool {
	at := strings.Index(s, "@")
	colon := strings.Index(s, ":")
	return at > 0 && colon > at && !strings.Contains(s[:colon], "/")
}

func isLocal(k kind, base string) bool {
	return k == kindDir || strings.HasPrefix(base, "file://") ||
		(!strings.Contains(base, "://") && !isSCPLike(base))
}

// fetch makes a private copy of the buildpack in dst.
func (b *Builder) fetch(ctx context.Context, url string, origin Origin, dst string) (source, error) {
	k, base, ref := classify(url)
	if origin == User && isLocal(k, base) {
		return source{}, fmt.Errorf("%w: %s", ErrLocalNotAllow, url)
	}
	src := source{url: url, origin: origin, dir: dst}
	switch k {
	case kindDir:
		if err := copyTree(base, dst); err != nil {
			return src, fmt.Errorf("%w: %s: %v", ErrFetch, url, err)
		}
	case kindGit:
		if err := b.gitClone(ctx, base, ref, dst); err != nil {
			return src, fmt.Errorf("%w: %s: %v", ErrFetch, url, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dst, "bin", "compile")); err != nil || st.IsDir() {
		return src, fmt.Errorf("%w: %s: no bin/compile in the buildpack", ErrFetch, url)
	}
	return src, nil
}

// gitClone clones repo at ref (branch, tag or commit) into dst.
func (b *Builder) gitClone(ctx context.Context, repo, ref, dst string) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.FetchTimeout)
	defer cancel()
	var out bytes.Buffer
	git := func(dir string, args ...string) error {
		out.Reset()
		err := proc.Run(ctx, proc.Cmd{Argv: append([]string{b.cfg.Git}, args...), Dir: dir, Env: gitEnv(), Stdout: &out})
		if err != nil {
			msg := strings.TrimSpace(out.String())
			if ctx.Err() == context.DeadlineExceeded {
				msg = "timed out after " + b.cfg.FetchTimeout.String()
			}
			return fmt.Errorf("git %s: %s", args[0], lastLine(msg))
		}
		return nil
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if ref == "" {
		return git("", "clone", "--quiet", "--depth", "1", "--", repo, dst)
	}
	// A ref may be a branch, a tag or a commit: fetch it by name, which works
	// for all three (commits need uploadpack.allowAnySHA1InWant on the server,
	// which is the default for local repositories and GitHub).
	if err := git(dst, "init", "--quiet"); err != nil {
		return err
	}
	if err := git(dst, "fetch", "--quiet", "--depth", "1", "--", repo, ref); err != nil {
		return err
	}
	if err := git(dst, "checkout", "--quiet", "FETCH_HEAD"); err != nil {
		return err
	}
	return nil
}

// gitEnv is the environment for server-side git commands: nothing from the
// server, no prompts, no user or system configuration.
func gitEnv() []string {
	return []string{
		"PATH=" + defaultPath,
		"HOME=/nonexistent",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_ASKPASS=/bin/false",
		"SSH_ASKPASS=/bin/false",
		"LANG=C",
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	if s == "" {
		return "failed"
	}
	return s
}

// ReadBuildpacksFile parses a .buildpacks file (SPEC D4): one URL per line,
// #ref allowed, blank lines and # comments ignored.
func ReadBuildpacksFile(data []byte) []string {
	var urls []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		urls = append(urls, line)
	}
	return urls
}

// copyTree copies a directory tree, keeping modes and symlinks. Special files
// are skipped.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if d.Name() == ".git" && p != src {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// CopyDir copies a source directory for a build, leaving .git out.
func CopyDir(src, dst string) error { return copyTree(src, dst) }
