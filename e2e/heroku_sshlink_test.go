package e2e

import (
	"os"
	"strings"
	"testing"
)

// SPEC G6, issue 6 item 1: the admin SSH command links a key like
// `sokoban keys add --heroku-token-file` does: token line then key on stdin,
// refused unless the key is on that account, the token never echoed.
func TestHerokuModeLinkKeyOverSSH(t *testing.T) {
	t.Parallel()
	srv, api := startHeroku(t)
	admin := srv.addUser("root@example.com", true)
	api.AddAccount("dana@example.com", "dana-token-1234")
	dana := srv.newKey("dana@example.com")
	pub, err := os.ReadFile(dana.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	link := func(token string) result {
		cmd := srv.ssh(admin, "keys:add", "--heroku")
		cmd.Stdin = strings.NewReader(token + "\n" + string(pub))
		return runResult(t, cmd)
	}
	// Not yet on the account: refused with the reason.
	res := link("dana-token-1234")
	if res.code != 1 || !strings.Contains(res.stderr, "sokoban: ") || strings.Contains(res.stderr+res.stdout, "dana-token-1234") {
		t.Fatalf("link of a key not on the account:\n%s", res)
	}
	api.AddKey("dana-token-1234", string(pub))
	res = link("dana-token-1234")
	if res.code != 0 || !strings.Contains(res.stdout, "to the Heroku account dana@example.com") || strings.Contains(res.stdout, "dana-token-1234") {
		t.Fatalf("link:\n%s", res)
	}
	waitFor(t, "dana's key to be live", func() bool { return srv.run(dana, "whoami").code == 0 })
	if res := srv.run(dana, "keys:add", "--heroku"); res.code != 1 || !strings.Contains(res.stderr, "for admins only") {
		t.Fatalf("non-admin:\n%s", res)
	}
	api.AssertClean(t)
}
