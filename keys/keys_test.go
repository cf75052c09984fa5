package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/stow"
)

func newKey(t *testing.T) gossh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func newStore(t *testing.T) (*Store, stow.Store) {
	t.Helper()
	s, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return NewStore(s, 0), s
}

func TestStoreAddLookupRemove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t)
	alice, bob := newKey(t), newKey(t)
	if _, err := st.Add(ctx, "alice@example.com", RoleAdmin, alice, "alice@laptop\nevil"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Add(ctx, "bob", RoleUser, bob, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Add(ctx, "mallory", RoleUser, bob, ""); !errors.Is(err, ErrDuplicateKey) {
		t.Fatalf("re-adding bob's key to another user: %v", err)
	}
	k, err := st.Lookup(ctx, alice)
	if err != nil || k.User != "alice@example.com" || k.Role != RoleAdmin || k.Comment != "alice@laptop evil" {
		t.Fatalf("Lookup(alice) = %+v, %v", k, err)
	}
	if _, err := st.Remove(ctx, strings.TrimPrefix(k.Fingerprint, "SHA256:")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Lookup(ctx, alice); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Lookup after remove: %v", err)
	}
	if _, err := st.Remove(ctx, k.Fingerprint); !errors.Is(err, ErrNoSuchKey) {
		t.Fatalf("second remove: %v", err)
	}
}

func TestStoreRejectsBadUsers(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	for _, u := range []string{"", "a b", "alice\nadmin", strings.Repeat("x", 65), "ä"} {
		if _, err := st.Add(context.Background(), u, RoleUser, newKey(t), ""); !errors.Is(err, ErrBadUser) {
			t.Errorf("Add(%q) = %v, want ErrBadUser", u, err)
		}
	}
}

// A second Store on the same stow (another process: `sokoban keys add` beside a
// running server) sees changes once its refresh interval has passed.
func TestStoreSeesOutsideChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	server, s := newStore(t)
	server.refresh = time.Hour
	clock := time.Now()
	server.now = func() time.Time { return clock }
	cli := NewStore(s, 0)
	k := newKey(t)
	if _, err := server.Lookup(ctx, k); !errors.Is(err, ErrUnknownKey) {
		t.Fatal(err)
	}
	if _, err := cli.Add(ctx, "carol", RoleUser, k, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Lookup(ctx, k); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("server saw the change before its refresh interval: %v", err)
	}
	clock = clock.Add(2 * time.Hour)
	if got, err := server.Lookup(ctx, k); err != nil || got.User != "carol" {
		t.Fatalf("server after refresh: %+v %v", got, err)
	}
}

func TestParseFormatRoundTrip(t *testing.T) {
	t.Parallel()
	keys := []Key{{User: "a@b.c", Role: RoleUser, PublicKey: newKey(t), Comment: "laptop"}}
	got, err := Parse(Format(keys))
	if err != nil || len(got) != 1 || got[0].User != "a@b.c" || got[0].Comment != "laptop" {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	if _, err := Parse([]byte("alice admin ssh-ed25519 notbase64\n")); !errors.Is(err, ErrBadKeyFile) {
		t.Fatalf("bad line: %v", err)
	}
	if _, err := Parse([]byte("alice root " + strings.TrimSpace(string(gossh.MarshalAuthorizedKey(newKey(t)))))); !errors.Is(err, ErrBadKeyFile) {
		t.Fatalf("bad role: %v", err)
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	app := &App{Name: "web", Owner: "olive", Collaborators: []string{"carl"}}
	for _, tc := range []struct {
		user       User
		app        *App
		autoCreate bool
		want       Level
	}{
		{User{Name: "root", Role: RoleAdmin}, nil, false, Admin},
		{User{Name: "olive", Role: RoleUser}, app, true, Owner},
		{User{Name: "carl", Role: RoleUser}, app, true, Collaborator},
		{User{Name: "eve", Role: RoleUser}, app, true, NoAccess},
		{User{Name: "eve", Role: RoleUser}, nil, true, Owner},
		{User{Name: "eve", Role: RoleUser}, nil, false, NoAccess},
		// Substring matches must not grant access (deis/builder's mistake).
		{User{Name: "oliv", Role: RoleUser}, app, true, NoAccess},
	} {
		if got := Decide(tc.user, tc.app, tc.autoCreate); got != tc.want {
			t.Errorf("Decide(%s, %v, %v) = %s, want %s", tc.user.Name, tc.app != nil, tc.autoCreate, got, tc.want)
		}
	}
}

func TestValidApp(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"myapp": true, "a1": false, "ab1": true, "my-app-2": true, "abc": true,
		"a": false, "1app": false, "app-": false, "App": false, "my_app": false,
		"../x": false, "my.app": false, strings.Repeat("a", 30): true, strings.Repeat("a", 31): false,
	} {
		if ValidApp(name) != ok {
			t.Errorf("ValidApp(%q) = %v, want %v", name, !ok, ok)
		}
	}
}

func TestAppsCreateGetList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := stow.NewLocal(t.TempDir())
	apps := NewApps(s)
	if _, err := apps.Get(ctx, "web"); !errors.Is(err, ErrNoApp) {
		t.Fatal(err)
	}
	if _, err := apps.Create(ctx, "web", "olive"); err != nil {
		t.Fatal(err)
	}
	again, err := apps.Create(ctx, "web", "eve")
	if err != nil || again.Owner != "olive" {
		t.Fatalf("second create changed the owner: %+v %v", again, err)
	}
	if _, err := stow.PutBytes(ctx, s, "apps/web/slugs/x.tgz", []byte("x")); err != nil {
		t.Fatal(err)
	}
	list, err := apps.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "web" {
		t.Fatalf("List = %+v, %v", list, err)
	}
}
