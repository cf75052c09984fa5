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
type Store interface {
	Put(ctx context.Context, key string, r io.Reader) (Info, error)
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
