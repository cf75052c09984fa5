package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sokoban-deploy/sokoban/cluster"
)

// Node is one node's view of the cluster: its leases and its registry.
type Node interface {
	cluster.Leaser
	cluster.Registry
}

// Env is fresh coordination state for one test, shared by its nodes.
type Env struct {
	// Node returns the node named name, making it on first use. The Env
	// closes its nodes when the test ends. An in-process backend may return
	// the same node for every name.
	Node func(name string) Node
	// TTL is the lease and heartbeat TTL the nodes were given.
	TTL time.Duration
	// LogCap is the per-build output cap the nodes were given.
	LogCap int

	// Faults, set when Backend.Distributed:
	// Kill stops node name as if it died: no Finish, no Release, no heartbeat.
	Kill func(name string)
	// DropLease deletes app's lease behind its holder's back, as an expiry would.
	DropLease func(app string)
	// StopBackend makes the coordination service unreachable for good.
	StopBackend func()
}

// Backend is an implementation under test.
type Backend struct {
	// New makes an Env for t; its cleanup goes through t.Cleanup.
	New func(t *testing.T) *Env
	// Distributed says nodes are separate processes' views of a shared
	// service, and the Env carries Kill, DropLease and StopBackend.
	Distributed bool
}

// guard bounds every wait; no test asserts how fast anything is.
const guard = 30 * time.Second

// Run runs the conformance suite against b. Call it from a test that is not
// parallel: its first subtest checks that goroutines return to baseline.
func Run(t *testing.T, b Backend) {
	t.Run("NoGoroutinesLeft", func(t *testing.T) { testNoGoroutinesLeft(t, b) })
	tests := []struct {
		name        string
		distributed bool
		f           func(t *testing.T, env *Env)
	}{
		{"LeaseIsExclusive", false, testLeaseIsExclusive},
		{"ReleaseThenReacquire", false, testReleaseThenReacquire},
		{"StaleReleaseKeepsNewerLease", false, testStaleReleaseKeepsNewerLease},
		{"BuildsListedAcrossNodes", false, testBuildsListedAcrossNodes},
		{"CancelReachesRunningNode", false, testCancelReachesRunningNode},
		{"FollowReplaysAndTails", false, testFollowReplaysAndTails},
		{"FollowFinishedBuild", false, testFollowFinishedBuild},
		{"SlowFollowerNeverBlocksBuild", false, testSlowFollowerNeverBlocksBuild},
		{"LostWhenLeaseTakenOver", true, testLostWhenLeaseTakenOver},
		{"LostWhenBackendStops", true, testLostWhenBackendStops},
		{"AcquireUnavailable", true, testAcquireUnavailable},
		{"DeadNodeDisappears", true, testDeadNodeDisappears},
	}
	for _, tc := range tests {
		if tc.distributed && !b.Distributed {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.f(t, b.New(t))
		})
	}
}

// within runs f and fails the test if it has not returned within the guard.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatalf("%s: still blocked after %s", what, guard)
	}
}

// eventually polls cond until it holds or the guard (plus a few TTLs) passes.
func eventually(t *testing.T, env *Env, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard + 10*env.TTL)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, guard+10*env.TTL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitClosed(t *testing.T, env *Env, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(guard + 10*env.TTL):
		t.Fatalf("%s: not closed", what)
	}
}

func acquire(t *testing.T, n Node, app, user string) cluster.Lease {
	t.Helper()
	l, err := n.Acquire(context.Background(), app, cluster.Holder{User: user, Since: time.Now()})
	if err != nil {
		t.Fatalf("Acquire(%s) for %s: %v", app, user, err)
	}
	return l
}

func start(t *testing.T, n Node, b cluster.Build) cluster.Running {
	t.Helper()
	run, err := n.Start(context.Background(), b)
	if err != nil {
		t.Fatalf("Start(%s): %v", b.ID, err)
	}
	return run
}

func write(t *testing.T, run cluster.Running, s string) {
	t.Helper()
	if _, err := io.WriteString(run.Output(), s); err != nil {
		t.Fatalf("write output: %v", err)
	}
}

// readAll reads f to its end under the guard.
func readAll(t *testing.T, f cluster.Follower) (string, error) {
	t.Helper()
	var out []byte
	var err error
	within(t, "reading a follower", func() { out, err = io.ReadAll(f) })
	return string(out), err
}

func testNoGoroutinesLeft(t *testing.T, b Backend) {
	baseline := goleak.IgnoreCurrent()
	t.Run("work", func(t *testing.T) {
		env := b.New(t)
		ctx := context.Background()
		a, other := env.Node("a"), env.Node("b")
		l := acquire(t, a, "web", "alice")
		run := start(t, a, cluster.Build{ID: "b1", App: "web", User: "alice"})
		f, err := other.Follow(ctx, "b1")
		if err != nil {
			t.Fatal(err)
		}
		write(t, run, "hello\n")
		if _, err := other.Cancel(ctx, "web", "bob"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-run.Cancelled():
		case <-time.After(guard):
			t.Fatal("cancel not delivered")
		}
		run.Finish(ctx, "cancelled")
		if out, err := readAll(t, f); err != nil || out != "hello\n" {
			t.Fatalf("follower read %q, %v", out, err)
		}
		_ = f.Close()
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if b.Distributed {
			// A node that dies holding a lease and a build leaves nothing running.
			dying := env.Node("c")
			acquire(t, dying, "api", "carol")
			start(t, dying, cluster.Build{ID: "b2", App: "api", User: "carol"})
			env.Kill("c")
		}
	})
	goleak.VerifyNone(t, baseline)
}

// SPEC A11: a second push to the same app is refused, naming who and since when.
func testLeaseIsExclusive(t *testing.T, env *Env) {
	ctx := context.Background()
	a, b := env.Node("a"), env.Node("b")
	since := time.Now().Add(-time.Minute)
	held, err := a.Acquire(ctx, "web", cluster.Holder{User: "alice", Node: "a", BuildID: "b1", Since: since})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Release(ctx) }()
	if h := held.Holder(); h.User != "alice" || h.BuildID != "b1" {
		t.Fatalf("Holder() = %+v", h)
	}
	_, err = b.Acquire(ctx, "web", cluster.Holder{User: "bob", Since: time.Now()})
	var busy *cluster.BusyError
	if !errors.As(err, &busy) || !errors.Is(err, cluster.ErrBusy) {
		t.Fatalf("second Acquire = %v, want a *BusyError", err)
	}
	if busy.App != "web" || busy.Holder.User != "alice" || busy.Holder.BuildID != "b1" || !busy.Holder.Since.Equal(since) {
		t.Fatalf("BusyError names %+v", busy)
	}
	if msg := err.Error(); !strings.Contains(msg, "alice") || !strings.Contains(msg, "1m0s ago") {
		t.Fatalf("busy message %q does not say who and since when", msg)
	}
	// Different apps build in parallel.
	other := acquire(t, b, "api", "bob")
	_ = other.Release(ctx)
}

func testReleaseThenReacquire(t *testing.T, env *Env) {
	ctx := context.Background()
	a, b := env.Node("a"), env.Node("b")
	first := acquire(t, a, "web", "alice")
	if err := first.Check(ctx); err != nil {
		t.Fatalf("Check of a held lease: %v", err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if err := first.Check(ctx); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("Check after Release = %v, want ErrLeaseLost", err)
	}
	second := acquire(t, b, "web", "bob")
	defer func() { _ = second.Release(ctx) }()
	if second.Generation() <= first.Generation() {
		t.Fatalf("generation did not grow: %d then %d", first.Generation(), second.Generation())
	}
	if err := second.Check(ctx); err != nil {
		t.Fatalf("Check of the new lease: %v", err)
	}
}

func testStaleReleaseKeepsNewerLease(t *testing.T, env *Env) {
	ctx := context.Background()
	a, b, c := env.Node("a"), env.Node("b"), env.Node("c")
	first := acquire(t, a, "web", "alice")
	if env.DropLease != nil {
		// The first holder still believes it holds the lease when it expires.
		env.DropLease("web")
	} else {
		_ = first.Release(ctx)
	}
	second := acquire(t, b, "web", "bob")
	defer func() { _ = second.Release(ctx) }()
	_ = first.Release(ctx)
	if _, err := c.Acquire(ctx, "web", cluster.Holder{User: "carol", Since: time.Now()}); !errors.Is(err, cluster.ErrBusy) {
		t.Fatalf("a stale Release freed the newer lease: Acquire = %v", err)
	}
	if err := first.Check(ctx); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("stale lease Check = %v, want ErrLeaseLost", err)
	}
	if err := second.Check(ctx); err != nil {
		t.Fatalf("newer lease Check = %v", err)
	}
}

// SPEC H1: status on any node lists every running build, oldest first.
func testBuildsListedAcrossNodes(t *testing.T, env *Env) {
	ctx := context.Background()
	a, b := env.Node("a"), env.Node("b")
	now := time.Now()
	older := start(t, a, cluster.Build{ID: "b1", App: "web", User: "alice", Stage: "queued", Started: now.Add(-2 * time.Second)})
	newer := start(t, b, cluster.Build{ID: "b2", App: "api", User: "bob", Stage: "queued", Started: now.Add(-time.Second)})
	if _, err := a.Start(ctx, cluster.Build{ID: "b1", App: "web"}); err == nil {
		t.Fatal("a second Start with the same build id succeeded")
	}
	older.SetStage(ctx, "compiling")

	for _, n := range []Node{a, b} {
		var bs []cluster.Build
		// The stage may reach other nodes a moment later.
		eventually(t, env, "the new stage listed", func() bool {
			var err error
			bs, err = n.Builds(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return len(bs) > 0 && bs[0].Stage == "compiling"
		})
		if len(bs) != 2 || bs[0].ID != "b1" || bs[1].ID != "b2" {
			t.Fatalf("Builds = %+v, want b1 then b2", bs)
		}
		if bs[0].Stage != "compiling" || bs[0].User != "alice" || bs[0].App != "web" || bs[0].Node == "" {
			t.Fatalf("b1 listed as %+v", bs[0])
		}
		if env.Kill != nil && (bs[0].Node != "a" || bs[1].Node != "b") {
			t.Fatalf("nodes listed as %q, %q; want a, b", bs[0].Node, bs[1].Node)
		}
		if !bs[0].StageSince.After(bs[0].Started) {
			t.Fatalf("stage since %v is not after the start %v", bs[0].StageSince, bs[0].Started)
		}
	}

	older.Finish(ctx, "succeeded")
	newer.Finish(ctx, "failed")
	newer.Finish(ctx, "failed") // twice is harmless
	bs, err := b.Builds(ctx)
	if err != nil || len(bs) != 0 {
		t.Fatalf("Builds after Finish = %+v, %v", bs, err)
	}
}

// SPEC H2: cancel on any node stops the build wherever it runs.
func testCancelReachesRunningNode(t *testing.T, env *Env) {
	ctx := context.Background()
	a, b := env.Node("a"), env.Node("b")
	run := start(t, a, cluster.Build{ID: "b1", App: "web", User: "alice"})
	if _, err := b.Cancel(ctx, "api", "carol"); !errors.Is(err, cluster.ErrNotRunning) {
		t.Fatalf("Cancel of an app with no build = %v, want ErrNotRunning", err)
	}
	var got cluster.Build
	within(t, "Cancel", func() {
		var err error
		got, err = b.Cancel(ctx, "web", "carol")
		if err != nil {
			t.Error(err)
		}
	})
	if got.ID != "b1" || got.App != "web" {
		t.Fatalf("Cancel reached %+v", got)
	}
	select {
	case user := <-run.Cancelled():
		if user != "carol" {
			t.Fatalf("cancelled by %q, want carol", user)
		}
	case <-time.After(guard):
		t.Fatal("the running node never heard the cancel")
	}
	// A second request is accepted but not delivered again; nobody reads the
	// channel, and Cancel must not block on it.
	within(t, "second Cancel", func() {
		if _, err := a.Cancel(ctx, "web", "dave"); err != nil {
			t.Error(err)
		}
	})
	select {
	case user := <-run.Cancelled():
		t.Fatalf("cancel delivered twice (second by %q)", user)
	default:
	}
	run.Finish(ctx, "cancelled")
	if _, err := b.Cancel(ctx, "web", "carol"); !errors.Is(err, cluster.ErrNotRunning) {
		t.Fatalf("Cancel after Finish = %v, want ErrNotRunning", err)
	}
}

// SPEC H3: logs -f on any node replays from the first byte, tails, and ends
// with the result.
func testFollowReplaysAndTails(t *testing.T, env *Env) {
	ctx := context.Background()
	a, b := env.Node("a"), env.Node("b")
	if _, err := b.Follow(ctx, "nope"); !errors.Is(err, cluster.ErrNotRunning) {
		t.Fatalf("Follow of an unknown build = %v, want ErrNotRunning", err)
	}
	run := start(t, a, cluster.Build{ID: "b1", App: "web", User: "alice"})
	early, err := b.Follow(ctx, "b1") // before any output
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = early.Close() }()
	write(t, run, "one\n")
	// Read the first line live, before the build writes more.
	buf := make([]byte, 4)
	within(t, "reading live output", func() {
		if _, err := io.ReadFull(early, buf); err != nil {
			t.Error(err)
		}
	})
	if string(buf) != "one\n" {
		t.Fatalf("live read %q", buf)
	}
	write(t, run, "two\n")
	late, err := b.Follow(ctx, "b1") // after some output: replays it
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = late.Close() }()
	same, err := a.Follow(ctx, "b1") // the running node follows too
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = same.Close() }()
	write(t, run, "three\x1b[1m\r\n")
	// The push's context is often cancelled by the time it finishes; the
	// result must still reach the followers.
	done, cancel := context.WithCancel(ctx)
	cancel()
	run.Finish(done, "succeeded")

	for name, f := range map[string]struct {
		f    cluster.Follower
		want string
	}{
		"early": {early, "two\nthree\x1b[1m\r\n"},
		"late":  {late, "one\ntwo\nthree\x1b[1m\r\n"},
		"same":  {same, "one\ntwo\nthree\x1b[1m\r\n"},
	} {
		got, err := readAll(t, f.f)
		if err != nil || got != f.want {
			t.Fatalf("%s follower read %q, %v; want %q", name, got, err, f.want)
		}
		if res := f.f.Result(); res != "succeeded" {
			t.Fatalf("%s follower Result = %q", name, res)
		}
	}
}

func testFollowFinishedBuild(t *testing.T, env *Env) {
	ctx := context.Background()
	a, b := env.Node("a"), env.Node("b")
	run := start(t, a, cluster.Build{ID: "b1", App: "web", User: "alice"})
	write(t, run, "all of it\n")
	run.Finish(ctx, "failed")
	write(t, run, "after the end\n") // discarded, not an error
	f, err := b.Follow(ctx, "b1")
	if errors.Is(err, cluster.ErrNotRunning) {
		return
	}
	if err != nil {
		t.Fatalf("Follow of a finished build = %v, want ErrNotRunning or its log", err)
	}
	defer func() { _ = f.Close() }()
	got, err := readAll(t, f)
	if err != nil || got != "all of it\n" || f.Result() != "failed" {
		t.Fatalf("finished build's follower read %q, %v, result %q", got, err, f.Result())
	}
}

var skipped = regexp.MustCompile(`\[sokoban: (\d+) bytes of output skipped\]\n`)

// A follower that never reads costs the build nothing; when it reads, it gets
// what was kept and one line per gap saying how much it missed.
func testSlowFollowerNeverBlocksBuild(t *testing.T, env *Env) {
	ctx := context.Background()
	a, b := env.Node("a"), env.Node("b")
	run := start(t, a, cluster.Build{ID: "b1", App: "web", User: "alice"})
	f, err := b.Follow(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var written strings.Builder
	for i := 0; written.Len() < 4*env.LogCap; i++ {
		fmt.Fprintf(&written, "%08d\n", i)
	}
	all := written.String()
	within(t, "writing four times the log cap", func() {
		for rest := all; len(rest) > 0; {
			n := min(len(rest), 1000)
			if _, err := io.WriteString(run.Output(), rest[:n]); err != nil {
				t.Error(err)
				return
			}
			rest = rest[n:]
		}
	})
	run.Finish(ctx, "succeeded")
	got, err := readAll(t, f)
	if err != nil {
		t.Fatal(err)
	}
	// Every byte written is either read, in order, or counted in a skipped line.
	pos, prev := 0, 0
	check := func(data string) {
		if !strings.HasPrefix(all[pos:], data) {
			t.Fatalf("follower read %.40q at offset %d, which holds %.40q", data, pos, all[pos:])
		}
		pos += len(data)
	}
	for _, m := range skipped.FindAllStringSubmatchIndex(got, -1) {
		check(got[prev:m[0]])
		n, _ := strconv.Atoi(got[m[2]:m[3]])
		if n <= 0 || pos+n > len(all) {
			t.Fatalf("skipped %d bytes at offset %d of %d", n, pos, len(all))
		}
		pos += n
		prev = m[1]
	}
	check(got[prev:])
	if pos != len(all) {
		t.Fatalf("read and skipped %d bytes; wrote %d", pos, len(all))
	}
	if len(got) > 2*env.LogCap {
		t.Fatalf("the follower got %d bytes; the log cap is %d", len(got), env.LogCap)
	}
	if f.Result() != "succeeded" {
		t.Fatalf("Result = %q", f.Result())
	}
}

// SPEC F3: a push whose lease was taken over learns it through Lost.
func testLostWhenLeaseTakenOver(t *testing.T, env *Env) {
	ctx := context.Background()
	a, b := env.Node("a"), env.Node("b")
	l := acquire(t, a, "web", "alice")
	env.DropLease("web")
	newer := acquire(t, b, "web", "bob")
	defer func() { _ = newer.Release(ctx) }()
	waitClosed(t, env, "Lost after the lease was taken over", l.Lost())
	if err := l.Check(ctx); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("Check = %v, want ErrLeaseLost", err)
	}
}

// SPEC F3: a running push whose lease can't be renewed is cancelled.
func testLostWhenBackendStops(t *testing.T, env *Env) {
	ctx := context.Background()
	a := env.Node("a")
	l := acquire(t, a, "web", "alice")
	env.StopBackend()
	waitClosed(t, env, "Lost after the backend stopped", l.Lost())
	if err := l.Check(ctx); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("Check = %v, want ErrLeaseLost", err)
	}
	within(t, "Release with the backend down", func() { _ = l.Release(ctx) })
}

// SPEC F3: with the backend down a new push is refused with "coordination
// unavailable", not left hanging.
func testAcquireUnavailable(t *testing.T, env *Env) {
	ctx := context.Background()
	a := env.Node("a")
	env.StopBackend()
	var err error
	within(t, "Acquire with the backend down", func() {
		_, err = a.Acquire(ctx, "web", cluster.Holder{User: "alice", Since: time.Now()})
	})
	if !errors.Is(err, cluster.ErrUnavailable) || !strings.Contains(err.Error(), "coordination unavailable") {
		t.Fatalf("Acquire = %v, want ErrUnavailable", err)
	}
	within(t, "Builds with the backend down", func() { _, err = a.Builds(ctx) })
	if !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("Builds = %v, want ErrUnavailable", err)
	}
	within(t, "Start with the backend down", func() {
		_, err = a.Start(ctx, cluster.Build{ID: "b1", App: "web", User: "alice"})
	})
	if !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("Start = %v, want ErrUnavailable", err)
	}
}

// SPEC F7: a node that dies leaves nothing a TTL does not clean up: its builds
// leave status, its followers end, its leases can be taken.
func testDeadNodeDisappears(t *testing.T, env *Env) {
	ctx := context.Background()
	a, b := env.Node("a"), env.Node("b")
	acquire(t, a, "web", "alice")
	run := start(t, a, cluster.Build{ID: "b1", App: "web", User: "alice"})
	write(t, run, "last words\n")
	f, err := b.Follow(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	got := make([]byte, len("last words\n"))
	within(t, "reading output", func() {
		if _, err := io.ReadFull(f, got); err != nil {
			t.Error(err)
		}
	})
	env.Kill("a")

	eventually(t, env, "the dead node's build leaving Builds", func() bool {
		bs, err := b.Builds(ctx)
		return err == nil && len(bs) == 0
	})
	var rerr error
	within(t, "the follower of a dead node's build", func() { _, rerr = io.ReadAll(f) })
	if !errors.Is(rerr, cluster.ErrBuildLost) {
		t.Fatalf("follower ended with %v, want ErrBuildLost", rerr)
	}
	var l cluster.Lease
	eventually(t, env, "the dead node's lease expiring", func() bool {
		l, err = b.Acquire(ctx, "web", cluster.Holder{User: "bob", Since: time.Now()})
		return err == nil
	})
	_ = l.Release(ctx)
	if _, err := b.Cancel(ctx, "web", "bob"); !errors.Is(err, cluster.ErrNotRunning) {
		t.Fatalf("Cancel of a dead node's build = %v, want ErrNotRunning", err)
	}
}
