package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// SPEC A11: the second push to an app is refused, naming the holder.
func TestLocalLeaseIsExclusive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := NewLocal()
	since := time.Now().Add(-time.Minute)
	first, err := l.Acquire(ctx, "web", Holder{User: "alice", Since: since})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Acquire(ctx, "web", Holder{User: "bob"})
	var busy *BusyError
	if !errors.As(err, &busy) || !errors.Is(err, ErrBusy) || busy.Holder.User != "alice" {
		t.Fatalf("second Acquire = %v", err)
	}
	if !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "1m0s ago") {
		t.Fatalf("busy message %q does not say who and since when", err)
	}
	if _, err := l.Acquire(ctx, "api", Holder{User: "bob"}); err != nil {
		t.Fatalf("other app: %v", err)
	}
	_ = first.Release(ctx)
	_ = first.Release(ctx)
	second, err := l.Acquire(ctx, "web", Holder{User: "bob"})
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if second.Generation() <= first.Generation() {
		t.Fatalf("generation did not grow: %d then %d", first.Generation(), second.Generation())
	}
	// A stale lease's Release must not free the new holder's lease.
	_ = first.Release(ctx)
	if _, err := l.Acquire(ctx, "web", Holder{User: "carol"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("stale release freed the lease: %v", err)
	}
}
