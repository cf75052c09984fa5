package receiver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sokoban-deploy/sokoban/internal/proc"
	"github.com/sokoban-deploy/sokoban/stow"
)

// Repositories are durable in stow as a chain of git bundles plus a manifest
// that lists them (apps/APP/repo.json → apps/APP/repo/GEN-RANDOM.bundle…): a
// full base bundle, then one incremental bundle per push holding only the
// objects that push added. Restoring applies them in order. Bundles are
// immutable and uniquely named, so a reader that fetched manifest N never
// reads half of N+1; a writer deletes superseded bundles only after the
// manifest that drops them is in place (repo_save.go).
//
// Each node keeps a bare repository per app as a cache (DATA/repos/APP.git)
// and a note of the manifest it matches (DATA/repos/APP.json). The cache is
// used as is only when that note names the stowed manifest; a cache a few
// generations behind fetches just the newer bundles (repo_restore.go), and
// anything else is restored from the whole chain into a fresh repository.

// manifest describes the stowed repository of an app.
type manifest struct {
	Generation int64 `json:"generation"`
	// ID is random per write, so two writes of one generation (a fenced-out
	// writer racing a new one) are never mistaken for each other.
	ID string `json:"id,omitempty"`
	// Bundles is the chain: a full bundle first, then incremental ones, in
	// the order they apply. Empty when the repository has no refs.
	Bundles []bundleRef `json:"bundles,omitempty"`
	// Refs is the repository's refs (name → object id) after the chain.
	Refs      map[string]string `json:"refs"`
	Fence     int64             `json:"fence,omitempty"` // lease generation of the writer, for operators
	UpdatedAt time.Time         `json:"updated_at"`

	// Bundle, SHA256 and Size are the single full bundle of manifests written
	// before chains; readManifest turns them into a one-bundle chain.
	Bundle string `json:"bundle,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Size   int64  `json:"size,omitempty"`

	// etag is the stored object's version as read: the next manifest is
	// swapped in only if the stowed one is still this one.
	etag string
}

// bundleRef is one stowed bundle of a chain.
type bundleRef struct {
	Key        string `json:"key"`
	Generation int64  `json:"generation"` // the manifest generation that wrote it
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256"`
}

// base is the chain's full bundle, and incrementalSize the bytes after it.
func (m *manifest) base() *bundleRef {
	if m == nil || len(m.Bundles) == 0 {
		return nil
	}
	return &m.Bundles[0]
}

func (m *manifest) incrementalSize() int64 {
	var n int64
	if m != nil && len(m.Bundles) > 1 {
		for _, b := range m.Bundles[1:] {
			n += b.Size
		}
	}
	return n
}

// cacheState is the node's note about its cached repository: the manifest it
// matches.
type cacheState struct {
	Generation int64  `json:"generation"`
	ID         string `json:"id,omitempty"`
}

func (s *cacheState) matches(m *manifest) bool {
	return s != nil && m != nil && s.Generation == m.Generation && s.ID == m.ID
}

func manifestKey(app string) string  { return "apps/" + app + "/repo.json" }
func bundlePrefix(app string) string { return "apps/" + app + "/repo/" }

// newBundleKey names a bundle written at generation gen; the random part keeps
// a failed or fenced-out write from ever overwriting a bundle a manifest names.
func newBundleKey(app string, gen int64) string {
	return fmt.Sprintf("%s%012d-%s.bundle", bundlePrefix(app), gen, randomHex(4))
}

// bundleNameRE matches bundle names: GEN.bundle (single-bundle manifests) or
// GEN-RANDOM.bundle.
var bundleNameRE = regexp.MustCompile(`^([0-9]{12})(-[0-9a-f]{8})?\.bundle$`)

// bundleGeneration is the generation in a bundle key of app, or -1.
func bundleGeneration(app, key string) int64 {
	name, ok := strings.CutPrefix(key, bundlePrefix(app))
	if !ok {
		return -1
	}
	m := bundleNameRE.FindStringSubmatch(name)
	if m == nil {
		return -1
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

type repos struct {
	dir  string // DATA/repos
	tmp  string // DATA/tmp, same filesystem for renames
	stow stow.Store
	git  string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func newRepos(dataDir string, s stow.Store, git string) (*repos, error) {
	r := &repos{dir: filepath.Join(dataDir, "repos"), tmp: filepath.Join(dataDir, "tmp"), stow: s, git: git, locks: map[string]*sync.Mutex{}}
	for _, d := range []string{r.dir, r.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("receiver: %w", err)
		}
	}
	return r, nil
}

func (r *repos) path(app string) string      { return filepath.Join(r.dir, app+".git") }
func (r *repos) statePath(app string) string { return filepath.Join(r.dir, app+".json") }

// lock serializes cache changes for one app on this node (a push and a clone may
// both want to restore it).
func (r *repos) lock(app string) func() {
	r.mu.Lock()
	m, ok := r.locks[app]
	if !ok {
		m = &sync.Mutex{}
		r.locks[app] = m
	}
	r.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// prepare returns the app's repository directory, current with stow, creating
// an empty one when the app has never been pushed and create is set. It
// returns the stowed manifest the repository matches (nil for none).
func (r *repos) prepare(ctx context.Context, app string, create bool) (string, *manifest, error) {
	unlock := r.lock(app)
	defer unlock()
	dir := r.path(app)
	for attempt := 0; ; attempt++ {
		stowed, err := r.readManifest(ctx, app)
		if err != nil {
			return "", nil, err
		}
		state, haveCache := r.readState(app), isDir(dir)
		switch {
		case haveCache && stowed == nil:
			// Pushed here but never stowed (stow failed after the push): the cache is
			// the only copy, and the next push stows it (SPEC F11).
			return dir, nil, nil
		case haveCache && state.matches(stowed):
			return dir, stowed, nil
		case stowed == nil && !create:
			return "", nil, ErrNoRepo
		case stowed == nil:
			if err := r.initBare(ctx, dir); err != nil {
				return "", nil, err
			}
			return dir, nil, nil
		}
		if !haveCache {
			state = nil
		}
		err = r.restore(ctx, app, stowed, state)
		if errors.Is(err, errBundleGone) && attempt < 3 {
			// A compaction may have replaced the chain after we read the
			// manifest: read it again and restore what it names now.
			if now, rerr := r.readManifest(ctx, app); rerr == nil && now != nil && now.ID != stowed.ID {
				continue
			}
		}
		if errors.Is(err, errBundleGone) {
			err = fmt.Errorf("%w: %v", ErrCorruptRepo, err)
		}
		if err != nil {
			return "", nil, err
		}
		return dir, stowed, nil
	}
}

// unstowed reports whether refs (the cache's, after a push) differ from what
// stow holds: the push moved refs, or an earlier push on this node moved them
// and could not stow them (SPEC F11: the next push retries).
func (r *repos) unstowed(stowed *manifest, refs map[string]string) bool {
	if stowed == nil {
		return len(refs) > 0
	}
	return !sameRefs(stowed.Refs, refs)
}

func (r *repos) initBare(ctx context.Context, dir string) error {
	tmp, err := os.MkdirTemp(r.tmp, "init-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if _, err := r.run(ctx, "", "init", "--quiet", "--bare", "--initial-branch=main", tmp); err != nil {
		return fmt.Errorf("receiver: create repository: %w", err)
	}
	return r.swap(tmp, dir)
}

func (r *repos) readManifest(ctx context.Context, app string) (*manifest, error) {
	var m manifest
	info, err := stow.GetJSON(ctx, r.stow, manifestKey(app), &m)
	if err != nil {
		if errors.Is(err, stow.ErrNotFound) {
			return nil, nil
		}
		if errors.Is(err, stow.ErrCorrupt) {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorruptRepo, manifestKey(app), err)
		}
		return nil, fmt.Errorf("receiver: read repository manifest: %w", err)
	}
	if m.Bundle != "" && len(m.Bundles) == 0 {
		m.Bundles = []bundleRef{{Key: m.Bundle, Generation: m.Generation, Size: m.Size, SHA256: m.SHA256}}
	}
	m.Bundle, m.SHA256, m.Size = "", "", 0
	m.etag = info.ETag
	if err := checkManifest(app, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkManifest refuses a manifest that names bundles outside the app's
// repository prefix or out of order: it was not written by us.
func checkManifest(app string, m *manifest) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrCorruptRepo, manifestKey(app), fmt.Sprintf(format, args...))
	}
	if m.Generation < 1 {
		return bad("generation %d", m.Generation)
	}
	prev := int64(0)
	for _, b := range m.Bundles {
		g := bundleGeneration(app, b.Key)
		if g < 1 || g != b.Generation || g <= prev || g > m.Generation {
			return bad("bundle %q out of place", b.Key)
		}
		if b.Size <= 0 || !sha256RE.MatchString(b.SHA256) {
			return bad("bundle %q without size or checksum", b.Key)
		}
		prev = g
	}
	if len(m.Refs) > 0 && len(m.Bundles) == 0 {
		return bad("refs without bundles")
	}
	for name, oid := range m.Refs {
		if !strings.HasPrefix(name, "refs/") || strings.ContainsAny(name, " \t\r\n\x00") || !oidRE.MatchString(oid) {
			return bad("ref %q", name)
		}
	}
	return nil
}

func (r *repos) readState(app string) *cacheState {
	b, err := os.ReadFile(r.statePath(app))
	if err != nil {
		return nil
	}
	var s cacheState
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	return &s
}

func (r *repos) writeState(app string, m *manifest) error {
	b, _ := json.Marshal(cacheState{Generation: m.Generation, ID: m.ID})
	tmp := r.statePath(app) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, r.statePath(app))
}

// swap moves a freshly built repository into place.
func (r *repos) swap(src, dst string) error {
	old := ""
	if isDir(dst) {
		old = dst + ".old-" + fmt.Sprint(time.Now().UnixNano())
		if err := os.Rename(dst, old); err != nil {
			return err
		}
	}
	if err := os.Rename(src, dst); err != nil {
		if old != "" {
			_ = os.Rename(old, dst)
		}
		return err
	}
	if old != "" {
		_ = os.RemoveAll(old)
	}
	return nil
}

// refs lists the repository's refs (name → object id).
func (r *repos) refs(ctx context.Context, dir string) (map[string]string, error) {
	out, err := r.run(ctx, dir, "for-each-ref", "--format=%(objectname) %(refname)")
	if err != nil {
		return nil, fmt.Errorf("receiver: list refs: %s", lastLine(out))
	}
	refs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if oid, name, ok := strings.Cut(line, " "); ok {
			refs[name] = oid
		}
	}
	return refs, nil
}

// fixHead points HEAD at a branch that exists, so `git clone` checks it out.
func (r *repos) fixHead(ctx context.Context, dir string, refs map[string]string) {
	for _, b := range []string{"refs/heads/main", "refs/heads/master"} {
		if _, ok := refs[b]; ok {
			_, _ = r.run(ctx, dir, "symbolic-ref", "HEAD", b)
			return
		}
	}
}

// run runs a git command with the server-side environment and returns its
// combined output.
func (r *repos) run(ctx context.Context, dir string, args ...string) (string, error) {
	return r.runIn(ctx, dir, nil, args...)
}

// runIn is run with stdin.
func (r *repos) runIn(ctx context.Context, dir string, stdin io.Reader, args ...string) (string, error) {
	var out bytes.Buffer
	err := proc.Run(ctx, proc.Cmd{Argv: append([]string{r.git}, args...), Dir: dir, Env: gitEnv(nil), Stdin: stdin, Stdout: &limitWriter{w: &out, n: 1 << 20}})
	return out.String(), err
}

func sameRefs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "failed"
	}
	return s
}

func shortSum(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// limitWriter keeps the first n bytes and drops the rest.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(int64(len(p)), l.n)
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.n -= k
	}
	return len(p), nil
}
