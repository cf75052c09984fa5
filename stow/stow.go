package stow

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
	// ETag changes whenever the object's content is replaced. Callers compare it
	// for equality only.
	ETag string
}

// Store is the blob store every backend implements. Put is atomic: a reader sees
// either the old object or the whole new one, never a part.
//
// Create and Swap are the conditional writes that state shared across nodes
// is built on (DESIGN rule 8): a writer that lost a race gets ErrConflict and
// has changed nothing, so it can re-read and try again, or give up.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader) (Info, error)
	// Create stores r under key only if no object is there; otherwise it
	// writes nothing and returns an error wrapping ErrConflict.
	Create(ctx context.Context, key string, r io.Reader) (Info, error)
	// Swap replaces the object under key only if its ETag is still etag;
	// when it changed or is gone, it writes nothing and returns an error
	// wrapping ErrConflict.
	Swap(ctx context.Context, key string, r io.Reader, etag string) (Info, error)
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	Stat(ctx context.Context, key string) (Info, error)
	Delete(ctx context.Context, key string) error
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
}

// CheckKey reports whether key is a clean relative slash path that stays inside
// the store. Backends call it before touching anything.
func CheckKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") ||
		strings.ContainsRune(key, 0) || path.Clean(key) != key || key == "." ||
		key == ".." || strings.HasPrefix(key, "../") {
		return fmt.Errorf("%w: %q", ErrBadKey, key)
	}
	for _, part := range strings.Split(key, "/") {
		if strings.HasPrefix(part, ".tmp-") {
			return fmt.Errorf("%w: %q uses a reserved name", ErrBadKey, key)
		}
	}
	return nil
}
