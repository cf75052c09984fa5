package keys

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/sokoban-deploy/sokoban/stow"
)

// twoNodes opens one store directory twice: two nodes sharing stow.
func twoNodes(t *testing.T) [2]stow.Store {
	t.Helper()
	dir := t.TempDir()
	var out [2]stow.Store
	for i := range out {
		s, err := stow.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = s
	}
	return out
}

// Issue 11 item 3: the key store was read, changed and written back whole;
// two nodes adding keys at once each wrote the list they had read, and one
// key silently vanished (a user who was told "Added" could not log in).
func TestStoreConcurrentAddsAcrossNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nodes := twoNodes(t)
	stores := [2]*Store{NewStore(nodes[0], 0), NewStore(nodes[1], 0)}
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := stores[i%2].Add(ctx, "user"+strconv.Itoa(i), RoleUser, newKey(t), "")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, err := NewStore(nodes[0], 0).List(ctx)
	if err != nil || len(list) != n {
		t.Fatalf("after %d concurrent adds over two nodes the store has %d keys (%v)", n, len(list), err)
	}
}

// Issue 11 item 3: access:add on two nodes at once kept only one of the two
// collaborators, and a concurrent access:remove could be undone.
func TestAppsConcurrentAccessChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nodes := twoNodes(t)
	apps := [2]*Apps{NewApps(nodes[0]), NewApps(nodes[1])}
	ks := NewStore(nodes[0], 0)
	const n = 16
	for i := range n + 1 {
		if _, err := ks.Add(ctx, "user"+strconv.Itoa(i), RoleUser, newKey(t), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := apps[0].Create(ctx, "web", "olive"); err != nil {
		t.Fatal(err)
	}
	if _, err := apps[0].AddCollaborator(ctx, "web", "user"+strconv.Itoa(n), ks); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := range n {
		wg.Go(func() {
			_, err := apps[i%2].AddCollaborator(ctx, "web", "user"+strconv.Itoa(i), ks)
			errs <- err
		})
	}
	wg.Go(func() { errs <- apps[1].RemoveCollaborator(ctx, "web", "user"+strconv.Itoa(n)) })
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rec, err := apps[0].Get(ctx, "web")
	if err != nil || len(rec.Collaborators) != n {
		t.Fatalf("collaborators after concurrent changes: %v (%v), want user0..user%d", rec, err, n-1)
	}
	if _, err := apps[0].AddCollaborator(ctx, "web", "nobody", ks); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("adding an unregistered user: %v", err)
	}
	if err := apps[0].RemoveCollaborator(ctx, "web", "olive"); !errors.Is(err, ErrOwner) {
		t.Errorf("removing the owner: %v", err)
	}
	if err := apps[0].RemoveCollaborator(ctx, "web", "nobody"); !errors.Is(err, ErrNotCollaborator) {
		t.Errorf("removing a stranger: %v", err)
	}
	if _, err := apps[0].AddCollaborator(ctx, "nope-app", "user0", ks); !errors.Is(err, ErrNoApp) {
		t.Errorf("access:add on a missing app: %v", err)
	}
}

// Issue 11 item 3: two first pushes of one name on two nodes both found no
// record and both wrote one; the later write made its pusher the owner of an
// app the other had just created. Create is create-only: one owner, and the
// loser's Claim fails.
func TestClaimRaceOneOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for round := range 10 {
		nodes := twoNodes(t)
		locals := [2]*Local{NewLocal(NewApps(nodes[0]), true), NewLocal(NewApps(nodes[1]), true)}
		users := [2]User{{Name: "alice", Role: RoleUser}, {Name: "bob", Role: RoleUser}}
		var wg sync.WaitGroup
		var errs [2]error
		for i := range 2 {
			wg.Go(func() { errs[i] = locals[i].Claim(ctx, users[i], "web") })
		}
		wg.Wait()
		rec, err := NewApps(nodes[0]).Get(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		winner := 0
		if rec.Owner == "bob" {
			winner = 1
		}
		if errs[winner] != nil || !errors.Is(errs[1-winner], ErrClaimed) {
			t.Fatalf("round %d: owner %s, claims %v / %v: want exactly the owner's claim to succeed", round, rec.Owner, errs[0], errs[1])
		}
	}
}
