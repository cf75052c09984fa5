package sshd

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/stow"
)

// raceGate is a store that forces the worst interleaving of two nodes
// generating the same host key: both read it (missing) before either writes,
// and the second write waits until the first writer has read its key back.
type raceGate struct {
	stow.Store
	mu   sync.Mutex
	keys map[string]*keyGate
}

type keyGate struct {
	reads, writes int
	bothRead      chan struct{} // closed at the second read
	thirdRead     chan struct{} // closed at the third read: the first writer's read-back
}

func (g *raceGate) gate(key string) *keyGate {
	if g.keys == nil {
		g.keys = map[string]*keyGate{}
	}
	k := g.keys[key]
	if k == nil {
		k = &keyGate{bothRead: make(chan struct{}), thirdRead: make(chan struct{})}
		g.keys[key] = k
	}
	return k
}

func (g *raceGate) Get(ctx context.Context, key string) (io.ReadCloser, stow.Info, error) {
	g.mu.Lock()
	k := g.gate(key)
	k.reads++
	n := k.reads
	switch n {
	case 2:
		close(k.bothRead)
	case 3:
		close(k.thirdRead)
	}
	g.mu.Unlock()
	if n <= 2 {
		<-k.bothRead
	}
	return g.Store.Get(ctx, key)
}

func (g *raceGate) beforeWrite(key string) {
	g.mu.Lock()
	k := g.gate(key)
	k.writes++
	n := k.writes
	g.mu.Unlock()
	if n == 2 {
		<-k.thirdRead
	}
}

func (g *raceGate) Create(ctx context.Context, key string, r io.Reader) (stow.Info, error) {
	g.beforeWrite(key)
	return g.Store.Create(ctx, key, r)
}

func (g *raceGate) Put(ctx context.Context, key string, r io.Reader) (stow.Info, error) {
	g.beforeWrite(key)
	return g.Store.Put(ctx, key, r)
}

func startNodes(t *testing.T, st HostKeyStore, nodes int) [][]gossh.Signer {
	t.Helper()
	keys := make([][]gossh.Signer, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if keys[i], err = SharedHostKeys(context.Background(), st); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return keys
}

func sameKeys(t *testing.T, keys [][]gossh.Signer) {
	t.Helper()
	for i := range keys {
		if len(keys[i]) != len(HostKeyNames()) {
			t.Fatalf("node %d has %d host keys", i, len(keys[i]))
		}
		for j, k := range keys[i] {
			if !bytes.Equal(k.PublicKey().Marshal(), keys[0][j].PublicKey().Marshal()) {
				t.Fatalf("node %d presents another %s host key than node 0", i, k.PublicKey().Type())
			}
		}
	}
}

// Issue 11 item 6: two nodes with --host-keys-from-store start at the same
// moment on a fresh store, with no lease between them (Redis not up yet, or
// two processes on one local store). Both find no host key and generate one.
// Written check-then-write, the second write replaced the first after the
// first node had read its own key back: the nodes presented different host
// keys, and every client that met both saw a host key change warning, as if
// under attack. The first write is create-only now: the loser reads the
// winner's key.
func TestSharedHostKeysRaceAgreesOnOneKey(t *testing.T) {
	t.Parallel()
	local, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keys := startNodes(t, &raceGate{Store: local}, 2)
	sameKeys(t, keys)
}

// Issue 5 item 5: nodes that start together all end up with the keys the
// store holds, generated once; a later start reads the same keys.
func TestSharedHostKeysConverge(t *testing.T) {
	t.Parallel()
	st, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keys := startNodes(t, st, 4)
	sameKeys(t, keys)
	list, err := st.List(context.Background(), SharedHostKeyPrefix)
	if err != nil || len(list) != len(HostKeyNames()) {
		t.Fatalf("stored host keys: %v (%v)", list, err)
	}
	again, err := SharedHostKeys(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	sameKeys(t, [][]gossh.Signer{keys[0], again})
}
