package stow

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return Info{}, fmt.Errorf("stow: encode %s: %w", key, err)
	}
	return PutBytes(ctx, s, key, append(b, '\n'))
}
