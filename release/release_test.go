package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sokoban-deploy/sokoban/stow"
)

func TestLocalVersionsAndCurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := NewLocal(s)
	if _, err := l.Current(ctx, "web"); !errors.Is(err, ErrNoRelease) {
		t.Fatalf("Current on a new app = %v", err)
	}
	for i := 1; i <= 11; i++ {
		rel, err := l.Create(ctx, "web", Request{Base: i - 1, Commit: "0123456789abcdef", ProcessTypes: map[string]string{"web": "x"}, User: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if rel.Version != i || !rel.Current || rel.Description != "Deploy 0123456" {
			t.Fatalf("release %d = %+v", i, rel)
		}
	}
	list, err := l.List(ctx, "web")
	if err != nil || len(list) != 11 || list[0].Version != 11 || !list[0].Current || list[1].Current {
		t.Fatalf("List = %+v, %v", list, err)
	}
	// Other apps are independent.
	if rel, err := l.Create(ctx, "api", Request{}); err != nil || rel.Version != 1 {
		t.Fatalf("other app: %+v %v", rel, err)
	}
}

func TestLocalSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := stow.NewLocal(t.TempDir())
	st := NewLocalSettings(s)
	got, err := st.Get(ctx, "web")
	if err != nil || got.Config == nil || len(got.Config) != 0 {
		t.Fatalf("empty settings = %+v %v", got, err)
	}
	if err := st.SetConfig(ctx, "web", map[string]string{"A": "1", "B": "2"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetBuildpacks(ctx, "web", []string{"x"}); err != nil {
		t.Fatal(err)
	}
	got, err = st.Get(ctx, "web")
	if err != nil || got.Config["A"] != "1" || got.Buildpacks[0] != "x" {
		t.Fatalf("settings = %+v %v", got, err)
	}
	removed, err := st.UnsetConfig(ctx, "web", []string{"A", "NOPE"})
	if err != nil || len(removed) != 1 || removed[0] != "A" {
		t.Fatalf("UnsetConfig = %v, %v", removed, err)
	}
	if err := st.ClearBuildpacks(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Get(ctx, "web")
	if len(got.Config) != 1 || got.Config["B"] != "2" || got.Buildpacks != nil {
		t.Fatalf("after unset and clear: %+v", got)
	}
	if err := st.SetConfig(ctx, "web", map[string]string{"1BAD": "x"}); !errors.Is(err, ErrBadConfigKey) {
		t.Fatalf("bad key: %v", err)
	}
}

// Issue 11 item 3: config:set on two nodes at the same instant used to be
// Get, change, Put: each node wrote back the copy it had read, and the
// other's key was gone. Two stores over one directory stand in for two
// nodes; every key set concurrently must survive, and a concurrent unset
// must not bring a removed key back.
func TestLocalSettingsConcurrentChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	var nodes [2]*LocalSettings
	for i := range nodes {
		s, err := stow.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = NewLocalSettings(s)
	}
	if err := nodes[0].SetConfig(ctx, "web", map[string]string{"GONE": "1"}); err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := range n {
		wg.Go(func() {
			errs <- nodes[i%2].SetConfig(ctx, "web", map[string]string{"K" + strconv.Itoa(i): "v"})
		})
	}
	wg.Go(func() {
		_, err := nodes[1].UnsetConfig(ctx, "web", []string{"GONE"})
		errs <- err
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := nodes[0].Get(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if got.Config["K"+strconv.Itoa(i)] != "v" {
			t.Errorf("K%d was lost", i)
		}
	}
	if _, ok := got.Config["GONE"]; ok || len(got.Config) != n {
		t.Errorf("config has %d vars (GONE present: %v), want %d", len(got.Config), ok, n)
	}
}

// Issue 10 item 2: config vars are bounded per app, keys and values
// together, as on Heroku; a write past the bound changes nothing.
func TestLocalSettingsBoundConfig(t *testing.T) {
	t.Parallel()
	store, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := NewLocalSettings(store)
	ctx := context.Background()
	if err := s.SetConfig(ctx, "app", map[string]string{"A": strings.Repeat("v", MaxConfigSize-1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetConfig(ctx, "app", map[string]string{"BB": "x"}); !errors.Is(err, ErrConfigTooLarge) {
		t.Fatalf("err = %v", err)
	}
	got, err := s.Get(ctx, "app")
	if err != nil || len(got.Config) != 1 {
		t.Fatalf("after the refused write: %v, %v", got.Config, err)
	}
}

// Issue 11 item 2: two pushes that both started from v0 race to release (node
// A paused past its lease while node B took it over and built). Release
// versions are create-only, so exactly one becomes v1, the other gets
// ErrSuperseded, and the store holds one v1 — never one overwriting the other.
func TestLocalCreateRaceOneWins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for round := range 20 {
		app := fmt.Sprintf("app%d", round)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range 2 {
			// Two nodes: two store handles on one directory.
			s, err := stow.NewLocal(dir)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = NewLocal(s).Create(ctx, app, Request{User: fmt.Sprint("node", i)})
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrSuperseded):
				t.Fatalf("%s: loser's error %v, want ErrSuperseded", app, err)
			}
		}
		s, _ := stow.NewLocal(dir)
		list, err := NewLocal(s).List(ctx, app)
		if won != 1 || err != nil || len(list) != 1 || list[0].Version != 1 {
			t.Fatalf("%s: %d winners, releases %+v, %v", app, won, list, err)
		}
	}
}

// racingStore lets another writer create a key right before this one does:
// the pause between reading the current version and writing the next.
type racingStore struct {
	stow.Store
	before func(key string)
}

func (s racingStore) Create(ctx context.Context, key string, r io.Reader) (stow.Info, error) {
	if s.before != nil {
		s.before(key)
	}
	return s.Store.Create(ctx, key, r)
}

// A release whose Base is stale writes nothing, whether the newer release
// was there when it looked or landed between its look and its write.
func TestLocalCreateStaleBaseWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other := NewLocal(s)
	if _, err := other.Create(ctx, "web", Request{User: "bob"}); err != nil {
		t.Fatal(err)
	}
	l := NewLocal(s)
	_, err = l.Create(ctx, "web", Request{Base: 0, User: "alice"})
	if se, ok := errors.AsType[*SupersededError](err); !ok || se.Version != 1 || !errors.Is(err, ErrSuperseded) {
		t.Fatalf("stale Base: %v", err)
	}
	// The newer release lands after this writer read v1 as current.
	raced := NewLocal(racingStore{Store: s, before: func(key string) {
		if strings.HasSuffix(key, "/v00000002.json") {
			if _, err := other.Create(ctx, "web", Request{Base: 1, User: "bob"}); err != nil {
				t.Error(err)
			}
		}
	}})
	_, err = raced.Create(ctx, "web", Request{Base: 1, User: "alice"})
	if !errors.Is(err, ErrSuperseded) {
		t.Fatalf("raced create: %v", err)
	}
	list, err := l.List(ctx, "web")
	if err != nil || len(list) != 2 {
		t.Fatalf("releases %+v %v", list, err)
	}
	for _, rel := range list {
		if rel.User != "bob" {
			t.Fatalf("the superseded writer wrote %+v", rel)
		}
	}
}

// Issue 11 item 8: Current and ReleasedCommit read the pointer and the
// commit marker, not the history; a pointer left behind by a crash between
// the create and its update is rolled forward.
func TestLocalCurrentRollsForward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := NewLocal(s)
	commit := strings.Repeat("ab", 20)
	for base := range 3 {
		if _, err := l.Create(ctx, "web", Request{Base: base, Commit: commit}); err != nil {
			t.Fatal(err)
		}
	}
	// As if the node died right after creating v3: the pointer says v1.
	if _, err := stow.PutJSON(ctx, s, pointerKey("web"), marker{Version: 1}); err != nil {
		t.Fatal(err)
	}
	if cur, err := l.Current(ctx, "web"); err != nil || cur.Version != 3 || !cur.Current {
		t.Fatalf("Current = %+v, %v", cur, err)
	}
	if _, err := l.Create(ctx, "web", Request{Base: 3}); err != nil {
		t.Fatalf("create after a stale pointer: %v", err)
	}
	if v, err := l.ReleasedCommit(ctx, "web", commit); err != nil || v != 3 {
		t.Fatalf("ReleasedCommit = %d, %v", v, err)
	}
	if v, err := l.ReleasedCommit(ctx, "web", strings.Repeat("cd", 20)); err != nil || v != 0 {
		t.Fatalf("ReleasedCommit of a new commit = %d, %v", v, err)
	}
}
