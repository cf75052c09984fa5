package receiver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sokoban-deploy/sokoban/stow"
)

// errBundleGone means a bundle the manifest names is missing: corrupt, unless
// a compaction replaced the chain after the manifest was read (prepare reads
// it again before saying so).
var errBundleGone = errors.New("receiver: stowed bundle is missing")

// downloadAttempts bounds how often one bundle is fetched before a failure is
// reported; a stowed object that keeps failing its checksum is corrupt.
const downloadAttempts = 3

// restoreNamespace is where each bundle's refs land while a chain is applied,
// one namespace per bundle so refs of different generations never collide
// (refs/heads/a then refs/heads/a/b). setRefs removes them.
const restoreNamespace = "refs/sokoban-restore/"

// restore makes the node's cache match m. A cache that matched an older
// manifest of the same chain fetches only the newer bundles; otherwise, or if
// that fails, the whole chain is applied to a fresh repository, verified, and
// swapped in. A chain that fails verification is refused (ErrCorruptRepo) and
// the cache is left as it was: never replaced by an empty repository (SPEC F9).
func (r *repos) restore(ctx context.Context, app string, m *manifest, state *cacheState) error {
	if state != nil && canCatchUp(m, state) {
		err := r.catchUp(ctx, app, m, state)
		if err == nil || ctx.Err() != nil {
			return err
		}
		// The cache could not take the newer bundles (another chain, a cache
		// missing objects): rebuild it from the whole chain.
	}
	return r.restoreFull(ctx, app, m)
}

func canCatchUp(m *manifest, state *cacheState) bool {
	base := m.base()
	return base != nil && state.Generation < m.Generation && state.Generation >= base.Generation
}

// catchUp applies the bundles written after the cache's generation to the
// cache in place. The state note is removed first, so a crash halfway leaves a
// cache that is restored in full next time.
func (r *repos) catchUp(ctx context.Context, app string, m *manifest, state *cacheState) error {
	dir := r.path(app)
	if err := os.Remove(r.statePath(app)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var newer []bundleRef
	for _, b := range m.Bundles {
		if b.Generation > state.Generation {
			newer = append(newer, b)
		}
	}
	if err := r.applyChain(ctx, dir, newer, m.Refs); err != nil {
		return err
	}
	return r.writeState(app, m)
}

func (r *repos) restoreFull(ctx context.Context, app string, m *manifest) error {
	tmp, err := os.MkdirTemp(r.tmp, "restore-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	repo := filepath.Join(tmp, "repo.git")
	if _, err := r.run(ctx, "", "init", "--quiet", "--bare", "--initial-branch=main", repo); err != nil {
		return fmt.Errorf("receiver: restore %s: %w", app, err)
	}
	if err := r.applyChain(ctx, repo, m.Bundles, m.Refs); err != nil {
		return err
	}
	if err := r.swap(repo, r.path(app)); err != nil {
		return err
	}
	return r.writeState(app, m)
}

// applyChain fetches each bundle into repo, in order, after checking its size
// and SHA256 against the manifest and `git bundle verify` against what the
// previous ones brought; then sets the refs to refs exactly.
func (r *repos) applyChain(ctx context.Context, repo string, chain []bundleRef, refs map[string]string) error {
	tmp, err := os.MkdirTemp(r.tmp, "bundles-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	for _, b := range chain {
		path := filepath.Join(tmp, fmt.Sprintf("%d.bundle", b.Generation))
		if err := r.download(ctx, b, path); err != nil {
			return err
		}
		if out, err := r.run(ctx, repo, "bundle", "verify", "--quiet", path); err != nil {
			return fmt.Errorf("%w: %s: git bundle verify: %s", ErrCorruptRepo, b.Key, lastLine(out))
		}
		spec := fmt.Sprintf("+refs/*:%s%d/*", restoreNamespace, b.Generation)
		if out, err := r.run(ctx, repo, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", path, spec); err != nil {
			return fmt.Errorf("%w: %s: %s", ErrCorruptRepo, b.Key, lastLine(out))
		}
		_ = os.Remove(path)
	}
	if err := r.setRefs(ctx, repo, refs); err != nil {
		return err
	}
	r.fixHead(ctx, repo, refs)
	return nil
}

// setRefs makes repo's refs exactly want: refs not in want are deleted first
// (so a directory/file clash between an old and a new ref cannot block), then
// the others are set. A ref naming an object no bundle brought fails.
func (r *repos) setRefs(ctx context.Context, repo string, want map[string]string) error {
	have, err := r.refs(ctx, repo)
	if err != nil {
		return err
	}
	var del, upd strings.Builder
	for name := range have {
		if _, ok := want[name]; !ok {
			fmt.Fprintf(&del, "delete %s\n", name)
		}
	}
	for name, oid := range want {
		if have[name] != oid {
			fmt.Fprintf(&upd, "update %s %s\n", name, oid)
		}
	}
	for _, batch := range []string{del.String(), upd.String()} {
		if batch == "" {
			continue
		}
		if out, err := r.runIn(ctx, repo, strings.NewReader(batch), "update-ref", "--no-deref", "--stdin"); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: the manifest's refs do not match its bundles: %s", ErrCorruptRepo, lastLine(out))
		}
	}
	got, err := r.refs(ctx, repo)
	if err != nil {
		return err
	}
	if !sameRefs(got, want) {
		return fmt.Errorf("%w: refs do not match the manifest after restoring", ErrCorruptRepo)
	}
	return nil
}

// download fetches bundle b into path, checking its size and SHA256 against
// the manifest. Failures are retried a few times; one that persists is
// reported as corruption when the object itself is wrong, as a fetch error
// otherwise.
func (r *repos) download(ctx context.Context, b bundleRef, path string) error {
	var err error
	for attempt := range downloadAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("receiver: fetch repository: %w", ctx.Err())
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		_ = os.Remove(path)
		if err = r.downloadOnce(ctx, b, path); err == nil || errors.Is(err, errBundleGone) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (r *repos) downloadOnce(ctx context.Context, b bundleRef, path string) error {
	rc, _, err := r.stow.Get(ctx, b.Key)
	if errors.Is(err, stow.ErrNotFound) {
		return fmt.Errorf("%w: %s", errBundleGone, b.Key)
	}
	if err != nil {
		return fmt.Errorf("receiver: fetch repository: %w", err)
	}
	defer func() { _ = rc.Close() }()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	// One byte more than the manifest says is enough to tell "too long".
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, b.Size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, stow.ErrCorrupt) {
		return fmt.Errorf("%w: %s: %v", ErrCorruptRepo, b.Key, err)
	}
	if err != nil {
		return fmt.Errorf("receiver: fetch repository: %w", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != b.Size || sum != b.SHA256 {
		return fmt.Errorf("%w: %s: got %d bytes with checksum %s, the manifest says %d bytes with %s",
			ErrCorruptRepo, b.Key, n, shortSum(sum), b.Size, shortSum(b.SHA256))
	}
	return nil
}
