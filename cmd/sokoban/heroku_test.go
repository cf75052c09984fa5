package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/release/heroku/herokutest"
	"github.com/sokoban-deploy/sokoban/stow"
)

// SPEC G6: `keys add --heroku-token-file` links a key that is on the token's
// account, names the user after the account, refuses with the reason
// otherwise, and never prints the token.
func TestKeysAddHerokuTokenFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	api := herokutest.New(t)
	const token = "HRKU-cmd-test-5ecret"
	api.AddAccount("dev@example.com", token)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := func(name string) (string, string) {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pk, err := gossh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		line := string(gossh.MarshalAuthorizedKey(pk))
		p := filepath.Join(dir, name+".pub")
		if err := os.WriteFile(p, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		return p, line
	}
	data := filepath.Join(dir, "data")
	add := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		all := append([]string{"keys", "add", "--data", data, "--heroku-api", api.URL}, args...)
		code := run(ctx, all, strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
		if strings.Contains(stdout.String()+stderr.String(), token) {
			t.Fatalf("the token was printed:\n%s%s", stdout.String(), stderr.String())
		}
		return code, stdout.String(), stderr.String()
	}

	onAccount, line := keyFile("on-account")
	api.AddKey(token, line)
	code, out, errOut := add("--heroku-token-file", tokenFile, onAccount)
	if code != 0 || !strings.Contains(out, "to the Heroku account dev@example.com") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	st, err := stow.NewLocal(filepath.Join(data, "store"))
	if err != nil {
		t.Fatal(err)
	}
	list, err := keys.NewStore(st, 0).List(ctx)
	if err != nil || len(list) != 1 || list[0].User != "dev@example.com" || list[0].Role != keys.RoleUser {
		t.Fatalf("key store: %+v %v", list, err)
	}

	notOnAccount, _ := keyFile("elsewhere")
	code, _, errOut = add("--heroku-token-file", tokenFile, notOnAccount)
	if code != 1 || !strings.Contains(errOut, "is not registered on the Heroku account dev@example.com") {
		t.Fatalf("a key not on the account: exit %d\n%s", code, errOut)
	}
	if code, _, errOut = add("--heroku-token-file", tokenFile, "--admin", onAccount); code != 1 || !strings.Contains(errOut, "--admin") {
		t.Fatalf("--admin with a token: exit %d\n%s", code, errOut)
	}
	if code, _, _ = add("--heroku-token-file", tokenFile, "someone", onAccount); code != 1 {
		t.Fatalf("a USER with --heroku-token-file: exit %d", code)
	}
	api.AssertClean(t)
}

func TestReleaseFlag(t *testing.T) {
	t.Parallel()
	st, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ks, local := keys.NewStore(st, 0), keys.NewLocal(keys.NewApps(st), true)
	h := herokuFlags{release: "local"}
	if s, err := h.seams(st, ks, time.Second, local, log); err != nil || s.heroku || s.access != local {
		t.Fatalf("local: %+v %v", s, err)
	}
	h = herokuFlags{release: "heroku", keyTTL: 1, herokuAPIFlags: herokuAPIFlags{api: "http://127.0.0.1:1", timeout: 1, retryBudget: 1, uploadTimeout: 1}}
	if s, err := h.seams(st, ks, time.Second, local, log); err != nil || !s.heroku || s.releaseTimeout <= 0 {
		t.Fatalf("heroku: %+v %v", s, err)
	}
	for _, bad := range []herokuFlags{
		{release: "cloud"},
		{release: "heroku", keyTTL: 1, herokuAPIFlags: herokuAPIFlags{api: "ftp://x", timeout: 1, retryBudget: 1, uploadTimeout: 1}},
		{release: "heroku", keyTTL: 0, herokuAPIFlags: herokuAPIFlags{api: "http://x", timeout: 1, retryBudget: 1, uploadTimeout: 1}},
	} {
		if _, err := bad.seams(st, ks, time.Second, local, log); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
