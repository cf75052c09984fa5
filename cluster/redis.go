package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis keys. Everything lives under "sokoban:" and carries a TTL except the
// generation counters, which must outlive every lease they fence:
//
//	sokoban:lease:APP       string, PX lease TTL: JSON {token, holder} of APP's lease holder
//	sokoban:gen:APP         integer, no TTL: APP's fencing generation (INCR at every grant,
//	                        raised to Redis' clock in ms if below it)
//	sokoban:build:ID        string, PX lease TTL: JSON Build, re-set every TTL/3 by its node
//	sokoban:builds          sorted set of running build ids scored by start (ms); members
//	                        whose sokoban:build:ID expired are pruned when listed
//	sokoban:cancel:ID       pub/sub channel the node running build ID listens on, and a
//	                        string (PX lease TTL) holding the canceller, read at every
//	                        heartbeat in case the message was missed
//	sokoban:log:ID          stream of build ID's output: entries {d: bytes} whose id is
//	                        0-<end offset in bytes>, then one {r: result}; trimmed by
//	                        MINID to the last LogCap bytes; expires LogRetention after the
//	                        last write or heartbeat
//
// MINID trimming needs Redis 6.2 or later. All keys of one app or build are
// touched by one node at a time; the scripts use keys they are not passed,
// so a Redis Cluster is not supported (a single primary, or Sentinel, is).
const (
	keyPrefix     = "sokoban:"
	keyLease      = keyPrefix + "lease:"
	keyGen        = keyPrefix + "gen:"
	keyBuild      = keyPrefix + "build:"
	keyBuildIndex = keyPrefix + "builds"
	keyCancel     = keyPrefix + "cancel:"
	keyLog        = keyPrefix + "log:"
)

// Defaults of RedisConfig.
const (
	DefaultLeaseTTL     = 30 * time.Second
	DefaultLogRetention = 5 * time.Minute
)

// opTimeout bounds every single Redis call, so an unreachable Redis turns into
// ErrUnavailable within seconds instead of a hang.
const opTimeout = 5 * time.Second

// RedisConfig configures NewRedis.
type RedisConfig struct {
	// URL is redis://[user:password@]host:port[/db] or rediss:// for TLS.
	URL string
	// Node is this node's name, shown in lease holders and builds.
	Node string
	// LeaseTTL is how long a lease or a build's heartbeat lasts without
	// renewal; both are renewed every LeaseTTL/3 (DefaultLeaseTTL when zero).
	LeaseTTL time.Duration
	// LogRetention is how long a finished build's live log stays readable for
	// late followers (DefaultLogRetention when zero).
	LogRetention time.Duration
	// LogCap is how many bytes of a build's output followers can replay, and
	// how many may queue in memory while Redis is slow (DefaultLogCap when zero).
	LogCap int
	// Logger receives failures of background work (renewals, heartbeats, log
	// writes); nil discards them.
	Logger *slog.Logger
}

// Redis is the cluster-mode Leaser and Registry: every node sharing one Redis
// sees the same leases, builds, cancel requests and live logs. Close it when
// done.
type Redis struct {
	cfg     RedisConfig
	rdb     *redis.Client
	log     *slog.Logger
	scripts scripts

	// bg is the context of background work; cancelled by Close.
	bg     context.Context
	stopBg context.CancelFunc

	mu     sync.Mutex
	closed bool
	leases map[*redisLease]struct{}
	builds map[string]*redisRunning
	wg     sync.WaitGroup
}

var (
	_ Leaser   = (*Redis)(nil)
	_ Registry = (*Redis)(nil)
)

// NewRedis returns a Redis backend for cfg. It does not connect yet (see
// Ping): a Redis that is down makes the calls fail with ErrUnavailable.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if cfg.Node == "" {
		return nil, errors.New("cluster: redis: node name is empty")
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.LeaseTTL < 30*time.Millisecond {
		return nil, fmt.Errorf("cluster: redis: lease TTL %s is too short", cfg.LeaseTTL)
	}
	if cfg.LogRetention <= 0 {
		cfg.LogRetention = DefaultLogRetention
	}
	if cfg.LogCap <= 0 {
		cfg.LogCap = DefaultLogCap
	}
	if !strings.HasPrefix(cfg.URL, "redis://") && !strings.HasPrefix(cfg.URL, "rediss://") {
		return nil, errors.New("cluster: redis: URL must start with redis:// or rediss://")
	}
	opt, err := redis.ParseURL(cfg.URL)
	if err != nil {
		// The parse error may echo the URL and so the password: keep it out.
		return nil, errors.New("cluster: redis: malformed URL")
	}
	// Timeouts given in the URL's query win; otherwise a few seconds each.
	if opt.DialTimeout == 0 {
		opt.DialTimeout = 2 * time.Second
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = 3 * time.Second
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = 3 * time.Second
	}
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = 1
	opt.ClientName = "sokoban-" + strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return '_'
		}
		return r
	}, cfg.Node)
	// Maintenance notifications are for managed clusters that announce
	// failovers; plain Redis answers the probe with an error on every connect.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bg, stop := context.WithCancel(context.Background())
	return &Redis{
		cfg:     cfg,
		rdb:     redis.NewClient(opt),
		log:     logger.With("component", "cluster", "node", cfg.Node),
		scripts: newScripts(),
		bg:      bg,
		stopBg:  stop,
		leases:  map[*redisLease]struct{}{},
		builds:  map[string]*redisRunning{},
	}, nil
}

// Ping checks that Redis answers (for a readiness check at startup).
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := r.rdb.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close stops all background work and closes the connections. It does not
// finish builds or release leases: Finish and Release first for a clean
// shutdown; what is left expires within the lease TTL, as if the node died.
// Held leases' Lost channels are closed.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	leases := r.leases
	builds := r.builds
	r.leases, r.builds = nil, nil
	r.mu.Unlock()

	r.stopBg()
	for l := range leases {
		l.stopRenewal(ErrClosed)
	}
	for _, b := range builds {
		b.abandon()
	}
	r.wg.Wait()
	if err := r.rdb.Close(); err != nil {
		return fmt.Errorf("cluster: redis: close: %w", err)
	}
	return nil
}

// unavailable wraps a Redis failure so callers can match ErrUnavailable (the
// pusher sees "coordination unavailable") and the log keeps the cause.
func unavailable(op string, err error) error {
	if errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("cluster: redis: %s: %w", op, ErrClosed)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("cluster: redis: %s: %w", op, err)
	}
	return fmt.Errorf("cluster: redis: %s: %w: %w", op, ErrUnavailable, err)
}

// scripts are the Lua scripts that make compare-and-act steps atomic.
type scripts struct {
	acquire, refresh, release, check, listBuilds *redis.Script
}

func newScripts() scripts {
	return scripts{
		// KEYS lease, gen; ARGV value, ttl ms. Grants the lease and returns the
		// new generation (an integer), or returns the holder's value (a string).
		// The generation never falls below Redis' clock in ms, so it keeps
		// growing even if Redis lost the counter (a restart without persistence)
		// and fenced writes stored elsewhere stay comparable.
		acquire: redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local g = redis.call('INCR', KEYS[2])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if g < now then g = redis.call('INCRBY', KEYS[2], now - g) end
  return g
end
return redis.call('GET', KEYS[1])`),
		// KEYS lease; ARGV value, ttl ms.
		refresh: redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`),
		// KEYS lease; ARGV value.
		release: redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`),
		// KEYS lease, gen; ARGV value, generation. 1 held and newest, 0 not held,
		// -1 a newer generation exists.
		check: redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[2])) ~= tonumber(ARGV[2]) then return -1 end
return 1`),
		// KEYS index; ARGV build key prefix. Returns the live builds' JSON
		// oldest first, pruning index members whose build key expired.
		listBuilds: redis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then out[#out + 1] = v else redis.call('ZREM', KEYS[1], id) end
end
return out`),
	}
}
