package buildpack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// fetchCache keeps fetched buildpacks on this node, one entry per URL and ref,
// bounded in size: the least recently used entries go first. An entry is
// staged in a temporary directory and renamed into place, so a crash or a
// failed fetch never leaves half an entry; a per-entry lock makes concurrent
// builds of the same URL wait for one fetch instead of racing. Builds copy an
// entry out (their copy may gain an export file); they never run from it.
//
// Layout: DIR/<sha256 of kind, URL and ref>/{meta.json,tree/}. meta.json's
// modification time is the entry's last use.
type fetchCache struct {
	dir string
	max int64
	log *slog.Logger

	mu    sync.Mutex
	locks map[string]chan struct{}
}

// cacheMeta is what an entry remembers about its origin.
type cacheMeta struct {
	URL string `json:"url"`
	Ref string `json:"ref,omitempty"`
	// Remote is what `git ls-remote` said the ref pointed to when it was
	// fetched; the entry is current while the ref still points there.
	Remote string `json:"remote,omitempty"`
	// ETag and LastModified revalidate a tarball with a conditional GET.
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Size         int64  `json:"size"`
}

func newFetchCache(dir string, max int64, log *slog.Logger) (*fetchCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// Staging and retired entries of a previous run are garbage now: one
	// server uses a data directory at a time.
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				_ = os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}
	return &fetchCache{dir: dir, max: max, log: log, locks: map[string]chan struct{}{}}, nil
}

func fetchKey(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}

// lock takes the entry's lock, waiting for another build that holds it.
func (c *fetchCache) lock(ctx context.Context, key string) (func(), error) {
	for {
		unlock, ok := c.tryLock(key)
		if ok {
			return unlock, nil
		}
		c.mu.Lock()
		ch := c.locks[key]
		c.mu.Unlock()
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *fetchCache) tryLock(key string) (func(), bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, busy := c.locks[key]; busy {
		return nil, false
	}
	ch := make(chan struct{})
	c.locks[key] = ch
	return func() {
		c.mu.Lock()
		delete(c.locks, key)
		c.mu.Unlock()
		close(ch)
	}, true
}

// get returns an entry's metadata and tree. The caller holds its lock.
func (c *fetchCache) get(key string) (cacheMeta, string, bool) {
	var m cacheMeta
	b, err := os.ReadFile(filepath.Join(c.dir, key, "meta.json"))
	if err != nil || json.Unmarshal(b, &m) != nil {
		return m, "", false
	}
	tree := filepath.Join(c.dir, key, "tree")
	if !isDir(tree) {
		return m, "", false
	}
	now := time.Now()
	_ = os.Chtimes(filepath.Join(c.dir, key, "meta.json"), now, now)
	return m, tree, true
}

// stage makes a staging directory on the cache's file system; the fetch
// writes stage/tree, then install moves it into place.
func (c *fetchCache) stage() (string, error) {
	return os.MkdirTemp(c.dir, ".stage-")
}

// install makes stage the entry for key, replacing an older one, and returns
// the entry's tree. The caller holds the entry's lock.
func (c *fetchCache) install(key string, m cacheMeta, stage string) (string, error) {
	m.Size = dirSize(filepath.Join(stage, "tree"))
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(stage, "meta.json"), b, 0o600); err != nil {
		return "", err
	}
	final := filepath.Join(c.dir, key)
	if _, err := os.Lstat(final); err == nil {
		if err := c.retire(final); err != nil {
			return "", err
		}
	}
	if err := os.Rename(stage, final); err != nil {
		return "", err
	}
	c.evict(key)
	return filepath.Join(final, "tree"), nil
}

// retire moves an entry out of the way and removes it.
func (c *fetchCache) retire(path string) error {
	old, err := os.MkdirTemp(c.dir, ".old-")
	if err != nil {
		return err
	}
	if err := os.Rename(path, filepath.Join(old, "entry")); err != nil {
		_ = os.Remove(old)
		return err
	}
	return os.RemoveAll(old)
}

// evict removes least recently used entries until the cache fits its bound.
// Entries in use by another build are skipped, and so is keep, the one just
// installed, even when it alone is larger than the bound.
func (c *fetchCache) evict(keep string) {
	if c.max <= 0 {
		return
	}
	type entry struct {
		key  string
		size int64
		used time.Time
	}
	dirents, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	var all []entry
	var total int64
	for _, d := range dirents {
		if strings.HasPrefix(d.Name(), ".") || !d.IsDir() {
			continue
		}
		metaPath := filepath.Join(c.dir, d.Name(), "meta.json")
		st, err := os.Stat(metaPath)
		if err != nil {
			continue
		}
		var m cacheMeta
		if b, err := os.ReadFile(metaPath); err == nil {
			_ = json.Unmarshal(b, &m)
		}
		all = append(all, entry{d.Name(), m.Size, st.ModTime()})
		total += m.Size
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used.Before(all[j].used) })
	for _, e := range all {
		if total <= c.max {
			return
		}
		if e.key == keep {
			continue
		}
		unlock, ok := c.tryLock(e.key)
		if !ok {
			continue
		}
		if err := c.retire(filepath.Join(c.dir, e.key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("buildpack cache: evict", "entry", e.key, "err", err)
		} else {
			total -= e.size
			c.log.Debug("buildpack cache: evicted", "entry", e.key, "size", e.size)
		}
		unlock()
	}
}

// dirSize is the bytes of regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
