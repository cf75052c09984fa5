package buildpack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sokoban-deploy/sokoban/internal/proc"
)

// LocalBuild is one `sokoban build`: the push pipeline's build run on a
// directory of the operator's own, with a push's output, for buildpack
// authors.
type LocalBuild struct {
	ID         string    // build id shown first, as a push shows it
	Source     string    // the app directory; copied, never changed
	Buildpacks []string  // in order; none: Source's .buildpacks, then detection
	EnvDir     string    // config vars, one file per variable (ENV_DIR); "" for none
	CacheDir   string    // CACHE_DIR kept between builds; "" for a temporary one
	Slug       string    // where the slug is written; removed when the build fails
	Output     io.Writer // the build's lines, as a pusher sees them
}

// BuildLocal runs lb with b. An error wrapping ErrLocalBuild means the build
// ran and failed, and Output has said so; any other error is one of setting
// up, before any output.
func (b *Builder) BuildLocal(ctx context.Context, lb LocalBuild) error {
	if st, err := os.Stat(lb.Source); err != nil || !st.IsDir() {
		return fmt.Errorf("%s is not a directory", lb.Source)
	}
	env := map[string]string{}
	if lb.EnvDir != "" {
		var err error
		if env, err = readEnvDir(lb.EnvDir); err != nil {
			return fmt.Errorf("env dir: %w", err)
		}
	}
	work, err := os.MkdirTemp("", "sokoban-build-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	buildDir := filepath.Join(work, "build")
	if err := CopyDir(lb.Source, buildDir); err != nil {
		return fmt.Errorf("copy %s: %w", lb.Source, err)
	}
	cache := lb.CacheDir
	if cache == "" {
		cache = filepath.Join(work, "cache")
	} else if cache, err = filepath.Abs(cache); err != nil {
		return fmt.Errorf("cache dir: %w", err)
	}
	slug, err := os.Create(lb.Slug)
	if err != nil {
		return err
	}
	Step(lb.Output, "Build ID: %s", lb.ID)
	res, err := b.Build(ctx, Job{
		ID: lb.ID, BuildDir: buildDir, WorkDir: filepath.Join(work, "bp"), CacheDir: cache,
		Env: env, Buildpacks: lb.Buildpacks, SourceVersion: sourceVersion(ctx, lb.Source),
		Output: lb.Output, Slug: slug, TrustSource: true,
	})
	if cerr := slug.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(lb.Slug)
		if ctx.Err() != nil {
			Warn(lb.Output, "Build cancelled")
		} else {
			Warn(lb.Output, "Build failed")
		}
		return fmt.Errorf("%w: %w", ErrLocalBuild, err)
	}
	Step(lb.Output, "Wrote %s (%s, %s)", lb.Slug, Size(res.Slug.Size), res.Slug.Checksum)
	return nil
}

// sourceVersion is the commit checked out in dir when it is a git work
// tree, for SOURCE_VERSION as a push would set it; "" otherwise.
func sourceVersion(ctx context.Context, dir string) string {
	var out bytes.Buffer
	err := proc.Run(ctx, proc.Cmd{
		Argv:   []string{"git", "-C", dir, "rev-parse", "--verify", "--quiet", "HEAD"},
		Env:    []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "GIT_CONFIG_NOSYSTEM=1", "LANG=C"},
		Stdout: &out, Stderr: io.Discard,
	})
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out.String())
}

// readEnvDir reads ENV_DIR's files into config vars; anything but a regular
// file is skipped.
func readEnvDir(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		env[e.Name()] = string(b)
	}
	return env, nil
}
