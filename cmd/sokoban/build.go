package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sokoban-deploy/sokoban/buildpack"
	"github.com/sokoban-deploy/sokoban/receiver"
)

// buildCmd runs the push pipeline's build on a local directory, with the same
// output, for buildpack authors.
func buildCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := newFlags("build", stderr)
	var bps listFlag
	fs.Var(&bps, "buildpack", "buildpack URL or directory (repeatable); default: the directory's .buildpacks")
	envDir := fs.String("env-dir", "", "directory of config vars, one file per variable")
	cacheDir := fs.String("cache", "", "cache directory kept between builds (default: a temporary one)")
	out := fs.String("o", "slug.tgz", "where to write the slug")
	stack := fs.String("stack", "heroku-24", "stack name")
	timeout := fs.Duration("compile-timeout", 15*time.Minute, "compile time limit")
	if err := parseFlags(fs, args, getenv); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		return fail(stderr, "usage: sokoban build [--buildpack URL]... [--env-dir DIR] [--cache DIR] [-o slug.tgz] DIR")
	}
	src := fs.Arg(0)
	work, err := os.MkdirTemp("", "sokoban-build-")
	if err != nil {
		return fail(stderr, "%v", err)
	}
	defer func() { _ = os.RemoveAll(work) }()
	buildDir := filepath.Join(work, "build")
	if err := buildpack.CopyDir(src, buildDir); err != nil {
		return fail(stderr, "copy %s: %v", src, err)
	}
	env := map[string]string{}
	if *envDir != "" {
		if env, err = readEnvDir(*envDir); err != nil {
			return fail(stderr, "%v", err)
		}
	}
	cache := *cacheDir
	if cache == "" {
		cache = filepath.Join(work, "cache")
	}
	slug, err := os.Create(*out)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	resolved, err := resolveBuildpacks(bps)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	b := buildpack.New(buildpack.Config{Stack: *stack, CompileTimeout: *timeout})
	res, err := b.Build(ctx, buildpack.Job{
		ID: receiver.NewBuildID(), BuildDir: buildDir, WorkDir: filepath.Join(work, "bp"), CacheDir: cache,
		Env: env, Buildpacks: resolved, Output: stdout, Slug: slug, TrustSource: true,
	})
	if cerr := slug.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(*out)
		return 1
	}
	fmt.Fprintf(stdout, "-----> Wrote %s (%s, %s)\n", *out, buildpack.Size(res.Slug.Size), res.Slug.Checksum)
	return 0
}

func readEnvDir(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, e := range entries {
		if e.IsDir() {
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
