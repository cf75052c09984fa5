package main

import (
	"bytes"
	"context"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/cluster"
	"github.com/sokoban-deploy/sokoban/cluster/clustertest"
	"github.com/sokoban-deploy/sokoban/stow"
)

// Issue 5 item 5: nodes that start together with --host-keys-from-store all
// end up with the keys the store holds, generated once.
func TestStowedHostKeysConverge(t *testing.T) {
	t.Parallel()
	redis := clustertest.StartRedis(t)
	st, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const nodes = 4
	keys := make([][]gossh.Signer, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		r, err := cluster.NewRedis(cluster.RedisConfig{URL: redis.URL, Node: "node-" + string(rune('a'+i))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			var gerr error
			if keys[i], gerr = stowedHostKeys(context.Background(), st, r, "node"); gerr != nil {
				t.Error(gerr)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range nodes {
		if len(keys[i]) != 2 {
			t.Fatalf("node %d has %d host keys", i, len(keys[i]))
		}
		for j, k := range keys[i] {
			if !bytes.Equal(k.PublicKey().Marshal(), keys[0][j].PublicKey().Marshal()) {
				t.Fatalf("node %d presents another %s host key", i, k.PublicKey().Type())
			}
		}
	}
	list, err := st.List(context.Background(), hostKeyPrefix)
	if err != nil || len(list) != 2 {
		t.Fatalf("stored host keys: %v (%v)", list, err)
	}
	// A later start, without Redis, reads the same keys.
	again, err := stowedHostKeys(context.Background(), st, cluster.NewLocal(), "node-z")
	if err != nil || !bytes.Equal(again[0].PublicKey().Marshal(), keys[0][0].PublicKey().Marshal()) {
		t.Fatalf("restart: %v", err)
	}
}
