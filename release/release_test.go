package release

import (
	"context"
	"errors"
	"strings"
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
		rel, err := l.Create(ctx, "web", Request{Commit: "0123456789abcdef", ProcessTypes: map[string]string{"web": "x"}, User: "alice"})
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
	if err := st.Put(ctx, "web", Settings{Config: map[string]string{"A": "1"}, Buildpacks: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	got, err = st.Get(ctx, "web")
	if err != nil || got.Config["A"] != "1" || got.Buildpacks[0] != "x" {
		t.Fatalf("settings = %+v %v", got, err)
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
	ok := Settings{Config: map[string]string{"A": strings.Repeat("v", MaxConfigSize-1)}}
	if err := s.Put(ctx, "app", ok); err != nil {
		t.Fatal(err)
	}
	big := Settings{Config: map[string]string{"A": strings.Repeat("v", MaxConfigSize-1), "BB": "x"}}
	if err := s.Put(ctx, "app", big); !errors.Is(err, ErrConfigTooLarge) {
		t.Fatalf("err = %v", err)
	}
	got, err := s.Get(ctx, "app")
	if err != nil || len(got.Config) != 1 {
		t.Fatalf("after the refused write: %v, %v", got.Config, err)
	}
}
