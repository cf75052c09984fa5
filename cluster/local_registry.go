package cluster

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// DefaultLogCap is how many bytes of a build's output are kept for followers.
// A follower that falls further behind (or joins a longer build late) skips the
// oldest bytes and is told so in one line; the full log is stowed by the receiver.
const DefaultLogCap = 16 << 20

// skippedLine is the line a follower reads in place of output it can no longer
// get; Local and Redis use the same text.
func skippedLine(n int64) []byte {
	return fmt.Appendf(nil, "[sokoban: %d bytes of output skipped]\n", n)
}

// checkBuild validates b and fills in what the registry knows (node, times).
func checkBuild(b Build, node string, now time.Time) (Build, error) {
	if b.ID == "" || b.App == "" {
		return b, fmt.Errorf("cluster: start: build needs an id and an app (got id %q, app %q)", b.ID, b.App)
	}
	if b.Node == "" {
		b.Node = node
	}
	if b.Started.IsZero() {
		b.Started = now
	}
	if b.StageSince.IsZero() {
		b.StageSince = b.Started
	}
	return b, nil
}

// sortBuilds orders builds oldest first (ties by id, so the order is stable).
func sortBuilds(bs []Build) {
	slices.SortFunc(bs, func(a, b Build) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// LocalRegistry is the in-process Registry of the embedded default: one node,
// output kept in memory.
type LocalRegistry struct {
	// LogCap is how many bytes of each build's output are kept for followers
	// (DefaultLogCap when zero). Set it before the first Start.
	LogCap int

	node   string
	mu     sync.Mutex
	builds map[string]*localRunning // by build id
}

var _ Registry = (*LocalRegistry)(nil)

// NewLocalRegistry returns an empty registry whose builds run on node.
func NewLocalRegistry(node string) *LocalRegistry {
	return &LocalRegistry{node: node, builds: map[string]*localRunning{}}
}

// Start announces b; Node, Started and StageSince are filled in when empty.
func (r *LocalRegistry) Start(_ context.Context, b Build) (Running, error) {
	b, err := checkBuild(b, r.node, time.Now())
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.builds[b.ID]; ok {
		return nil, fmt.Errorf("cluster: start: build %s is already running", b.ID)
	}
	logCap := r.LogCap
	if logCap <= 0 {
		logCap = DefaultLogCap
	}
	run := &localRunning{
		reg:       r,
		build:     b,
		cancelled: make(chan string, 1),
		log:       &memLog{limit: logCap},
	}
	r.builds[b.ID] = run
	return run, nil
}

// Builds lists the running builds, oldest first.
func (r *LocalRegistry) Builds(context.Context) ([]Build, error) {
	r.mu.Lock()
	out := make([]Build, 0, len(r.builds))
	for _, run := range r.builds {
		out = append(out, run.build)
	}
	r.mu.Unlock()
	sortBuilds(out)
	return out, nil
}

// Cancel asks app's running build (the newest, should there be several) to
// cancel on behalf of user. Only the first request is delivered.
func (r *LocalRegistry) Cancel(_ context.Context, app, user string) (Build, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found *localRunning
	for _, run := range r.builds {
		if run.build.App == app && (found == nil || found.build.Started.Before(run.build.Started)) {
			found = run
		}
	}
	if found == nil {
		return Build{}, fmt.Errorf("cluster: cancel %s: %w", app, ErrNotRunning)
	}
	found.cancelOnce.Do(func() { found.cancelled <- user })
	return found.build, nil
}

// Follow replays buildID's output from its first kept byte and tails it. ctx
// bounds the whole stream, not just this call.
func (r *LocalRegistry) Follow(ctx context.Context, buildID string) (Follower, error) {
	r.mu.Lock()
	run, ok := r.builds[buildID]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("cluster: follow %s: %w", buildID, ErrNotRunning)
	}
	return &memFollower{log: run.log, ctx: ctx, closed: make(chan struct{})}, nil
}

type localRunning struct {
	reg        *LocalRegistry
	build      Build // guarded by reg.mu
	cancelled  chan string
	cancelOnce sync.Once
	log        *memLog
	finishOnce sync.Once
}

func (l *localRunning) SetStage(_ context.Context, stage string) {
	l.reg.mu.Lock()
	defer l.reg.mu.Unlock()
	l.build.Stage = stage
	l.build.StageSince = time.Now()
}

func (l *localRunning) Cancelled() <-chan string { return l.cancelled }
func (l *localRunning) Output() io.Writer        { return l.log }

func (l *localRunning) Finish(_ context.Context, result string) {
	l.finishOnce.Do(func() {
		l.reg.mu.Lock()
		delete(l.reg.builds, l.build.ID)
		l.reg.mu.Unlock()
		l.log.finish(result)
	})
}

// memLog keeps the last limit bytes of a build's output. Writers only append
// under a short lock; followers keep their own offset and wait on wake, so a
// slow follower costs the build nothing.
type memLog struct {
	limit int

	mu     sync.Mutex
	buf    []byte
	base   int64 // absolute offset of buf[0]; bytes before it were dropped
	done   bool
	result string
	wake   chan struct{} // closed at the next change; nil while nobody waits
}

// Write never blocks on followers and never fails; output written after
// Finish is discarded.
func (m *memLog) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done || len(p) == 0 {
		return len(p), nil
	}
	m.buf = append(m.buf, p...)
	if len(m.buf) > m.limit {
		// Drop a quarter more than needed so a steady stream does not move the
		// whole buffer on every write.
		drop := min(len(m.buf)-m.limit+m.limit/4, len(m.buf))
		m.buf = append(m.buf[:0], m.buf[drop:]...)
		m.base += int64(drop)
	}
	m.notify()
	return len(p), nil
}

func (m *memLog) finish(result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done, m.result = true, result
	m.notify()
}

// notify wakes every waiting follower; m.mu is held.
func (m *memLog) notify() {
	if m.wake != nil {
		close(m.wake)
		m.wake = nil
	}
}

type memFollower struct {
	log       *memLog
	ctx       context.Context
	pos       int64  // absolute offset of the next byte to read
	pending   []byte // a skipped-output line not yet read
	closed    chan struct{}
	closeOnce sync.Once
}

func (f *memFollower) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		select {
		case <-f.closed:
			return 0, ErrClosed
		default:
		}
		if len(f.pending) > 0 {
			n := copy(p, f.pending)
			f.pending = f.pending[n:]
			return n, nil
		}
		m := f.log
		m.mu.Lock()
		if f.pos < m.base {
			f.pending = skippedLine(m.base - f.pos)
			f.pos = m.base
			m.mu.Unlock()
			continue
		}
		if avail := m.buf[f.pos-m.base:]; len(avail) > 0 {
			n := copy(p, avail)
			f.pos += int64(n)
			m.mu.Unlock()
			return n, nil
		}
		if m.done {
			m.mu.Unlock()
			return 0, io.EOF
		}
		if m.wake == nil {
			m.wake = make(chan struct{})
		}
		wake := m.wake
		m.mu.Unlock()
		select {
		case <-wake:
		case <-f.closed:
			return 0, ErrClosed
		case <-f.ctx.Done():
			return 0, f.ctx.Err()
		}
	}
}

func (f *memFollower) Result() string {
	f.log.mu.Lock()
	defer f.log.mu.Unlock()
	return f.log.result
}

func (f *memFollower) Close() error {
	f.closeOnce.Do(func() { close(f.closed) })
	return nil
}
