package cluster_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sokoban-deploy/sokoban/cluster"
	"github.com/sokoban-deploy/sokoban/cluster/clustertest"
)

const testLogCap = 256 << 10

// localNode is the embedded default: one process is the whole cluster.
type localNode struct {
	*cluster.Local
	*cluster.LocalRegistry
}

func TestLocalConformance(t *testing.T) {
	clustertest.Run(t, clustertest.Backend{
		New: func(t *testing.T) *clustertest.Env {
			reg := cluster.NewLocalRegistry("local")
			reg.LogCap = testLogCap
			n := localNode{cluster.NewLocal(), reg}
			return &clustertest.Env{
				Node:   func(string) clustertest.Node { return n },
				TTL:    time.Second,
				LogCap: testLogCap,
			}
		},
	})
}

func TestRedisConformance(t *testing.T) {
	clustertest.Run(t, clustertest.Backend{Distributed: true, New: newRedisEnv})
}

// newRedisEnv starts a redis-server for t; each node is a cluster.Redis on it,
// as separate processes would be.
func newRedisEnv(t *testing.T) *clustertest.Env {
	srv := clustertest.StartRedis(t)
	const ttl = time.Second
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = raw.Close() })
	var mu sync.Mutex
	nodes := map[string]*cluster.Redis{}
	return &clustertest.Env{
		TTL:    ttl,
		LogCap: testLogCap,
		Node: func(name string) clustertest.Node {
			mu.Lock()
			defer mu.Unlock()
			if n, ok := nodes[name]; ok {
				return n
			}
			n, err := cluster.NewRedis(cluster.RedisConfig{
				URL: srv.URL, Node: name, LeaseTTL: ttl, LogCap: testLogCap, LogRetention: time.Minute,
				Logger: testLogger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := n.Close(); err != nil {
					t.Errorf("close node %s: %v", name, err)
				}
			})
			nodes[name] = n
			return n
		},
		Kill: func(name string) {
			mu.Lock()
			n := nodes[name]
			mu.Unlock()
			_ = n.Close()
		},
		DropLease: func(app string) {
			if err := raw.Del(context.Background(), "sokoban:lease:"+app).Err(); err != nil {
				t.Fatalf("drop lease: %v", err)
			}
		},
		StopBackend: srv.Stop,
	}
}
