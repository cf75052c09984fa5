package stow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// maxSmallObject bounds the objects ReadAll and GetJSON load into memory.
const maxSmallObject = 64 << 20

// ReadAll fetches a small object whole.
func ReadAll(ctx context.Context, s Store, key string) ([]byte, Info, error) {
	rc, info, err := s.Get(ctx, key)
	if err != nil {
		return nil, Info{}, err
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(io.LimitReader(rc, maxSmallObject+1))
	if err != nil {
		return nil, Info{}, fmt.Errorf("stow: read %s: %w", key, err)
	}
	if len(b) > maxSmallObject {
		return nil, Info{}, fmt.Errorf("stow: read %s: object larger than %d bytes", key, maxSmallObject)
	}
	return b, info, nil
}

// PutBytes stores b under key.
func PutBytes(ctx context.Context, s Store, key string, b []byte) (Info, error) {
	return s.Put(ctx, key, bytes.NewReader(b))
}

// GetJSON decodes the JSON object under key into v.
func GetJSON(ctx context.Context, s Store, key string, v any) (Info, error) {
	b, info, err := ReadAll(ctx, s, key)
	if err != nil {
		return Info{}, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return Info{}, fmt.Errorf("stow: decode %s: %w", key, err)
	}
	return info, nil
}

// PutJSON stores v, indented so operators can read it, under key.
func PutJSON(ctx context.Context, s Store, key string, v any) (Info, error) {
	b, err := encodeJSON(key, v)
	if err != nil {
		return Info{}, err
	}
	return PutBytes(ctx, s, key, b)
}

// CreateJSON stores v under key only if nothing is there (ErrConflict otherwise).
func CreateJSON(ctx context.Context, s Store, key string, v any) (Info, error) {
	b, err := encodeJSON(key, v)
	if err != nil {
		return Info{}, err
	}
	return s.Create(ctx, key, bytes.NewReader(b))
}

// SwapJSON replaces the object under key with v only if its ETag is still
// etag (ErrConflict otherwise).
func SwapJSON(ctx context.Context, s Store, key string, v any, etag string) (Info, error) {
	b, err := encodeJSON(key, v)
	if err != nil {
		return Info{}, err
	}
	return s.Swap(ctx, key, bytes.NewReader(b), etag)
}

func encodeJSON(key string, v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("stow: encode %s: %w", key, err)
	}
	return append(b, '\n'), nil
}

// ErrNoChange, returned by an UpdateJSON callback, ends the update without a
// write and without an error.
var ErrNoChange = errors.New("stow: nothing to change")

// updateAttempts bounds UpdateJSON's retries. Each lost race means another
// writer made progress, so under any sane contention one of a few dozen
// attempts wins; past that the caller gets ErrConflict, not a silent loss.
const updateAttempts = 50

// UpdateJSON is a read-modify-write of the JSON record under key that never
// loses another writer's change: it reads the record (the zero T when there
// is none: exists is false), lets fn change it, and writes it back only if
// the record is still the one read (Create when there was none, Swap
// otherwise). On a lost race it reads again and calls fn again, after a short
// jittered wait, so fn must be free of side effects. fn returning ErrNoChange
// ends the update without writing; any other error ends it with that error.
func UpdateJSON[T any](ctx context.Context, s Store, key string, fn func(v *T, exists bool) error) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		var v T
		info, err := GetJSON(ctx, s, key, &v)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return zero, err
		}
		if err := fn(&v, exists); err != nil {
			if errors.Is(err, ErrNoChange) {
				return v, nil
			}
			return zero, err
		}
		if exists {
			_, err = SwapJSON(ctx, s, key, v, info.ETag)
		} else {
			_, err = CreateJSON(ctx, s, key, v)
		}
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, ErrConflict) || attempt+1 >= updateAttempts {
			return zero, err
		}
		wait := time.Duration(1+min(attempt, 8)) * time.Duration(1+rand.IntN(5)) * time.Millisecond
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-time.After(wait):
		}
	}
}
