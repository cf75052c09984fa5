package receiver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sokoban-deploy/sokoban/stow"
)

// cachePush is a push with just what the cache functions use.
func cachePush(t *testing.T, store stow.Store) *push {
	t.Helper()
	r := &Receiver{cfg: Config{StowTimeout: time.Minute}, deps: Deps{Store: store}, log: slog.New(slog.DiscardHandler)}
	return &push{r: r, req: Request{App: "cached-app"}, ctx: context.Background(), work: t.TempDir(), log: r.log}
}

// SPEC C6: CACHE_DIR comes from stow before the build and goes back after a
// successful one; each push has its own directory, so any node can build.
func TestCacheRoundTripThroughStow(t *testing.T) {
	t.Parallel()
	store, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	first := cachePush(t, store)
	dir := first.restoreCache(nil, &out)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 || out.Len() != 0 {
		t.Fatalf("a first build's cache: %v, output %q", entries, out.String())
	}
	if !strings.HasPrefix(dir, first.work) {
		t.Fatalf("CACHE_DIR %s is not in the push's workspace", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, "deps"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deps", "lib.so"), []byte("compiled"), 0o644); err != nil {
		t.Fatal(err)
	}
	first.saveCache(dir, &out)
	if out.Len() != 0 {
		t.Fatalf("save printed %q", out.String())
	}

	second := cachePush(t, store)
	dir = second.restoreCache(map[string]string{"GIT_PUSH_OPTION_COUNT": "1", "GIT_PUSH_OPTION_0": "ci.skip"}, &out)
	if b, err := os.ReadFile(filepath.Join(dir, "deps", "lib.so")); err != nil || string(b) != "compiled" {
		t.Fatalf("restored cache: %q, %v", b, err)
	}
	if second.currentStage() != "restoring" {
		t.Fatalf("stage = %q", second.currentStage())
	}
}

// `git push -o cache=purge` and `cache:purge APP` start the next build empty.
func TestCachePurge(t *testing.T) {
	t.Parallel()
	store, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seed := func() {
		p := cachePush(t, store)
		dir := p.restoreCache(nil, &bytes.Buffer{})
		_ = os.WriteFile(filepath.Join(dir, "old"), []byte("x"), 0o644)
		p.saveCache(dir, &bytes.Buffer{})
	}
	seed()
	var out bytes.Buffer
	p := cachePush(t, store)
	dir := p.restoreCache(map[string]string{"GIT_PUSH_OPTION_COUNT": "2", "GIT_PUSH_OPTION_0": "x=y", "GIT_PUSH_OPTION_1": "cache=purge"}, &out)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("purged cache holds %v", entries)
	}
	if !strings.Contains(out.String(), "-----> Purging the build cache (git push -o cache=purge)") {
		t.Fatalf("output %q", out.String())
	}
	if _, err := store.Stat(context.Background(), cacheKey("cached-app")); !errors.Is(err, stow.ErrNotFound) {
		t.Fatalf("stowed cache after purge: %v", err)
	}

	seed()
	if err := p.r.PurgeCache(context.Background(), "cached-app"); err != nil {
		t.Fatal(err)
	}
	if err := p.r.PurgeCache(context.Background(), "cached-app"); err != nil {
		t.Fatalf("purging twice: %v", err)
	}
	out.Reset()
	dir = cachePush(t, store).restoreCache(nil, &out)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 || out.Len() != 0 {
		t.Fatalf("after cache:purge: %v, %q", entries, out.String())
	}
}

// A corrupt stowed cache starts the build empty with one line, never fails it.
func TestCorruptCacheStartsEmpty(t *testing.T) {
	t.Parallel()
	store, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(context.Background(), cacheKey("cached-app"), strings.NewReader("not a tarball")); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	dir := cachePush(t, store).restoreCache(nil, &out)
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("cache dir: %v, %v", entries, err)
	}
	if out.String() != "       The build cache could not be restored; this build starts with an empty cache.\n" {
		t.Fatalf("output %q", out.String())
	}
}

func TestPushOption(t *testing.T) {
	t.Parallel()
	env := map[string]string{"GIT_PUSH_OPTION_COUNT": "2", "GIT_PUSH_OPTION_0": "cache=purge", "GIT_PUSH_OPTION_1": "verbose"}
	if v, ok := pushOption(env, "cache"); !ok || v != "purge" {
		t.Errorf("cache = %q, %v", v, ok)
	}
	if v, ok := pushOption(env, "verbose"); !ok || v != "" {
		t.Errorf("verbose = %q, %v", v, ok)
	}
	if _, ok := pushOption(env, "other"); ok {
		t.Error("other found")
	}
	if _, ok := pushOption(map[string]string{"GIT_PUSH_OPTION_0": "cache=purge"}, "cache"); ok {
		t.Error("an option without GIT_PUSH_OPTION_COUNT counted")
	}
}

// cappedStore fails a Put once more than max bytes arrive: without a
// cache bound, packing a sparse terabyte would stream to stow for hours.
type cappedStore struct {
	stow.Store
	max int64
}

func (s cappedStore) Put(ctx context.Context, key string, r io.Reader) (stow.Info, error) {
	return s.Store.Put(ctx, key, &capReader{r: r, left: s.max})
}

type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.left -= int64(n); c.left < 0 {
		return 0, errors.New("the cache packer sent past its bound")
	}
	return n, err
}

// Issue 10: PackCache had no bound, so a buildpack that runs
// `truncate -s 1T "$2/x"` (a sparse file, no disk used) made every build
// gzip a terabyte into stow, about 1 GB per TB. Past MaxCacheSize the
// cache is not saved, the stowed one is deleted (the next build would
// otherwise restore a stale one), the pusher gets one line, and the build
// goes on: saveCache reports nothing else.
func TestSaveCacheRefusesOversizedCache(t *testing.T) {
	t.Parallel()
	local, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := cappedStore{Store: local, max: 1 << 20}
	p := cachePush(t, store)
	p.r.cfg.MaxCacheSize = 64 << 10
	dir := p.restoreCache(nil, &bytes.Buffer{})
	if err := os.WriteFile(filepath.Join(dir, "old"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.saveCache(dir, &bytes.Buffer{})
	if _, _, err := local.Get(context.Background(), cacheKey("cached-app")); err != nil {
		t.Fatalf("a small cache was not saved: %v", err)
	}

	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "x"), 1<<40); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p.saveCache(dir, &out)
	want := " !     Warning: the build cache is larger than 64K and was not saved; the next build starts without it.\n"
	if out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	if _, _, err := local.Get(context.Background(), cacheKey("cached-app")); !errors.Is(err, stow.ErrNotFound) {
		t.Fatalf("the stowed cache is still there: %v", err)
	}
}
