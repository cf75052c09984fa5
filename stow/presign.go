package stow

import (
	"context"
	"time"
)

// Presigner is implemented by stores that can hand out URLs which read or write
// one object over plain HTTP, without credentials, until ttl passes. Consumers
// check for it with a type assertion; the local store does not implement it.
type Presigner interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
	PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error)
}
