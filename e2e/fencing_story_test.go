package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sokoban-deploy/sokoban/stow"
)

// Issue 11, DESIGN rule 8: a node that pauses (GC, VM steal, SIGSTOP) between
// starting a push and writing its results must not overwrite what another
// node released meanwhile. Every write that could clobber the newer state, the
// release and the repository manifest, is fenced: the paused node writes
// neither, tells its pusher why, and the other node's release stays current.

// fencedLine is what the paused node's pusher must read: a " !" line that
// says its push lost the app's lease, or that another push released first.
var fencedLine = regexp.MustCompile(`(?m)^remote:  !     .*(the app's lease|another push released v2 while this one was building).*$`)

// fencedState is what a fenced node must leave untouched: every release, slug
// and repository object of the app, by key and ETag.
func fencedState(t *testing.T, st stow.Store, app string) map[string]string {
	t.Helper()
	list, err := st.List(context.Background(), "apps/"+app+"/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, info := range list {
		rest := strings.TrimPrefix(info.Key, "apps/"+app+"/")
		if strings.HasPrefix(rest, "releases/") || strings.HasPrefix(rest, "slugs/") || rest == "repo.json" || strings.HasPrefix(rest, "repo/") {
			out[rest] = info.ETag
		}
	}
	return out
}

func stateString(m map[string]string) string {
	var lines []string
	for k, v := range m {
		lines = append(lines, k+" "+v)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// fencingStory runs the story on a fleet of two nodes sharing view's store.
// pause stops node A while B takes over; resume lets it go on. Node A builds
// with a gated buildpack, B with one that returns at once.
func fencingStory(t *testing.T, f *fleet, view stow.Store, pause, resume func(a *server)) {
	gates := t.TempDir()
	t.Cleanup(func() { setGate(t, gates, true) })
	a := f.node("node-a", "--buildpacks", gatedBuildpack(t, gates))
	b := f.node("node-b", "--buildpacks", buildpack(t, "ok", "echo Ok", "true", ""))
	nodes := []*server{a, b}
	alice := f.addUser(nodes, "alice@example.com", false)
	bob := f.addUser(nodes, "bob@example.com", false)

	// v1 from node B; both pushers then work on top of it.
	app := newApp(t, map[string]string{"index.html": "v1"})
	if res := runResult(t, b.git(alice, app, "push", b.remote("shop"), "main")); res.code != 0 || !strings.Contains(res.stderr, "Released v1") {
		t.Fatalf("first push on node B:\n%s", res)
	}
	expect(t, b.run(alice, "access:add", "shop", "bob@example.com"), 0, `may now push`, `^$`)
	bobs := filepath.Join(t.TempDir(), "bob")
	if res := runResult(t, b.git(bob, filepath.Dir(bobs), "clone", "-q", b.remote("shop"), bobs)); res.code != 0 {
		t.Fatalf("bob's clone:\n%s", res)
	}

	// Alice's push on node A starts from v1 and blocks in compile.
	setGate(t, gates, false)
	commit(t, app, map[string]string{"index.html": "alice"}, "alice's")
	lines, wait := followPush(t, a.git(alice, app, "push", a.remote("shop"), "main"))
	waitLine(t, lines, `^remote: first line`)
	compilePID, childPID := readPID(t, gates, "compile.pid"), readPID(t, gates, "child.pid")
	pause(a)

	// Bob's push on node B releases v2 while A is held.
	commit(t, bobs, map[string]string{"index.html": "bob"}, "bob's")
	bobHead := strings.TrimSpace(run(t, bobs, nil, "git", "rev-parse", "HEAD"))
	var res result
	waitFor(t, "node B to take the app", func() bool {
		res = runResult(t, b.git(bob, bobs, "push", b.remote("shop"), "main"))
		return !strings.Contains(res.stderr, "is being deployed by")
	})
	if res.code != 0 || !strings.Contains(res.stderr, "Released v2") {
		t.Fatalf("bob's push on node B while node A is held:\n%s", res)
	}
	before := fencedState(t, view, "shop")

	// A goes on: its build finishes, and it must write nothing.
	setGate(t, gates, true)
	resume(a)
	rest := drainLines(lines)
	err := wait()
	if err == nil || strings.Contains(rest, "Released") || !fencedLine.MatchString(rest) {
		t.Fatalf("alice's push on the held node A (exit error %v) should be refused for its lost lease or a newer push; got:\n%s", err, rest)
	}
	t.Logf("node A's pusher read: %s", strings.TrimSpace(fencedLine.FindString(rest)))
	waitGone(t, compilePID)
	waitGone(t, childPID)
	waitFor(t, "node A's workspace to be removed", func() bool {
		entries, _ := os.ReadDir(filepath.Join(a.data, "work"))
		return len(entries) == 0
	})
	if after := fencedState(t, view, "shop"); stateString(after) != stateString(before) {
		t.Fatalf("node A wrote after it was fenced:\nbefore:\n%s\nafter:\n%s", stateString(before), stateString(after))
	}

	// Bob's release stays current on both nodes, and both serve his commit.
	for _, n := range nodes {
		rels := n.run(bob, "releases", "shop")
		if rels.code != 0 || !regexp.MustCompile(`(?m)^\s*\*\s+v2\s.*bob@example\.com`).MatchString(rels.stdout) || strings.Contains(rels.stdout, "v3") {
			t.Fatalf("releases on %s:\n%s", n.data, rels)
		}
		clone := filepath.Join(t.TempDir(), "clone")
		if res := runResult(t, n.git(bob, filepath.Dir(clone), "clone", "-q", n.remote("shop"), clone)); res.code != 0 {
			t.Fatalf("clone from %s:\n%s", n.data, res)
		}
		if head := strings.TrimSpace(run(t, clone, nil, "git", "rev-parse", "HEAD")); head != bobHead {
			t.Fatalf("clone from %s is at %s, bob released %s", n.data, head, bobHead)
		}
	}
	var m stowedRepo
	if _, err := stow.GetJSON(context.Background(), view, "apps/shop/repo.json", &m); err != nil {
		t.Fatal(err)
	}
	if m.Refs["refs/heads/main"] != bobHead {
		t.Fatalf("stowed main is %s, bob released %s", m.Refs["refs/heads/main"], bobHead)
	}
}

// TestFencingLocalStoreTwoProcesses's story (two processes on one local
// store, each leasing in process, so only the store's conditional writes can
// fence), checked for every trace: the overtaken push leaves no release, no
// slug, no bundle and no manifest write behind, its build's processes are
// gone, and both nodes serve the newer commit. Before fencing, A listed the
// releases afresh and released v3 over B's v2.
func TestFencingLocalStoreLeavesNoTrace(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	view, err := stow.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, keys: t.TempDir(), store: []string{"--store", "file://" + dir}}
	fencingStory(t, f, view, func(*server) {}, func(*server) {})
}

// fleetLeaseTTL is the --lease-ttl fleet.node gives nodes with Redis: the
// SIGSTOP below outlasts it.
const fleetLeaseTTL = 2 * time.Second

// sigstop holds a node's whole process past its lease TTL (the buildpack runs
// in its own process group and waits on its gate meanwhile); sigcont resumes it.
func sigstop(t *testing.T) (pause, resume func(a *server)) {
	return func(a *server) {
			pid := a.cmd.Process.Pid
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			// A failing test still stops the node with SIGTERM, which a
			// stopped process would not act on.
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
			// Not an assertion: node B's push is tried only once the lease
			// could have expired, and then until B sees it gone.
			time.Sleep(fleetLeaseTTL)
		}, func(a *server) {
			if err := syscall.Kill(a.cmd.Process.Pid, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
}

// Two nodes on a real redis-server and SeaweedFS (an S3 server that
// implements conditional writes). Node A's whole process is held with SIGSTOP
// mid-build past its lease TTL, as a long GC pause or a stolen VM would hold
// it; node B takes the app and releases v2; then A runs on. A must write
// neither a release nor the repository manifest, and say why.
func TestFencingTwoNodesS3(t *testing.T) {
	t.Parallel()
	f := newSeaweedFleet(t, true)
	pause, resume := sigstop(t)
	fencingStory(t, f, f.s3.store, pause, resume)
}
