package receiver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sokoban-deploy/sokoban/stow"
)

// countingStore counts the bytes that go through Get and Put, and can fail
// Puts or run a hook before a Get.
type countingStore struct {
	stow.Store
	mu       sync.Mutex
	got, put map[string]int64
	// failPut, when it returns true for a key, makes that Put fail.
	failPut func(key string) bool
	// beforeGet runs (once per key prefix match) before a Get.
	beforeGet func(key string)
}

func newCountingStore(t *testing.T) *countingStore {
	t.Helper()
	st, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &countingStore{Store: st, got: map[string]int64{}, put: map[string]int64{}}
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, stow.Info, error) {
	c.mu.Lock()
	hook := c.beforeGet
	c.mu.Unlock()
	if hook != nil {
		hook(key)
	}
	rc, info, err := c.Store.Get(ctx, key)
	if err == nil {
		c.mu.Lock()
		c.got[key] += info.Size
		c.mu.Unlock()
	}
	return rc, info, err
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader) (stow.Info, error) {
	c.mu.Lock()
	fail := c.failPut != nil && c.failPut(key)
	c.mu.Unlock()
	if fail {
		_, _ = io.Copy(io.Discard, r)
		return stow.Info{}, errors.New("injected: store unavailable")
	}
	info, err := c.Store.Put(ctx, key, r)
	if err == nil {
		c.mu.Lock()
		c.put[key] += info.Size
		c.mu.Unlock()
	}
	return info, err
}

// bundleBytes returns and resets the bundle bytes read and written.
func (c *countingStore) bundleBytes() (got, put int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.got {
		if strings.HasSuffix(k, ".bundle") {
			got += n
		}
	}
	for k, n := range c.put {
		if strings.HasSuffix(k, ".bundle") {
			put += n
		}
	}
	c.got, c.put = map[string]int64{}, map[string]int64{}
	return got, put
}

// node is one node's repository cache over a shared store.
type node struct {
	t     *testing.T
	repos *repos
}

func newNode(t *testing.T, st stow.Store) *node {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git not found in PATH: install git (apt-get install git)")
	}
	r, err := newRepos(t.TempDir(), st, "git")
	if err != nil {
		t.Fatal(err)
	}
	return &node{t: t, repos: r}
}

// prepare is repos.prepare for a push, failing the test on error.
func (n *node) prepare(app string) (string, *manifest) {
	n.t.Helper()
	dir, m, err := n.repos.prepare(context.Background(), app, true)
	if err != nil {
		n.t.Fatalf("prepare %s: %v", app, err)
	}
	return dir, m
}

// push prepares the app's cache, pushes refspecs from work into it as a
// client would, and stows the result.
func (n *node) push(app, work string, refspecs ...string) *manifest {
	n.t.Helper()
	dir, base := n.prepare(app)
	gitT(n.t, work, append([]string{"push", "-q", "--force", dir}, refspecs...)...)
	if err := n.repos.save(context.Background(), app, dir, base, 1, nil); err != nil {
		n.t.Fatalf("save %s: %v", app, err)
	}
	return n.manifest(app)
}

func (n *node) manifest(app string) *manifest {
	n.t.Helper()
	m, err := n.repos.readManifest(context.Background(), app)
	if err != nil || m == nil {
		n.t.Fatalf("read manifest: %v (%v)", m, err)
	}
	return m
}

func (n *node) refs(app string) map[string]string {
	n.t.Helper()
	refs, err := n.repos.refs(context.Background(), n.repos.path(app))
	if err != nil {
		n.t.Fatal(err)
	}
	return refs
}

func gitT(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LANG=C", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return strings.TrimSpace(out.String())
}

// workRepo is a client repository with one commit on main.
func workRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	gitT(t, dir, "init", "-q", "-b", "main")
	commitFile(t, dir, "README", []byte("hello\n"))
	return dir
}

func commitFile(t *testing.T, dir, name string, body []byte) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, dir, "add", name)
	gitT(t, dir, "commit", "-q", "-m", "change "+name)
	return gitT(t, dir, "rev-parse", "HEAD")
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Issue 5 item 2: a small push to a large repository uploads only its new
// objects, and a node whose cache is a few generations behind downloads only
// the bundles it lacks; a current cache downloads nothing.
func TestRepoIncrementalChain(t *testing.T) {
	t.Parallel()
	st := newCountingStore(t)
	a, b := newNode(t, st), newNode(t, st)
	work := workRepo(t)
	commitFile(t, work, "big.bin", randomBytes(t, 1<<20))
	m := a.push("shop", work, "main")
	if len(m.Bundles) != 1 || m.Generation != 1 {
		t.Fatalf("first save: %+v", m)
	}
	_, put := st.bundleBytes()
	if put < 1<<20 {
		t.Fatalf("the first save uploaded %d bytes, less than the repository", put)
	}

	commitFile(t, work, "small.txt", []byte("a small change\n"))
	m = a.push("shop", work, "main")
	if len(m.Bundles) != 2 || m.Bundles[1].Generation != 2 {
		t.Fatalf("second save did not extend the chain: %+v", m.Bundles)
	}
	if _, put = st.bundleBytes(); put > 64<<10 {
		t.Fatalf("a small push uploaded %d bytes", put)
	}

	// A fresh node restores the whole chain.
	if _, got := b.prepare("shop"); got.Generation != 2 {
		t.Fatalf("node b restored generation %d", got.Generation)
	}
	if got, _ := st.bundleBytes(); got < 1<<20 {
		t.Fatalf("node b read %d bytes for a fresh restore", got)
	}
	if !sameRefs(b.refs("shop"), a.refs("shop")) {
		t.Fatalf("node b refs %v, node a %v", b.refs("shop"), a.refs("shop"))
	}

	// Two more small pushes on a; b catches up with just those bundles.
	commitFile(t, work, "small.txt", []byte("another\n"))
	a.push("shop", work, "main")
	commitFile(t, work, "small.txt", []byte("and another\n"))
	m = a.push("shop", work, "main")
	st.bundleBytes()
	if _, got := b.prepare("shop"); got.Generation != m.Generation {
		t.Fatalf("node b at generation %d, want %d", got.Generation, m.Generation)
	}
	if got, _ := st.bundleBytes(); got == 0 || got > 64<<10 {
		t.Fatalf("node b read %d bytes to catch up with two small pushes", got)
	}
	if !sameRefs(b.refs("shop"), a.refs("shop")) {
		t.Fatalf("after catching up node b refs %v, node a %v", b.refs("shop"), a.refs("shop"))
	}
	for name := range b.refs("shop") {
		if strings.HasPrefix(name, restoreNamespace) {
			t.Fatalf("restore left %s behind", name)
		}
	}

	// b's cache is current: nothing is downloaded, and b's own push extends
	// the chain that a then catches up with.
	b.prepare("shop")
	if got, _ := st.bundleBytes(); got != 0 {
		t.Fatalf("a current cache read %d bytes", got)
	}
	clone := t.TempDir()
	gitT(t, clone, "clone", "-q", b.repos.path("shop"), ".")
	commitFile(t, clone, "from-b.txt", []byte("b\n"))
	b.push("shop", clone, "main")
	a.prepare("shop")
	if !sameRefs(b.refs("shop"), a.refs("shop")) {
		t.Fatalf("node a refs %v, node b %v", a.refs("shop"), b.refs("shop"))
	}
}

// Issue 5 item 2: the chain is compacted into one full bundle when it grows
// past maxChain bundles or its incrementals outweigh half the base; the old
// bundles are deleted once the new manifest is in place.
func TestRepoCompaction(t *testing.T) {
	t.Parallel()
	st := newCountingStore(t)
	a := newNode(t, st)
	work := workRepo(t)
	commitFile(t, work, "big.bin", randomBytes(t, 256<<10))
	a.push("shop", work, "main")
	longest := 0
	compacted := false
	for i := range maxChain + 3 {
		commitFile(t, work, "n.txt", []byte(fmt.Sprintf("change %d\n", i)))
		m := a.push("shop", work, "main")
		if len(m.Bundles) > maxChain {
			t.Fatalf("chain of %d bundles", len(m.Bundles))
		}
		if len(m.Bundles) < longest {
			compacted = true
		}
		longest = max(longest, len(m.Bundles))
	}
	if !compacted {
		t.Fatalf("the chain was never compacted (longest %d)", longest)
	}
	assertOnlyManifestBundles(t, st, a.manifest("shop"))

	// The half-the-base rule: a push as large as the base compacts at once.
	commitFile(t, work, "big2.bin", randomBytes(t, 256<<10))
	m := a.push("shop", work, "main")
	if len(m.Bundles) != 1 {
		t.Fatalf("a push larger than half the base did not compact: %d bundles", len(m.Bundles))
	}
	assertOnlyManifestBundles(t, st, m)
	c := newNode(t, st)
	c.prepare("shop")
	if !sameRefs(c.refs("shop"), a.refs("shop")) {
		t.Fatal("restore after compaction differs")
	}
}

func assertOnlyManifestBundles(t *testing.T, st stow.Store, m *manifest) {
	t.Helper()
	list, err := st.List(context.Background(), "apps/shop/repo/")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, b := range m.Bundles {
		want[b.Key] = true
	}
	for _, info := range list {
		if !want[info.Key] {
			t.Errorf("superseded bundle %s was not deleted", info.Key)
		}
	}
	if len(list) != len(want) {
		t.Fatalf("store holds %d bundles, manifest names %d", len(list), len(want))
	}
}

// SPEC F9: a corrupt or truncated stowed bundle is detected and refused with a
// clear error; neither a push nor a clone gets an empty repository instead,
// and a node's existing cache is left alone.
func TestRepoCorruptBundleRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, st stow.Store, m *manifest)
		want   string
		// baseOnly: only the base bundle is damaged, which a cache that
		// already holds it does not need.
		baseOnly bool
	}{
		{"flipped bytes", func(t *testing.T, st stow.Store, m *manifest) {
			b := readObject(t, st, m.Bundles[1].Key)
			b[len(b)/2] ^= 0xff
			writeObject(t, st, m.Bundles[1].Key, b)
		}, "checksum", false},
		{"truncated", func(t *testing.T, st stow.Store, m *manifest) {
			b := readObject(t, st, m.Bundles[0].Key)
			writeObject(t, st, m.Bundles[0].Key, b[:len(b)/2])
		}, "bytes", true},
		{"missing", func(t *testing.T, st stow.Store, m *manifest) {
			if err := st.Delete(context.Background(), m.Bundles[1].Key); err != nil {
				t.Fatal(err)
			}
		}, "missing", false},
		{"garbage with a matching manifest", func(t *testing.T, st stow.Store, m *manifest) {
			// Whoever rewrote the bundle also fixed the manifest's checksum:
			// git itself must notice.
			b := readObject(t, st, m.Bundles[1].Key)
			garbage := append([]byte(nil), b[:len(b)-64]...)
			garbage = append(garbage, bytes.Repeat([]byte{'x'}, 64)...)
			writeObject(t, st, m.Bundles[1].Key, garbage)
			m.Bundles[1].SHA256 = sha256Hex(garbage)
			if _, err := stow.PutJSON(context.Background(), st, manifestKey("shop"), m); err != nil {
				t.Fatal(err)
			}
		}, "corrupt", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newCountingStore(t)
			a, stale := newNode(t, st), newNode(t, st)
			work := workRepo(t)
			commitFile(t, work, "big.bin", randomBytes(t, 64<<10))
			a.push("shop", work, "main")
			stale.prepare("shop") // a cache at generation 1
			staleRefs := stale.refs("shop")
			commitFile(t, work, "small.txt", []byte("x\n"))
			m := a.push("shop", work, "main")
			tc.damage(t, st.Store, m)

			fresh := newNode(t, st)
			nodes := []*node{fresh, stale}
			if tc.baseOnly {
				nodes = nodes[:1]
			}
			for _, n := range nodes {
				for _, create := range []bool{true, false} {
					_, _, err := n.repos.prepare(context.Background(), "shop", create)
					if !errors.Is(err, ErrCorruptRepo) || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("prepare(create=%v) = %v, want ErrCorruptRepo mentioning %q", create, err, tc.want)
					}
				}
			}
			if isDir(fresh.repos.path("shop")) {
				t.Fatal("a fresh node created a repository for a corrupt app")
			}
			if tc.baseOnly {
				// The stale cache holds the base: it takes the new bundle only.
				stale.prepare("shop")
				if !sameRefs(stale.refs("shop"), m.Refs) {
					t.Fatal("the stale cache did not catch up")
				}
			} else if got := stale.refs("shop"); !sameRefs(got, staleRefs) {
				t.Fatalf("the stale cache was changed: %v, was %v", got, staleRefs)
			}
		})
	}
}

func readObject(t *testing.T, st stow.Store, key string) []byte {
	t.Helper()
	rc, _, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeObject(t *testing.T, st stow.Store, key string, b []byte) {
	t.Helper()
	if _, err := st.Put(context.Background(), key, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(b []byte) string {
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// SPEC F11: a push whose refs moved but whose repository could not be stowed
// leaves the cache ahead of stow; the next push on that node stows it, even
// when it moves no refs itself.
func TestRepoStowFailureRetriedByNextPush(t *testing.T) {
	t.Parallel()
	st := newCountingStore(t)
	a := newNode(t, st)
	work := workRepo(t)
	first := a.push("shop", work, "main")

	st.failPut = func(key string) bool { return strings.HasSuffix(key, ".bundle") }
	second := commitFile(t, work, "b.txt", []byte("b\n"))
	dir, base := a.prepare("shop")
	gitT(t, work, "push", "-q", dir, "main")
	if err := a.repos.save(context.Background(), "shop", dir, base, 1, nil); err == nil {
		t.Fatal("save succeeded with a failing store")
	}
	if m := a.manifest("shop"); m.ID != first.ID {
		t.Fatal("a failed save changed the manifest")
	}
	st.mu.Lock()
	st.failPut = nil
	st.mu.Unlock()

	// The next push moves nothing (the client is up to date), yet the cache
	// differs from stow, so it stows.
	dir, base = a.prepare("shop")
	refs := a.refs("shop")
	if !a.repos.unstowed(base, refs) {
		t.Fatal("the cache ahead of stow is not seen as unstowed")
	}
	if err := a.repos.save(context.Background(), "shop", dir, base, 1, nil); err != nil {
		t.Fatal(err)
	}
	if m := a.manifest("shop"); m.Refs["refs/heads/main"] != second {
		t.Fatalf("stowed main is %s, want %s", m.Refs["refs/heads/main"], second)
	}
	b := newNode(t, st)
	b.prepare("shop")
	if b.refs("shop")["refs/heads/main"] != second {
		t.Fatal("another node does not see the retried push")
	}
	if a.repos.unstowed(a.manifest("shop"), a.refs("shop")) {
		t.Fatal("still unstowed after the retry")
	}
}

// Pushes that only move or delete refs add no objects: the chain stays, the
// manifest's refs change, and a restore reproduces them, also when an old ref
// and a new one clash as file and directory (refs/heads/a → refs/heads/a/b).
func TestRepoRefOnlyPushes(t *testing.T) {
	t.Parallel()
	st := newCountingStore(t)
	a := newNode(t, st)
	work := workRepo(t)
	one := gitT(t, work, "rev-parse", "HEAD")
	commitFile(t, work, "b.txt", []byte("b\n"))
	m := a.push("shop", work, "main", "main:refs/heads/a")
	chain := len(m.Bundles)

	dir, base := a.prepare("shop")
	gitT(t, work, "push", "-q", dir, ":refs/heads/a", one+":refs/heads/a/b", one+":refs/tags/v1")
	if err := a.repos.save(context.Background(), "shop", dir, base, 1, nil); err != nil {
		t.Fatal(err)
	}
	m = a.manifest("shop")
	if len(m.Bundles) != chain {
		t.Fatalf("a ref-only push added a bundle: %d → %d", chain, len(m.Bundles))
	}
	if m.Refs["refs/heads/a/b"] != one || m.Refs["refs/tags/v1"] != one || m.Refs["refs/heads/a"] != "" {
		t.Fatalf("manifest refs %v", m.Refs)
	}
	gitT(t, work, "tag", "-a", "-m", "annotated", "v2", one)
	m = a.push("shop", work, "refs/tags/v2")
	for _, n := range []*node{newNode(t, st), a} {
		n.prepare("shop")
		if !sameRefs(n.refs("shop"), m.Refs) {
			t.Fatalf("restored refs %v, manifest %v", n.refs("shop"), m.Refs)
		}
	}
}

// DESIGN rule 8: a push that lost its lease does not write the manifest, and
// the bundle it uploaded is removed.
func TestRepoFenceBlocksManifest(t *testing.T) {
	t.Parallel()
	st := newCountingStore(t)
	a := newNode(t, st)
	work := workRepo(t)
	before := a.push("shop", work, "main")
	commitFile(t, work, "b.txt", []byte("b\n"))
	dir, base := a.prepare("shop")
	gitT(t, work, "push", "-q", dir, "main")
	lost := errors.New("lease lost")
	err := a.repos.save(context.Background(), "shop", dir, base, 1, func(context.Context) error { return lost })
	if !errors.Is(err, lost) {
		t.Fatalf("save = %v, want the fence's error", err)
	}
	if m := a.manifest("shop"); m.ID != before.ID {
		t.Fatal("a fenced-out save wrote the manifest")
	}
	assertOnlyManifestBundles(t, st, before)
}

// A restore that reads a manifest and then finds its bundles gone because a
// compaction replaced the chain meanwhile reads the manifest again, instead
// of calling the repository corrupt.
func TestRepoRestoreRacesCompaction(t *testing.T) {
	t.Parallel()
	st := newCountingStore(t)
	a := newNode(t, st)
	work := workRepo(t)
	commitFile(t, work, "big.bin", randomBytes(t, 64<<10))
	a.push("shop", work, "main")
	for i := range maxChain - 1 {
		commitFile(t, work, "n.txt", []byte(fmt.Sprintf("%d\n", i)))
		a.push("shop", work, "main")
	}
	if n := len(a.manifest("shop").Bundles); n != maxChain {
		t.Fatalf("setup: chain of %d", n)
	}
	var once sync.Once
	st.beforeGet = func(key string) {
		if strings.HasSuffix(key, ".bundle") {
			once.Do(func() {
				commitFile(t, work, "n.txt", []byte("compact now\n"))
				if m := a.push("shop", work, "main"); len(m.Bundles) != 1 {
					t.Errorf("the racing push did not compact: %d bundles", len(m.Bundles))
				}
			})
		}
	}
	b := newNode(t, st)
	_, m := b.prepare("shop")
	if len(m.Bundles) != 1 || !sameRefs(b.refs("shop"), a.refs("shop")) {
		t.Fatalf("node b restored %+v", m)
	}
}

// Manifests written before chains name one full bundle; they still restore,
// and the next save extends them into a chain.
func TestRepoSingleBundleManifest(t *testing.T) {
	t.Parallel()
	st := newCountingStore(t)
	work := workRepo(t)
	commitFile(t, work, "big.bin", randomBytes(t, 64<<10))
	bundle := filepath.Join(t.TempDir(), "repo.bundle")
	gitT(t, work, "bundle", "create", "-q", bundle, "--all")
	body, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	key := "apps/shop/repo/000000000003.bundle"
	writeObject(t, st, key, body)
	head := gitT(t, work, "rev-parse", "HEAD")
	legacy := map[string]any{"generation": 3, "bundle": key, "sha256": sha256Hex(body), "size": len(body),
		"refs": map[string]string{"refs/heads/main": head}}
	if _, err := stow.PutJSON(context.Background(), st, manifestKey("shop"), legacy); err != nil {
		t.Fatal(err)
	}
	a := newNode(t, st)
	a.prepare("shop")
	if a.refs("shop")["refs/heads/main"] != head {
		t.Fatal("single-bundle manifest not restored")
	}
	commitFile(t, work, "b.txt", []byte("b\n"))
	m := a.push("shop", work, "main")
	if len(m.Bundles) != 2 || m.Bundles[0].Key != key || m.Generation != 4 {
		t.Fatalf("next save: %+v", m)
	}
}
