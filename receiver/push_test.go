package receiver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sokoban-deploy/sokoban/buildpack"
	"github.com/sokoban-deploy/sokoban/cluster"
	"github.com/sokoban-deploy/sokoban/keys"
	"github.com/sokoban-deploy/sokoban/release"
	"github.com/sokoban-deploy/sokoban/stow"
)

// The test binary doubles as the two programs a push runs besides the
// server: the pre-receive hook client (as `sokoban hook pre-receive`) and
// the pusher's transport (git's ext:: runs it in place of ssh; it joins the
// test's unix socket, where ReceivePack serves).
const (
	argHook  = "receiver-test-hook"
	argProxy = "receiver-test-proxy"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case argHook:
			os.Exit(RunHook(context.Background(), os.Environ(), os.Stdin, os.Stdout, os.Stderr))
		case argProxy:
			os.Exit(proxy(os.Args[2]))
		}
	}
	os.Exit(m.Run())
}

func proxy(sock string) int {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		_, _ = io.Copy(conn, os.Stdin)
		_ = conn.(*net.UnixConn).CloseWrite()
	}()
	_, _ = io.Copy(os.Stdout, conn)
	return 0
}

// fakeLeaser grants every lease at once; onCheck runs inside each lease's
// Check (n counts that lease's checks from 1) and then Check says the lease
// is held — the moment of a node that checked its fence and then paused.
type fakeLeaser struct {
	onCheck func(n int)
}

func (f *fakeLeaser) Acquire(_ context.Context, _ string, h cluster.Holder) (cluster.Lease, error) {
	return &fakeLease{h: h, onCheck: f.onCheck, lost: make(chan struct{})}, nil
}

type fakeLease struct {
	h       cluster.Holder
	onCheck func(n int)
	lost    chan struct{}
	mu      sync.Mutex
	checks  int
}

func (l *fakeLease) Holder() cluster.Holder        { return l.h }
func (l *fakeLease) Generation() int64             { return 1 }
func (l *fakeLease) Lost() <-chan struct{}         { return l.lost }
func (l *fakeLease) Release(context.Context) error { return nil }
func (l *fakeLease) Check(context.Context) error {
	l.mu.Lock()
	l.checks++
	n := l.checks
	l.mu.Unlock()
	if l.onCheck != nil {
		l.onCheck(n)
	}
	return nil
}

// fakeBuilder "builds" any source into a small slug.
type fakeBuilder struct{}

func (fakeBuilder) Build(_ context.Context, job buildpack.Job) (*buildpack.Result, error) {
	body := []byte("slug of " + job.SourceVersion)
	if _, err := job.Slug.Write(body); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	return &buildpack.Result{
		Buildpacks: []string{"fake"}, Names: []string{"Fake"}, ProcessTypes: map[string]string{"web": "true"},
		Slug: buildpack.PackResult{Size: int64(len(body)), Checksum: "SHA256:" + hex.EncodeToString(sum[:])},
	}, nil
}

type fakeSettings struct{}

func (fakeSettings) BuildSettings(context.Context, string, string) (release.Settings, error) {
	return release.Settings{Config: map[string]string{}}, nil
}

type fakeAccess struct{}

func (fakeAccess) Level(context.Context, keys.User, string) (keys.Level, error) {
	return keys.Collaborator, nil
}
func (fakeAccess) MayCreate(context.Context, keys.User, string) (bool, error) { return true, nil }
func (fakeAccess) Claim(context.Context, keys.User, string) error             { return nil }
func (fakeAccess) NoAccessMessage(app string) string                          { return "no such app: " + app }
func (fakeAccess) Exists(context.Context, keys.User, string) (bool, error)    { return true, nil }

// pushRig is a receiver on a local store with fake builder, access and
// leases, and the real release.Local and git.
type pushRig struct {
	t      *testing.T
	store  *stow.Local
	leases *fakeLeaser
	r      *Receiver
	sock   string
}

func newPushRig(t *testing.T) *pushRig {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git not found in PATH: install git (apt-get install git)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are short; t.TempDir's can be too long.
	data, err := os.MkdirTemp("", "rcv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(data) })
	store, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rig := &pushRig{t: t, store: store, leases: &fakeLeaser{}, sock: filepath.Join(data, "push.sock")}
	rig.r, err = New(Config{DataDir: filepath.Join(data, "d"), Node: "n1", Hook: []string{exe, argHook}},
		Deps{Store: store, Leases: rig.leases, Builder: fakeBuilder{}, Releaser: release.NewLocal(store),
			Settings: fakeSettings{}, Access: fakeAccess{}, Registry: cluster.NewLocalRegistry("n1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rig.r.Close() })
	return rig
}

// push runs `git push` of main from work to app through ReceivePack and
// returns what the pusher saw (git's stderr, with the hook's remote: lines,
// and the server's own stderr lines) and both exit statuses.
func (rig *pushRig) push(app, work string) (out string, code int, gitErr error) {
	t := rig.t
	t.Helper()
	_ = os.Remove(rig.sock)
	ln, err := net.Listen("unix", rig.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	var serverErr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		defer func() { _ = conn.Close() }()
		done <- rig.r.ReceivePack(context.Background(), Request{
			App: app, User: keys.User{Name: "alice"}, ConnID: "c1",
			Stdin: conn, Stdout: conn, Stderr: &serverErr,
		})
	}()
	exe, _ := os.Executable()
	cmd := exec.Command("git", "-c", "protocol.ext.allow=always", "push", "ext::"+exe+" "+argProxy+" "+rig.sock, "main")
	cmd.Dir = work
	var gitOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &gitOut, &gitOut
	gitErr = cmd.Run()
	select {
	case code = <-done:
	case <-time.After(time.Minute):
		t.Fatal("ReceivePack did not return after git push ended")
	}
	return gitOut.String() + serverErr.String(), code, gitErr
}

// records are app's build records, oldest first.
func (rig *pushRig) records(app string) []Record {
	rig.t.Helper()
	infos, err := rig.store.List(context.Background(), "apps/"+app+"/builds/")
	if err != nil {
		rig.t.Fatal(err)
	}
	var out []Record
	for _, info := range infos {
		if strings.HasSuffix(info.Key, ".json") {
			var rec Record
			if _, err := stow.GetJSON(context.Background(), rig.store, info.Key, &rec); err != nil {
				rig.t.Fatal(err)
			}
			out = append(out, rec)
		}
	}
	return out
}

// Issue 11 item 2, the release half. Node A checks its lease, finds it held,
// and pauses (GC, VM steal, SIGSTOP) past the lease's TTL; node B takes the
// lease over and releases v1. A resumes. Its check already said yes, so
// only the write itself can stop it: the release is create-only at the
// version the push started from, so A writes nothing, B's v1 stays current,
// A's slug is deleted, A's build record says why, and A's pusher reads it.
func TestPushSupersededReleaseWritesNothing(t *testing.T) {
	t.Parallel()
	rig := newPushRig(t)
	other := release.NewLocal(rig.store)
	rig.leases.onCheck = func(n int) {
		// Between A's lease check and A's release: B releases.
		if _, err := other.Create(context.Background(), "shop", release.Request{User: "bob", Slug: "apps/shop/slugs/b.tgz"}); err != nil {
			t.Error(err)
		}
	}
	work := workRepo(t)
	out, code, gitErr := rig.push("shop", work)
	if gitErr == nil || code == 0 {
		t.Fatalf("the superseded push succeeded (git %v, exit %d):\n%s", gitErr, code, out)
	}
	want := " !     Push rejected, nothing was released: another push released v1 while this one was building; pull its changes and push again."
	if !strings.Contains(out, want) {
		t.Fatalf("the pusher did not read %q:\n%s", want, out)
	}
	list, err := other.List(context.Background(), "shop")
	if err != nil || len(list) != 1 || list[0].User != "bob" {
		t.Fatalf("releases after the superseded push: %+v %v", list, err)
	}
	if slugs, err := rig.store.List(context.Background(), "apps/shop/slugs/"); err != nil || len(slugs) != 0 {
		t.Fatalf("the superseded push's slug is still stowed: %+v %v", slugs, err)
	}
	if _, err := rig.store.Stat(context.Background(), manifestKey("shop")); !errors.Is(err, stow.ErrNotFound) {
		t.Fatalf("the superseded push stowed its repository: %v", err)
	}
	recs := rig.records("shop")
	if len(recs) != 1 || recs[0].Status != StatusFailed || !strings.HasPrefix(recs[0].Reason, "superseded") {
		t.Fatalf("build records %+v", recs)
	}
}

// Issue 11 item 2, the repository half. A's push released, checked its lease
// before stowing, and paused; meanwhile another push stowed the app's
// repository. The manifest is swapped only over the one A restored from, so
// A's stale repository does not replace the newer one, the bundle A
// uploaded is deleted, and A's pusher is told that retrying will not help.
func TestPushStowSupersededKeepsNewerRepository(t *testing.T) {
	t.Parallel()
	rig := newPushRig(t)
	work := workRepo(t)
	if out, code, gitErr := rig.push("shop", work); gitErr != nil || code != 0 {
		t.Fatalf("first push: git %v, exit %d:\n%s", gitErr, code, out)
	}
	var newer manifest
	rig.leases.onCheck = func(n int) {
		if n != 2 { // 1 is before the release, 2 before the manifest
			return
		}
		// Another push stows a newer generation of the repository.
		info, err := stow.GetJSON(context.Background(), rig.store, manifestKey("shop"), &newer)
		if err != nil {
			t.Error(err)
			return
		}
		newer.Generation++
		newer.ID = "another-push"
		if _, err := stow.SwapJSON(context.Background(), rig.store, manifestKey("shop"), newer, info.ETag); err != nil {
			t.Error(err)
		}
	}
	commitFile(t, work, "b.txt", []byte("b\n"))
	out, code, gitErr := rig.push("shop", work)
	got, err := rig.r.repos.readManifest(context.Background(), "shop")
	if err != nil || got == nil || got.ID != "another-push" {
		t.Fatalf("stowed manifest %+v, %v; want the other push's", got, err)
	}
	want := "warning: the repository was not stowed: another push stowed the app's repository while this one ran"
	if !strings.Contains(out, want) {
		t.Fatalf("the pusher did not read %q (git %v, exit %d):\n%s", want, gitErr, code, out)
	}
	assertOnlyManifestBundles(t, rig.store, got)
}
