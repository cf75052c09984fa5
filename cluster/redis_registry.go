package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// maxEntry is the largest piece of output in one stream entry.
	maxEntry = 64 << 10
	// maxFlush is the most output one pipelined write sends.
	maxFlush = 1 << 20
	// coalesceDelay lets line-by-line output gather into one stream entry.
	coalesceDelay = 20 * time.Millisecond
)

// pollInterval is how long a follower blocks on the stream before it checks
// that the build's node is still alive, and how quickly Close stops it.
func (r *Redis) pollInterval() time.Duration {
	return max(min(r.cfg.LeaseTTL/3, 2*time.Second), 10*time.Millisecond)
}

// Start announces b (Node, Started and StageSince filled in when empty),
// subscribes to its cancel channel, and heartbeats it every TTL/3 until Finish.
func (r *Redis) Start(ctx context.Context, b Build) (Running, error) {
	b, err := checkBuild(b, r.cfg.Node, time.Now())
	if err != nil {
		return nil, err
	}
	js, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("cluster: start %s: %w", b.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()

	var added *redis.BoolCmd
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		added = p.SetNX(ctx, keyBuild+b.ID, js, r.cfg.LeaseTTL)
		p.ZAdd(ctx, keyBuildIndex, redis.Z{Score: float64(b.Started.UnixMilli()), Member: b.ID})
		return nil
	})
	if err != nil {
		return nil, unavailable("start "+b.ID, err)
	}
	if !added.Val() {
		return nil, fmt.Errorf("cluster: start: build %s is already running", b.ID)
	}
	// Subscribe before returning, so a Cancel right after Start is heard.
	ps := r.rdb.Subscribe(ctx, keyCancel+b.ID)
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		r.unregister(b.ID)
		return nil, unavailable("start "+b.ID+": subscribe", err)
	}

	run := &redisRunning{
		r: r, build: b, ps: ps,
		cancelled: make(chan string, 1),
		wake:      make(chan struct{}, 1),
		staged:    make(chan struct{}, 1),
		stop:      make(chan struct{}),
		hbDone:    make(chan struct{}),
		wrDone:    make(chan struct{}),
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = ps.Close()
		r.unregister(b.ID)
		return nil, fmt.Errorf("cluster: start %s: %w", b.ID, ErrClosed)
	}
	r.builds[b.ID] = run
	r.wg.Add(2)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		run.heartbeatLoop()
	}()
	go func() {
		defer r.wg.Done()
		run.writeLoop()
	}()
	return run, nil
}

// unregister removes a build that never started, best effort.
func (r *Redis) unregister(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, _ = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, keyBuild+id)
		p.ZRem(ctx, keyBuildIndex, id)
		return nil
	})
}

// Builds lists the running builds of every live node, oldest first.
func (r *Redis) Builds(ctx context.Context) ([]Build, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	vals, err := r.scripts.listBuilds.Run(ctx, r.rdb, []string{keyBuildIndex}, keyBuild).StringSlice()
	if err != nil {
		return nil, unavailable("list builds", err)
	}
	out := make([]Build, 0, len(vals))
	for _, v := range vals {
		var b Build
		if err := json.Unmarshal([]byte(v), &b); err != nil {
			r.log.Warn("cluster: skipping unreadable build entry", "err", err)
			continue
		}
		out = append(out, b)
	}
	sortBuilds(out)
	return out, nil
}

// Cancel reaches app's running build (the newest, should there be several)
// on whichever node runs it.
func (r *Redis) Cancel(ctx context.Context, app, user string) (Build, error) {
	builds, err := r.Builds(ctx)
	if err != nil {
		return Build{}, fmt.Errorf("cluster: cancel %s: %w", app, err)
	}
	var found *Build
	for i := range builds {
		if builds[i].App == app {
			found = &builds[i] // oldest first: the last match is the newest
		}
	}
	if found == nil {
		return Build{}, fmt.Errorf("cluster: cancel %s: %w", app, ErrNotRunning)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	// The key covers a node whose subscription was reconnecting when the
	// message went out: it reads the key at its next heartbeat.
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SetNX(ctx, keyCancel+found.ID, user, r.cfg.LeaseTTL)
		p.Publish(ctx, keyCancel+found.ID, user)
		return nil
	})
	if err != nil {
		return Build{}, unavailable("cancel "+app, err)
	}
	return *found, nil
}

// Follow replays buildID's output from its first kept byte and tails it until
// the final entry (io.EOF, then Result), or ErrBuildLost if the build's node
// stops heartbeating first. A build finished less than LogRetention ago is
// replayed to its end. ctx bounds the whole stream; Close the follower.
func (r *Redis) Follow(ctx context.Context, buildID string) (Follower, error) {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	n, err := r.rdb.Exists(cctx, keyBuild+buildID, keyLog+buildID).Result()
	if err != nil {
		return nil, unavailable("follow "+buildID, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("cluster: follow %s: %w", buildID, ErrNotRunning)
	}
	fctx, stop := context.WithCancel(ctx)
	return &redisFollower{r: r, id: buildID, ctx: fctx, stop: stop, last: "0"}, nil
}

type redisRunning struct {
	r          *Redis
	ps         *redis.PubSub
	cancelled  chan string
	cancelOnce sync.Once

	mu        sync.Mutex
	build     Build
	finished  bool   // no more output is accepted
	pend      []byte // output not yet in Redis: bytes [pendStart, pendStart+len(pend))
	pendStart int64
	resync    bool // a write failed: ask the stream what it has before sending more

	wake     chan struct{} // output queued (capacity 1)
	staged   chan struct{} // stage changed (capacity 1)
	stop     chan struct{} // closed to end the heartbeat and the writer
	stopOnce sync.Once
	hbDone   chan struct{}
	wrDone   chan struct{}

	hbFailing bool // the last heartbeat failed; only the heartbeat touches it

	finishOnce sync.Once
}

func (w *redisRunning) id() string { return w.build.ID } // immutable after Start

func (w *redisRunning) Cancelled() <-chan string { return w.cancelled }
func (w *redisRunning) Output() io.Writer        { return (*redisOutput)(w) }

func (w *redisRunning) deliverCancel(user string) {
	w.cancelOnce.Do(func() { w.cancelled <- user })
}

// SetStage records the stage at once and has the heartbeat publish it, so the
// build never waits on Redis.
func (w *redisRunning) SetStage(_ context.Context, stage string) {
	w.mu.Lock()
	w.build.Stage = stage
	w.build.StageSince = time.Now()
	w.mu.Unlock()
	select {
	case w.staged <- struct{}{}:
	default:
	}
}

// heartbeatLoop keeps the build listed and hears cancel requests. It is the
// only writer of the build key and ends before Finish deletes it, so a
// finished build is never re-listed.
func (w *redisRunning) heartbeatLoop() {
	defer close(w.hbDone)
	msgs := w.ps.Channel()
	ttl := w.r.cfg.LeaseTTL
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			w.deliverCancel(m.Payload)
		case <-tick.C:
			w.beat(ttl)
		case <-w.staged:
			w.beat(ttl)
		}
	}
}

func (w *redisRunning) beat(ttl time.Duration) {
	ctx, cancel := context.WithTimeout(w.r.bg, min(opTimeout, ttl/3))
	defer cancel()
	id := w.id()
	var canceller *redis.StringCmd
	w.mu.Lock()
	js, err := json.Marshal(w.build)
	w.mu.Unlock()
	if err != nil {
		w.r.log.Error("cluster: encode build", "build", id, "err", err)
		return
	}
	// Plain SET and ZADD: re-create the entry if it expired while Redis was
	// unreachable.
	_, err = w.r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keyBuild+id, js, ttl)
		p.ZAdd(ctx, keyBuildIndex, redis.Z{Score: float64(w.build.Started.UnixMilli()), Member: id})
		p.PExpire(ctx, keyLog+id, w.r.cfg.LogRetention)
		canceller = p.Get(ctx, keyCancel+id)
		return nil
	})
	if user, gerr := canceller.Result(); gerr == nil {
		w.deliverCancel(user)
	}
	switch {
	case err != nil && !errors.Is(err, redis.Nil):
		// Once per outage at Warn; the retries would flood the log.
		level := slog.LevelDebug
		if !w.hbFailing {
			level, w.hbFailing = slog.LevelWarn, true
		}
		w.r.log.Log(ctx, level, "cluster: build heartbeat failed", "build", id, "err", err)
	case w.hbFailing:
		w.hbFailing = false
		w.r.log.Info("cluster: build heartbeat working again", "build", id)
	}
}

// redisOutput is Running.Output: Write only queues in memory.
type redisOutput redisRunning

// Write never blocks on Redis: it queues p for the writer. Beyond LogCap the
// oldest queued bytes are dropped (followers are told how many).
func (o *redisOutput) Write(p []byte) (int, error) {
	w := (*redisRunning)(o)
	w.mu.Lock()
	if w.finished || len(p) == 0 {
		w.mu.Unlock()
		return len(p), nil
	}
	w.pend = append(w.pend, p...)
	if over := len(w.pend) - w.r.cfg.LogCap; over > 0 {
		w.pend = w.pend[over:]
		w.pendStart += int64(over)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// writeLoop moves queued output to the stream, coalescing small writes and
// retrying while Redis is unreachable. Finish sends what is left.
func (w *redisRunning) writeLoop() {
	defer close(w.wrDone)
	retry := max(min(w.r.cfg.LeaseTTL/3, time.Second), 10*time.Millisecond)
	linger := time.NewTimer(coalesceDelay)
	linger.Stop()
	defer linger.Stop()
	failing := false
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		linger.Reset(coalesceDelay)
		select {
		case <-w.stop:
			return
		case <-linger.C:
		}
		for {
			more, err := w.flush(w.r.bg)
			if err != nil {
				// Once per outage at Warn; the retries would flood the log.
				level := slog.LevelDebug
				if !failing {
					level, failing = slog.LevelWarn, true
				}
				w.r.log.Log(w.r.bg, level, "cluster: write build output, retrying", "build", w.id(), "err", err)
				linger.Reset(retry)
				select {
				case <-w.stop:
					return
				case <-linger.C:
				}
				continue
			}
			if failing {
				w.r.log.Info("cluster: build output flowing again", "build", w.id())
				failing = false
			}
			if !more {
				break
			}
		}
	}
}

// flush sends up to maxFlush queued bytes; more says whether some are left.
// Entry ids are the byte offset where each piece ends, so a piece written
// twice (a retry after a lost reply) is refused by Redis instead of doubled,
// and followers can tell how many bytes were dropped.
func (w *redisRunning) flush(ctx context.Context) (more bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	id := w.id()
	w.mu.Lock()
	resync := w.resync
	w.mu.Unlock()
	if resync {
		last, err := w.r.rdb.XRevRangeN(ctx, keyLog+id, "+", "-", 1).Result()
		if err != nil {
			return false, unavailable("read stream end", err)
		}
		if len(last) > 0 {
			if end, ok := entryEnd(last[0].ID); ok {
				w.ack(end)
			}
		}
		w.mu.Lock()
		w.resync = false
		w.mu.Unlock()
	}

	w.mu.Lock()
	start := w.pendStart
	n := min(len(w.pend), maxFlush)
	data := append([]byte(nil), w.pend[:n]...)
	more = len(w.pend) > n
	w.mu.Unlock()
	if n == 0 {
		return false, nil
	}
	pipe := w.r.rdb.Pipeline()
	for off := 0; off < n; off += maxEntry {
		piece := data[off:min(off+maxEntry, n)]
		pipe.XAdd(ctx, w.xaddArgs(start+int64(off+len(piece)), "d", piece))
	}
	pipe.PExpire(ctx, keyLog+id, w.r.cfg.LogRetention)
	cmds, _ := pipe.Exec(ctx)
	for _, c := range cmds {
		if err := c.Err(); err != nil && !isStaleID(err) {
			w.mu.Lock()
			w.resync = true
			w.mu.Unlock()
			return false, unavailable("append output", err)
		}
	}
	w.ack(start + int64(n))
	return more, nil
}

// xaddArgs adds one entry with id 0-end, trimming what is more than LogCap
// bytes behind it.
func (w *redisRunning) xaddArgs(end int64, field string, value any) *redis.XAddArgs {
	a := &redis.XAddArgs{Stream: keyLog + w.id(), ID: "0-" + strconv.FormatInt(end, 10), Values: []any{field, value}}
	if floor := end - int64(w.r.cfg.LogCap); floor > 0 {
		a.MinID, a.Approx = "0-"+strconv.FormatInt(floor, 10), true
	}
	return a
}

// ack forgets queued output up to offset end, which Redis has.
func (w *redisRunning) ack(end int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cut := end - w.pendStart; cut > 0 {
		cut = min(cut, int64(len(w.pend)))
		w.pend = w.pend[cut:]
		w.pendStart += cut
	}
	if len(w.pend) == 0 {
		w.pend = nil // let a burst's buffer go
	}
}

func isStaleID(err error) bool {
	return strings.Contains(err.Error(), "equal or smaller than the target stream top item")
}

// entryEnd parses a stream entry id 0-END.
func entryEnd(id string) (int64, bool) {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok || ms != "0" {
		return 0, false
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	return n, err == nil
}

func (w *redisRunning) halt() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.hbDone
	<-w.wrDone
}

// abandon stops the build's background work without telling Redis (Close):
// its entry expires within the TTL and followers end with ErrBuildLost.
func (w *redisRunning) abandon() {
	w.mu.Lock()
	w.finished = true
	w.mu.Unlock()
	w.halt()
	_ = w.ps.Close()
}

// Finish sends the output still queued, appends the final entry, and removes
// the build. ctx's cancellation is ignored (a cancelled push still records its
// result); each Redis call is bounded by its own timeout.
func (w *redisRunning) Finish(ctx context.Context, result string) {
	ctx = context.WithoutCancel(ctx)
	w.finishOnce.Do(func() {
		r := w.r
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return
		}
		r.wg.Add(1)
		delete(r.builds, w.id())
		r.mu.Unlock()
		defer r.wg.Done()

		w.mu.Lock()
		w.finished = true
		w.mu.Unlock()
		w.halt()
		defer func() { _ = w.ps.Close() }()

		// The writer has been retrying already: one failure here means Redis
		// is down, and the final entry gets one try of its own.
		for {
			more, err := w.flush(ctx)
			if err != nil {
				r.log.Warn("cluster: write build output", "build", w.id(), "err", err)
				break
			}
			if !more {
				break
			}
		}
		w.mu.Lock()
		end := w.pendStart + int64(len(w.pend))
		w.mu.Unlock()

		id := w.id()
		fctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		// One transaction: a follower that sees the build key gone finds the
		// final entry already there. Its id is one past the output's end, so a
		// follower learns about output that never reached Redis.
		_, err := r.rdb.TxPipelined(fctx, func(p redis.Pipeliner) error {
			p.XAdd(fctx, w.xaddArgs(end+1, "r", result))
			p.PExpire(fctx, keyLog+id, r.cfg.LogRetention)
			p.Del(fctx, keyBuild+id, keyCancel+id)
			p.ZRem(fctx, keyBuildIndex, id)
			return nil
		})
		if err != nil {
			r.log.Warn("cluster: record build result", "build", id, "result", result, "err", err)
		}
	})
}

type redisFollower struct {
	r    *Redis
	id   string
	ctx  context.Context
	stop context.CancelFunc

	last   string // stream id read up to
	pos    int64  // byte offset read up to
	buf    []byte // read from Redis, not yet returned
	done   bool
	result string
	err    error // sticky end (ErrBuildLost)
	closed atomic.Bool
}

func (f *redisFollower) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if f.closed.Load() {
			return 0, ErrClosed
		}
		if len(f.buf) > 0 {
			n := copy(p, f.buf)
			f.buf = f.buf[n:]
			return n, nil
		}
		if f.done {
			return 0, io.EOF
		}
		if f.err != nil {
			return 0, f.err
		}
		if err := f.fetch(); err != nil {
			return 0, err
		}
	}
}

// fetch reads the next entries, blocking up to the poll interval; when none
// came and the build key is gone, the build either finished (its final entry
// is there) or its node died.
func (f *redisFollower) fetch() error {
	block := f.r.pollInterval()
	ctx, cancel := context.WithTimeout(f.ctx, block+opTimeout)
	defer cancel()
	key := keyLog + f.id
	streams, err := f.r.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, f.last}, Count: 32, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		var alive int64
		alive, err = f.r.rdb.Exists(ctx, keyBuild+f.id).Result()
		if err == nil && alive == 1 {
			return nil
		}
		if err == nil {
			streams, err = f.r.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, f.last}, Count: 32, Block: -1}).Result()
			if errors.Is(err, redis.Nil) {
				f.err = fmt.Errorf("cluster: follow %s: %w", f.id, ErrBuildLost)
				return f.err
			}
		}
	}
	if err != nil {
		if f.closed.Load() {
			return ErrClosed
		}
		if cerr := f.ctx.Err(); cerr != nil {
			return cerr
		}
		return unavailable("follow "+f.id, err)
	}
	for _, s := range streams {
		for _, m := range s.Messages {
			f.last = m.ID
			end, ok := entryEnd(m.ID)
			if !ok {
				continue
			}
			if res, ok := m.Values["r"].(string); ok {
				if end-1 > f.pos {
					f.buf = append(f.buf, skippedLine(end-1-f.pos)...)
				}
				f.done, f.result = true, res
				continue
			}
			d, _ := m.Values["d"].(string)
			if start := end - int64(len(d)); start > f.pos {
				f.buf = append(f.buf, skippedLine(start-f.pos)...)
			}
			f.buf = append(f.buf, d...)
			f.pos = end
		}
	}
	return nil
}

func (f *redisFollower) Result() string { return f.result }

// Close ends the stream; a Read in progress returns within the poll interval.
func (f *redisFollower) Close() error {
	f.closed.Store(true)
	f.stop()
	return nil
}
