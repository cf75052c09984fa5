package buildpack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `sokoban build` (BuildLocal): the slug is written from a copy of the
// directory, with ENV_DIR's config vars; a failed build says so, leaves no
// slug and wraps ErrLocalBuild; a bad directory is a set-up error, before
// any output.
func TestBuildLocal(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, `echo Widget`,
		`cat "$3/GREETING"; echo built > "$1/built.txt"`, `echo "--- {}"`)
	failing := writeBuildpack(t, `echo Broken`, `echo missing dependency; exit 1`, "")
	src, envDir, out := t.TempDir(), t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"index.html": "hi"})
	writeFiles(t, envDir, map[string]string{"GREETING": "hello from ENV_DIR"})
	b := New(Config{Sandbox: SandboxNone})

	var log syncBuffer
	slug := filepath.Join(out, "slug.tgz")
	err := b.BuildLocal(context.Background(), LocalBuild{
		ID: "b-1", Source: src, Buildpacks: []string{bp}, EnvDir: envDir, Slug: slug, Output: &log,
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	for _, want := range []string{"-----> Build ID: b-1\n", "hello from ENV_DIR", "-----> Wrote " + slug} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, log.String())
		}
	}
	data, err := os.ReadFile(slug)
	if err != nil {
		t.Fatal(err)
	}
	if got := slugFiles(t, data)["./app/built.txt"]; got != "built\n" {
		t.Errorf("slug's built.txt = %q", got)
	}
	if _, err := os.Stat(filepath.Join(src, "built.txt")); err == nil {
		t.Error("the build wrote into the source directory")
	}

	log = syncBuffer{}
	bad := filepath.Join(out, "bad.tgz")
	err = b.BuildLocal(context.Background(), LocalBuild{ID: "b-2", Source: src, Buildpacks: []string{failing}, Slug: bad, Output: &log})
	if !errors.Is(err, ErrLocalBuild) || !strings.Contains(log.String(), " !     Build failed") {
		t.Errorf("failing build: %v\n%s", err, log.String())
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("a failed build left its slug")
	}

	log = syncBuffer{}
	err = b.BuildLocal(context.Background(), LocalBuild{ID: "b-3", Source: filepath.Join(src, "index.html"), Slug: bad, Output: &log})
	if err == nil || errors.Is(err, ErrLocalBuild) || log.String() != "" {
		t.Errorf("not a directory: %v, output %q", err, log.String())
	}
}
