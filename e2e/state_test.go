package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Issue 11 item 3: settings are one conditional write each. Fifty
// `config:set` of distinct keys at once, spread over two nodes sharing Redis
// and an S3 server with conditional writes, leave all fifty set; with the
// old read-modify-write, writes that raced lost each other's keys (37 of 50
// survived).
func TestConcurrentConfigSetTwoNodes(t *testing.T) {
	t.Parallel()
	f := newSeaweedFleet(t, true)
	a := f.node("node-a", "--buildpacks", "../examples/buildpacks/static")
	b := f.node("node-b", "--buildpacks", "../examples/buildpacks/static")
	nodes := []*server{a, b}
	alice := f.addUser(nodes, "alice@example.com", false)
	app := newApp(t, map[string]string{"index.html": "v1"})
	if res := runResult(t, a.git(alice, app, "push", a.remote("shop"), "main")); res.code != 0 || !strings.Contains(res.stderr, "Released v1") {
		t.Fatalf("first push:\n%s", res)
	}
	const n = 50
	var wg sync.WaitGroup
	failed := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			res := nodes[i%2].run(alice, "config:set", "shop", fmt.Sprintf("KEY_%02d=value-%d", i, i))
			if res.code != 0 {
				failed <- fmt.Sprintf("config:set KEY_%02d on node %d: %s", i, i%2, res)
			}
		})
	}
	wg.Wait()
	close(failed)
	for msg := range failed {
		t.Error(msg)
	}
	for _, node := range nodes {
		res := node.run(alice, "config", "shop")
		if res.code != 0 {
			t.Fatalf("config: %s", res)
		}
		var missing []string
		for i := range n {
			if !regexp.MustCompile(fmt.Sprintf(`(?m)^KEY_%02d\b.*value-%d$`, i, i)).MatchString(res.stdout) {
				missing = append(missing, fmt.Sprintf("KEY_%02d", i))
			}
		}
		if len(missing) > 0 {
			t.Fatalf("%d of %d keys lost: %v\n%s", len(missing), n, missing, res.stdout)
		}
	}
}
