package stow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Local stores objects as files under a root directory. Writes go to a temporary
// file in the destination directory, are fsynced, then renamed into place, so a
// crash never leaves half an object under a key.
type Local struct {
	root string
}

// NewLocal returns a store rooted at dir, creating it (mode 0700) if needed.
func NewLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("stow: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("stow: create root: %w", err)
	}
	return &Local{root: abs}, nil
}

// Root is the directory the store lives in.
func (l *Local) Root() string { return l.root }

func (l *Local) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, key string, r io.Reader) (Info, error) {
	return l.write(ctx, key, r, func(tmp, p string) error { return os.Rename(tmp, p) })
}

// Create implements Store. The new object is hard-linked into place, which
// fails atomically when the name exists, also against another process.
func (l *Local) Create(ctx context.Context, key string, r io.Reader) (Info, error) {
	return l.write(ctx, key, r, func(tmp, p string) error {
		if err := os.Link(tmp, p); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %s exists", ErrConflict, key)
			}
			return err
		}
		return os.Remove(tmp)
	})
}

// Swap implements Store. The ETag is compared and the new object renamed into
// place under an exclusive flock on the object's directory, which every
// writer of that directory takes, so no other write lands in between.
func (l *Local) Swap(ctx context.Context, key string, r io.Reader, etag string) (Info, error) {
	return l.write(ctx, key, r, func(tmp, p string) error {
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("%w: %s is gone", ErrConflict, key)
		case err != nil:
			return err
		case st.IsDir() || info(key, st).ETag != etag:
			return fmt.Errorf("%w: %s changed", ErrConflict, key)
		}
		return os.Rename(tmp, p)
	})
}

// write stores r in a temporary file next to key's, fsyncs it, then lets
// commit move it into place while holding the directory's lock.
func (l *Local) write(ctx context.Context, key string, r io.Reader, commit func(tmp, p string) error) (Info, error) {
	p, err := l.path(key)
	if err != nil {
		return Info{}, err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(dir, ".tmp-"+hex.EncodeToString(suffix[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(tmp) // gone already once committed
	}()
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	err = commit(tmp, p)
	var st fs.FileInfo
	if err == nil {
		st, err = os.Stat(p)
	}
	unlock()
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return Info{}, fmt.Errorf("stow: %w", err)
		}
		return Info{}, fmt.Errorf("stow: put %s: %w", key, err)
	}
	syncDir(dir)
	return info(key, st), nil
}

// Get implements Store.
func (l *Local) Get(_ context.Context, key string) (io.ReadCloser, Info, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, Info{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, Info{}, l.notFound(key, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, Info{}, fmt.Errorf("stow: get %s: %w", key, err)
	}
	if st.IsDir() {
		_ = f.Close()
		return nil, Info{}, fmt.Errorf("stow: get %s: %w", key, ErrNotFound)
	}
	return f, info(key, st), nil
}

// Stat implements Store.
func (l *Local) Stat(_ context.Context, key string) (Info, error) {
	p, err := l.path(key)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return Info{}, l.notFound(key, err)
	}
	if st.IsDir() {
		return Info{}, fmt.Errorf("stow: stat %s: %w", key, ErrNotFound)
	}
	return info(key, st), nil
}

// Delete implements Store. Deleting a missing object is not an error.
func (l *Local) Delete(_ context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	unlock, err := lockDir(filepath.Dir(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stow: delete %s: %w", key, err)
	}
	defer unlock()
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stow: delete %s: %w", key, err)
	}
	return nil
}

// List implements Store.
func (l *Local) List(ctx context.Context, prefix string) ([]Info, error) {
	var out []Info
	err := filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, _ := filepath.Rel(l.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Skip directories that cannot hold a matching key.
			if p != l.root && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".tmp-") || !strings.HasPrefix(key, prefix) {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, info(key, st))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stow: list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (l *Local) notFound(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscallENOTDIR) {
		return fmt.Errorf("stow: %s: %w", key, ErrNotFound)
	}
	return fmt.Errorf("stow: %s: %w", key, err)
}

func info(key string, st fs.FileInfo) Info {
	return Info{
		Key:     key,
		Size:    st.Size(),
		ModTime: st.ModTime(),
		ETag:    strconv.FormatInt(st.ModTime().UnixNano(), 36) + "-" + strconv.FormatInt(st.Size(), 36) + inode(st),
	}
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// ctxReader stops a long copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
