package cluster_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sokoban-deploy/sokoban/cluster"
	"github.com/sokoban-deploy/sokoban/cluster/clustertest"
)

const guard = 30 * time.Second

func newRedis(t *testing.T, srv *clustertest.RedisServer, node string) *cluster.Redis {
	t.Helper()
	r, err := cluster.NewRedis(cluster.RedisConfig{
		URL: srv.URL, Node: node, LeaseTTL: time.Second, LogCap: testLogCap, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func rawClient(t *testing.T, srv *clustertest.RedisServer) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// poll waits until cond holds, failing after the guard.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, guard)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewRedisRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []cluster.RedisConfig{
		{URL: "redis://127.0.0.1:1", Node: ""},
		{URL: "http://127.0.0.1:1", Node: "a"},
		{URL: "127.0.0.1:6379", Node: "a"},
		{URL: "redis://127.0.0.1:1", Node: "a", LeaseTTL: time.Millisecond},
	} {
		if r, err := cluster.NewRedis(cfg); err == nil {
			_ = r.Close()
			t.Errorf("NewRedis(%+v) succeeded", cfg)
		}
	}
	// A malformed URL's error must not echo the password.
	_, err := cluster.NewRedis(cluster.RedisConfig{URL: "redis://u:s3cret@host:port:x", Node: "a"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("malformed URL: %v", err)
	}
}

// DESIGN rule 7: cluster state is keys with a TTL under sokoban:, except the
// generation counters that must outlive the leases they fence.
func TestRedisKeysArePrefixedAndExpire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := clustertest.StartRedis(t)
	raw := rawClient(t, srv)
	a, b := newRedis(t, srv, "a"), newRedis(t, srv, "b")
	l, err := a.Acquire(ctx, "web", cluster.Holder{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	run, err := a.Start(ctx, cluster.Build{ID: "b1", App: "web", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(run.Output(), "output\n")
	if _, err := b.Cancel(ctx, "web", "bob"); err != nil {
		t.Fatal(err)
	}
	poll(t, "output reaching the stream", func() bool {
		n, _ := raw.Exists(ctx, "sokoban:log:b1").Result()
		return n == 1
	})
	check := func(when string) {
		keys, err := raw.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, "sokoban:") {
				t.Errorf("%s: key %q is not under sokoban:", when, k)
			}
			ttl, err := raw.PTTL(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if persistent := ttl < 0; persistent != strings.HasPrefix(k, "sokoban:gen:") && k != "sokoban:builds" {
				t.Errorf("%s: key %q has TTL %v", when, k, ttl)
			}
		}
		t.Logf("%s: keys %v", when, keys)
	}
	check("while running")
	run.Finish(ctx, "cancelled")
	_ = l.Release(ctx)
	check("after finish")
}

// A lease outlives its TTL while its holder renews it.
func TestRedisLeaseRenews(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := clustertest.StartRedis(t)
	raw := rawClient(t, srv)
	a := newRedis(t, srv, "a")
	l, err := a.Acquire(ctx, "web", cluster.Holder{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Release(ctx) }()
	first, err := raw.PTTL(ctx, "sokoban:lease:web").Result()
	if err != nil || first <= 0 {
		t.Fatalf("lease PTTL %v, %v", first, err)
	}
	poll(t, "a renewal", func() bool {
		ttl, _ := raw.PTTL(ctx, "sokoban:lease:web").Result()
		return ttl > first
	})
	select {
	case <-l.Lost():
		t.Fatal("a renewed lease reported lost")
	default:
	}
	if err := l.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// A cancel whose pub/sub message was missed is still heard at the next
// heartbeat (SPEC H2).
func TestRedisCancelHeardWithoutMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := clustertest.StartRedis(t)
	raw := rawClient(t, srv)
	a := newRedis(t, srv, "a")
	run, err := a.Start(ctx, cluster.Build{ID: "b1", App: "web", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Finish(ctx, "cancelled")
	if err := raw.Set(ctx, "sokoban:cancel:b1", "carol", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case user := <-run.Cancelled():
		if user != "carol" {
			t.Fatalf("cancelled by %q", user)
		}
	case <-time.After(guard):
		t.Fatal("cancel key never heard")
	}
}

// SPEC F3: while Redis is down the build's output calls never block, and
// Finish returns.
func TestRedisOutputNeverBlocksWhileDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := clustertest.StartRedis(t)
	a := newRedis(t, srv, "a")
	run, err := a.Start(ctx, cluster.Build{ID: "b1", App: "web", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		line := []byte(strings.Repeat("x", 99) + "\n")
		for range 4 * testLogCap / len(line) {
			_, _ = run.Output().Write(line)
		}
		run.SetStage(ctx, "compiling")
		run.Finish(ctx, "failed")
	}()
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("output or Finish blocked while Redis was down")
	}
}

// A Redis that restarts empty (no persistence) loses leases, which their
// holders learn; the generation still grows, and running builds come back
// with their next heartbeat and keep streaming.
func TestRedisRestartKeepsGenerationGrowing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := clustertest.StartRedis(t)
	a, b := newRedis(t, srv, "a"), newRedis(t, srv, "b")
	old, err := a.Acquire(ctx, "web", cluster.Holder{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	run, err := a.Start(ctx, cluster.Build{ID: "b1", App: "web", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(run.Output(), "before\n")

	srv.Restart(t)

	select {
	case <-old.Lost():
	case <-time.After(guard):
		t.Fatal("a lease wiped by a Redis restart was not reported lost")
	}
	var l cluster.Lease
	poll(t, "acquire after the restart", func() bool {
		l, err = b.Acquire(ctx, "web", cluster.Holder{User: "bob"})
		return err == nil
	})
	defer func() { _ = l.Release(ctx) }()
	if l.Generation() <= old.Generation() {
		t.Fatalf("generation went from %d to %d across a restart", old.Generation(), l.Generation())
	}
	poll(t, "the running build listed again", func() bool {
		bs, err := b.Builds(ctx)
		return err == nil && len(bs) == 1 && bs[0].ID == "b1"
	})
	f, err := b.Follow(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	_, _ = io.WriteString(run.Output(), "after\n")
	run.Finish(ctx, "succeeded")
	got, err := io.ReadAll(f)
	if err != nil || !strings.HasSuffix(string(got), "after\n") || f.Result() != "succeeded" {
		t.Fatalf("follower read %q, %v, result %q", got, err, f.Result())
	}
}

// Closing a node ends its followers' reads with ErrClosed, not a hang.
func TestRedisFollowerClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := clustertest.StartRedis(t)
	a := newRedis(t, srv, "a")
	run, err := a.Start(ctx, cluster.Build{ID: "b1", App: "web", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Finish(ctx, "succeeded")
	f, err := a.Follow(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(f)
		errc <- err
	}()
	_ = f.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, cluster.ErrClosed) {
			t.Fatalf("Read after Close = %v", err)
		}
	case <-time.After(guard):
		t.Fatal("Read did not return after Close")
	}
}
