package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sokoban-deploy/sokoban/stow"
)

const secretToken = "HRKU-5ecret-token-abcdef"

// SPEC G6: the token of a linked account is stored with mode 0600 and shows up
// in no printed or logged form of the link.
func TestHerokuLinksStoredPrivately(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	st, err := stow.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	links := NewHerokuLinks(st)
	if _, err := links.Get(ctx, "dev@example.com"); !errors.Is(err, ErrNotLinked) {
		t.Fatalf("Get before linking: %v", err)
	}
	if err := links.Put(ctx, HerokuLink{Email: "dev@example.com", AccountID: "acct-1", Token: secretToken}); err != nil {
		t.Fatal(err)
	}
	l, err := links.Get(ctx, "Dev@Example.com")
	if err != nil || l.Token != secretToken || l.AccountID != "acct-1" || l.LinkedAt.IsZero() {
		t.Fatalf("Get = %v (token ok: %v), %v", l, l.Token == secretToken, err)
	}

	path := filepath.Join(root, filepath.FromSlash(HerokuLinkKey("dev@example.com")))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("link file mode %v, want 0600", fi.Mode().Perm())
	}
	if strings.Contains(path, "dev@example.com") {
		t.Fatalf("the link's stow key names the account: %s", path)
	}

	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("linked", "link", l)
	for _, shown := range []string{fmt.Sprint(l), fmt.Sprintf("%v %+v %#v %s", l, l, l, l), logs.String()} {
		if strings.Contains(shown, secretToken) {
			t.Fatalf("the token shows in %q", shown)
		}
	}

	if err := links.Put(ctx, HerokuLink{Email: "dev@example.com"}); err == nil {
		t.Error("a link without a token was stored")
	}
	if err := links.Put(ctx, HerokuLink{Email: "not a user", Token: "x"}); !errors.Is(err, ErrBadUser) {
		t.Errorf("a bad user name: %v", err)
	}
}

func TestRefusalAndNoAccessMessage(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	err := fmt.Errorf("lookup: %w", &RefusedError{Reason: "key removed", Err: cause})
	var r *RefusedError
	if !errors.As(err, &r) || r.UserMessage() != "key removed" || !errors.Is(err, cause) {
		t.Fatalf("RefusedError: %v", err)
	}
	if got := NoAccessMessage(NewLocal(nil, false), "app"); got != "no such app: app" {
		t.Errorf("local refusal %q", got)
	}
}

// A server's link store reads stow at most once per refresh interval, and its
// own Put is seen at once.
func TestCachedHerokuLinks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	cached := NewCachedHerokuLinks(s, time.Hour)
	cached.now = func() time.Time { return clock }
	other := NewHerokuLinks(s) // `sokoban keys add` in another process
	if _, err := cached.Get(ctx, "ann@example.com"); !errors.Is(err, ErrNotLinked) {
		t.Fatal(err)
	}
	if err := other.Put(ctx, HerokuLink{Email: "ann@example.com", Token: "t1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cached.Get(ctx, "ann@example.com"); !errors.Is(err, ErrNotLinked) {
		t.Fatalf("read stow again within the refresh interval: %v", err)
	}
	clock = clock.Add(2 * time.Hour)
	if l, err := cached.Get(ctx, "ann@example.com"); err != nil || l.Token != "t1" {
		t.Fatalf("after the interval: %+v %v", l, err)
	}
	if err := cached.Put(ctx, HerokuLink{Email: "ann@example.com", Token: "t2"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := cached.Get(ctx, "ann@example.com"); l.Token != "t2" {
		t.Fatalf("own Put not seen: %+v", l)
	}
}
