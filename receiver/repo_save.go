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

// Compaction: a chain is replaced by one full bundle when it would hold more
// than maxChain bundles, or when its incremental bundles together would exceed
// half of its base. So a restore never applies more than maxChain bundles nor
// downloads much more than the repository's size, and a push uploads only its
// new objects except for the occasional compaction, which uploads the whole
// repository once.
const maxChain = 20

// errStowChanged means the stowed repository is no longer the one the push
// started from: another push stowed since (the lease should prevent it; the
// conditional write makes sure).
var errStowChanged = errors.New("receiver: the stowed repository changed while this push ran")

// save stows the repository at dir as the generation after base: an
// incremental bundle with what the push added, or a full one when there is no
// chain yet or it is due for compaction. leaseGen is recorded for operators;
// fence, when set, is asked right before the manifest is written whether this
// push still holds the app's lease (DESIGN rule 8). The manifest itself is
// written only if the stowed one is still base (created only if there was
// none), so a writer paused between that check and the write cannot replace
// a newer push's repository: it gets errStowChanged and leaves no bundle.
func (r *repos) save(ctx context.Context, app, dir string, base *manifest, leaseGen int64, fence func(context.Context) error) error {
	cur, err := r.readManifest(ctx, app)
	if err != nil {
		return err
	}
	if !sameManifest(cur, base) {
		return fmt.Errorf("%w (stowed generation %d, this push started from %d)", errStowChanged, cur.gen(), base.gen())
	}
	refs, err := r.refs(ctx, dir)
	if err != nil {
		return err
	}
	next := &manifest{Generation: base.gen() + 1, ID: randomHex(8), Refs: refs, Fence: leaseGen, UpdatedAt: time.Now().UTC()}
	tmp, err := os.MkdirTemp(r.tmp, "bundle-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	var uploaded string
	if len(refs) > 0 {
		chain, file, err := r.plan(ctx, dir, base, tmp)
		if err != nil {
			return err
		}
		if file != "" {
			b, err := r.upload(ctx, app, next.Generation, file)
			if err != nil {
				return err
			}
			chain = append(chain, b)
			uploaded = b.Key
		}
		next.Bundles = chain
	}
	if fence != nil {
		if err := fence(ctx); err != nil {
			if uploaded != "" {
				_ = r.stow.Delete(context.WithoutCancel(ctx), uploaded) // a leftover only costs space
			}
			return fmt.Errorf("receiver: stow repository: %w", err)
		}
	}
	if base != nil {
		_, err = stow.SwapJSON(ctx, r.stow, manifestKey(app), next, base.etag)
	} else {
		_, err = stow.CreateJSON(ctx, r.stow, manifestKey(app), next)
	}
	if errors.Is(err, stow.ErrConflict) {
		if uploaded != "" {
			_ = r.stow.Delete(context.WithoutCancel(ctx), uploaded)
		}
		return fmt.Errorf("%w (this push started from generation %d): %v", errStowChanged, base.gen(), err)
	}
	if err != nil {
		// The bundle stays: the manifest may have landed after all.
		return fmt.Errorf("receiver: stow repository manifest: %w", err)
	}
	r.fixHead(ctx, dir, refs)
	if err := r.writeState(app, next); err != nil {
		return err
	}
	r.dropSuperseded(ctx, app, base, next)
	return nil
}

func (m *manifest) gen() int64 {
	if m == nil {
		return 0
	}
	return m.Generation
}

func sameManifest(a, b *manifest) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Generation == b.Generation && a.ID == b.ID
}

// plan writes the bundle this save uploads into tmp and returns the part of
// base's chain it extends ("" and base's chain when the push added no
// objects, only moved refs).
func (r *repos) plan(ctx context.Context, dir string, base *manifest, tmp string) (chain []bundleRef, file string, err error) {
	full := func() ([]bundleRef, string, error) {
		path := filepath.Join(tmp, "full.bundle")
		if out, err := r.run(ctx, dir, "bundle", "create", "--quiet", path, "--all"); err != nil {
			return nil, "", fmt.Errorf("receiver: bundle repository: %s", lastLine(out))
		}
		return nil, path, nil
	}
	if base.base() == nil || len(base.Refs) == 0 {
		return full()
	}
	// What the stowed chain already holds: everything reachable from its refs.
	// Only commits can be prerequisites of a bundle.
	have, err := r.commits(ctx, dir, base.Refs)
	if err != nil {
		return nil, "", err
	}
	if len(have) == 0 {
		return full()
	}
	path := filepath.Join(tmp, "incremental.bundle")
	var not strings.Builder
	for _, oid := range have {
		fmt.Fprintf(&not, "^%s\n", oid)
	}
	if out, err := r.runIn(ctx, dir, strings.NewReader(not.String()), "bundle", "create", "--quiet", path, "--all", "--stdin"); err != nil {
		if strings.Contains(out, "empty bundle") {
			return base.Bundles, "", nil
		}
		return nil, "", fmt.Errorf("receiver: bundle repository: %s", lastLine(out))
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	if len(base.Bundles)+1 > maxChain || base.incrementalSize()+st.Size() > base.base().Size/2 {
		return full()
	}
	return base.Bundles, path, nil
}

// commits returns the commits refs name (tags peeled) that exist in dir.
func (r *repos) commits(ctx context.Context, dir string, refs map[string]string) ([]string, error) {
	var in strings.Builder
	for _, oid := range refs {
		fmt.Fprintf(&in, "%s^{commit}\n", oid)
	}
	out, err := r.runIn(ctx, dir, strings.NewReader(in.String()), "cat-file", "--batch-check=%(objectname) %(objecttype)")
	if err != nil {
		return nil, fmt.Errorf("receiver: read stowed refs' commits: %s", lastLine(out))
	}
	seen := map[string]bool{}
	var have []string
	for _, line := range strings.Split(out, "\n") {
		if oid, typ, ok := strings.Cut(strings.TrimSpace(line), " "); ok && typ == "commit" && oidRE.MatchString(oid) && !seen[oid] {
			seen[oid] = true
			have = append(have, oid)
		}
	}
	return have, nil
}

// upload stows the bundle file under a new key of generation gen.
func (r *repos) upload(ctx context.Context, app string, gen int64, file string) (bundleRef, error) {
	f, err := os.Open(file)
	if err != nil {
		return bundleRef{}, err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return bundleRef{}, err
	}
	key := newBundleKey(app, gen)
	h := sha256.New()
	info, err := r.stow.Put(ctx, key, io.TeeReader(f, h))
	if err != nil {
		return bundleRef{}, fmt.Errorf("receiver: stow repository: %w", err)
	}
	if info.Size != st.Size() {
		_ = r.stow.Delete(context.WithoutCancel(ctx), key)
		return bundleRef{}, fmt.Errorf("receiver: stow repository: %s: stored %d of %d bytes", key, info.Size, st.Size())
	}
	return bundleRef{Key: key, Generation: gen, Size: st.Size(), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// dropSuperseded deletes the bundles next no longer names, once next is in
// place. After a compaction it also sweeps bundles that failed saves left
// behind. Failures only cost space.
func (r *repos) dropSuperseded(ctx context.Context, app string, base, next *manifest) {
	keep := map[string]bool{}
	for _, b := range next.Bundles {
		keep[b.Key] = true
	}
	drop := map[string]bool{}
	if base != nil {
		for _, b := range base.Bundles {
			if !keep[b.Key] {
				drop[b.Key] = true
			}
		}
	}
	if len(drop) > 0 || len(next.Bundles) <= 1 {
		if list, err := r.stow.List(ctx, bundlePrefix(app)); err == nil {
			for _, info := range list {
				if g := bundleGeneration(app, info.Key); g >= 1 && g <= next.Generation && !keep[info.Key] {
					drop[info.Key] = true
				}
			}
		}
	}
	for key := range drop {
		_ = r.stow.Delete(ctx, key)
	}
}
