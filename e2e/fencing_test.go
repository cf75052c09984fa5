package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Issue 11, DESIGN rule 8: the writes that matter are conditional, so a push
// that was overtaken while it built writes nothing, whatever its lease says.
// Two processes share one local store and each leases in process, so the
// store's conditional writes are the only thing that can fence: A starts
// from v1 and blocks in compile, B pushes and releases v2, then A goes on.
// Before the fix A listed the releases afresh and released v3 over B's v2.
func TestFencingLocalStoreTwoProcesses(t *testing.T) {
	t.Parallel()
	f := &fleet{t: t, keys: t.TempDir(), store: []string{"--store", "file://" + filepath.Join(t.TempDir(), "store")}}
	gateA, gateB := t.TempDir(), t.TempDir()
	t.Cleanup(func() { setGate(t, gateA, true) })
	setGate(t, gateB, true)
	a := f.node("node-a", "--buildpacks", gatedBuildpack(t, gateA))
	b := f.node("node-b", "--buildpacks", gatedBuildpack(t, gateB))
	nodes := []*server{a, b}
	alice := f.addUser(nodes, "alice@example.com", false)

	app := newApp(t, map[string]string{"index.html": "v1"})
	if res := runResult(t, b.git(alice, app, "push", b.remote("shop"), "main")); res.code != 0 || !strings.Contains(res.stderr, "Released v1") {
		t.Fatalf("first push on node B:\n%s", res)
	}
	other := filepath.Join(t.TempDir(), "other")
	if res := runResult(t, b.git(alice, filepath.Dir(other), "clone", "-q", b.remote("shop"), other)); res.code != 0 {
		t.Fatalf("clone:\n%s", res)
	}

	// A's push starts from v1 and waits in compile.
	setGate(t, gateA, false)
	commit(t, app, map[string]string{"index.html": "from A"}, "A's")
	lines, wait := followPush(t, a.git(alice, app, "push", a.remote("shop"), "main"))
	waitLine(t, lines, `^remote: first line`)

	// B releases v2 meanwhile.
	commit(t, other, map[string]string{"index.html": "from B"}, "B's")
	if res := runResult(t, b.git(alice, other, "push", b.remote("shop"), "main")); res.code != 0 || !strings.Contains(res.stderr, "Released v2") {
		t.Fatalf("push on node B while A builds:\n%s", res)
	}

	setGate(t, gateA, true)
	out := drainLines(lines)
	if err := wait(); err == nil {
		t.Fatalf("A's overtaken push succeeded:\n%s", out)
	}
	if !regexp.MustCompile(`nothing was released: another push released v2 while this one was building`).MatchString(out) || strings.Contains(out, "Released v") {
		t.Fatalf("A's pusher was not told why nothing was released:\n%s", out)
	}
	for _, node := range nodes {
		res := node.run(alice, "releases", "shop")
		if res.code != 0 || !regexp.MustCompile(`\*\s+v2\s`).MatchString(res.stdout) || strings.Contains(res.stdout, "v3") {
			t.Fatalf("releases on %s after A's overtaken push:\n%s", node.port, res)
		}
	}
	// The stowed repository is B's: a clone through A gets B's commit.
	check := filepath.Join(t.TempDir(), "check")
	if res := runResult(t, a.git(alice, filepath.Dir(check), "clone", "-q", a.remote("shop"), check)); res.code != 0 {
		t.Fatalf("clone through A:\n%s", res)
	}
	if body, _ := os.ReadFile(filepath.Join(check, "index.html")); string(body) != "from B" {
		t.Fatalf("the stowed repository holds %q, want B's", body)
	}
}
