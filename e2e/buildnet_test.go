package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needBuildNetwork fails loudly where the build network cannot be set up.
func needBuildNetwork(t *testing.T) {
	t.Helper()
	needBwrap(t)
	for tool, pkg := range map[string]string{"slirp4netns": "slirp4netns", "nft": "nftables", "nsenter": "util-linux"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				t.Fatalf("%s is required for the build network tests: apt-get install %s (make deps)", tool, pkg)
			}
		}
	}
}

// tryScript is a compile script that connects to each NAME HOST PORT line
// of the buildpack's targets file (written by the test once the server
// runs), sends an HTTP request (so that the ops port answers too) and
// prints "reached NAME: <first line>" once connected, or "refused NAME"
// when it cannot connect.
const tryScript = `targets="$(dirname "$0")/../targets"
while read -r name host port; do
	if got=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; head -n 1 <&3 || true' "$host" "$port" 2>/dev/null); then
		echo "reached $name: $got"
	else
		echo "refused $name"
	fi
done < "$targets"
echo built > "$1/built"`

// target is one destination a build tries.
type target struct{ name, host, port string }

func writeTargets(t *testing.T, bp string, targets []target) {
	t.Helper()
	var b strings.Builder
	for _, tg := range targets {
		fmt.Fprintf(&b, "%s %s %s\n", tg.name, tg.host, tg.port)
	}
	if err := os.WriteFile(filepath.Join(bp, "targets"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// greet accepts connections on ln and says token to each. It reads what
// the client sends until the client hangs up: closing with unread input
// would reset the connection before the client reads the token.
func greet(t *testing.T, ln net.Listener, token string) string {
	t.Helper()
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_, _ = c.Write([]byte(token + "\n"))
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// Issue 10: "A build's network reaches the host's loopback: the server's
// /metrics, its SSH port, and whatever else listens there (in cluster mode,
// a Redis on the node)." A buildpack tries the server's ops port and SSH
// port, a loopback listener the test opens (standing in for that Redis),
// each through 127.0.0.1 and through slirp4netns's mapping of the host
// (10.0.2.2), and a listener on all interfaces through each of this host's
// addresses. Every one is refused, and the build itself succeeds.
func TestBuildNetworkRefusesHost(t *testing.T) {
	t.Parallel()
	needBuildNetwork(t)
	redis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	redisPort := greet(t, redis, "+PONG from the node's redis")
	all, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	allPort := greet(t, all, "a service on every interface")

	bp := buildpack(t, "prober", "echo Prober", tryScript, "")
	srv := startServer(t, "--sandbox", "bwrap", "--buildpacks", bp)
	b, err := os.ReadFile(filepath.Join(srv.data, "http.addr"))
	if err != nil {
		t.Fatal(err)
	}
	opsPort := portOf(strings.TrimSpace(string(b)))
	// The test itself reaches the ops port: it is there to be found.
	if code, _ := srv.httpGet("/metrics"); code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	targets := []target{
		{"ops-loopback", "127.0.0.1", opsPort}, {"ops-slirp-host", "10.0.2.2", opsPort},
		{"ssh-loopback", "127.0.0.1", srv.port}, {"ssh-slirp-host", "10.0.2.2", srv.port},
		{"redis-loopback", "127.0.0.1", redisPort}, {"redis-slirp-host", "10.0.2.2", redisPort},
		{"any-slirp-host", "10.0.2.2", allPort},
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			targets = append(targets, target{"host-" + ipn.IP.String(), ipn.IP.String(), allPort})
		}
	}
	writeTargets(t, bp, targets)

	alice := srv.addUser("alice@example.com", false)
	app := newApp(t, map[string]string{"index.html": "hi"})
	res := runResult(t, srv.git(alice, app, "push", srv.remote("prober"), "main"))
	if res.code != 0 || !strings.Contains(res.stderr, "Released v1") {
		t.Fatalf("the build itself should succeed:\n%s", res)
	}
	if strings.Contains(res.stderr, "reached") || strings.Count(res.stderr, "refused ") != len(targets) {
		t.Fatalf("the build reached the host:\n%s", res.stderr)
	}
	waitNoBuildHelpers(t, srv)
}

// outside is a network namespace standing in for the world beyond the
// host: a router at 198.51.100.2 (TEST-NET-2) reached through a veth pair
// whose host end is 198.51.100.1, which also answers for the cloud
// metadata address 169.254.169.254. Everything goes away with its holder.
type outside struct {
	pid  int // the holder of the namespace
	host string
}

const (
	outsideHost     = "198.51.100.1" // the host's end: one of the host's own addresses
	outsideRouter   = "198.51.100.2"
	metadataAddress = "169.254.169.254"
)

func newOutside(t *testing.T) *outside {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test makes a network namespace and a veth pair: run it as root")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal("ip is required: apt-get install iproute2 (make deps)")
	}
	holder := exec.Command("sleep", "100000")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := holder.Start(); err != nil {
		t.Fatalf("make a network namespace: %v", err)
	}
	o := &outside{pid: holder.Process.Pid, host: fmt.Sprintf("sokt%d", os.Getpid()%100000)}
	t.Cleanup(func() {
		_ = exec.Command(ip, "link", "del", o.host).Run()
		_ = holder.Process.Kill()
		_ = holder.Wait()
	})
	peer := o.host + "p"
	pid := strconv.Itoa(o.pid)
	inside := []string{"nsenter", "--net=/proc/" + pid + "/ns/net", ip}
	for _, argv := range [][]string{
		{ip, "link", "add", o.host, "type", "veth", "peer", "name", peer, "netns", pid},
		{ip, "addr", "add", outsideHost + "/24", "dev", o.host},
		{ip, "link", "set", o.host, "up"},
		{ip, "route", "add", metadataAddress + "/32", "via", outsideRouter, "dev", o.host},
		append(inside, "link", "set", "lo", "up"),
		append(inside, "addr", "add", outsideRouter+"/24", "dev", peer),
		append(inside, "addr", "add", metadataAddress+"/32", "dev", peer),
		append(inside, "link", "set", peer, "up"),
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	return o
}

// listen opens a TCP listener inside the namespace: the socket stays there
// after this thread goes back to the host's namespace.
func (o *outside) listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() { _ = self.Close() }()
	ns, err := os.Open("/proc/" + strconv.Itoa(o.pid) + "/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() { _ = ns.Close() }()
	if err := setns(ns); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns: %v", err)
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := setns(self); err != nil {
		// This thread is in the wrong namespace: let it die with the goroutine.
		t.Fatalf("setns back: %v", err)
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		t.Fatal(lerr)
	}
	return ln
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// reach is what the test itself gets from addr.
func reach(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("the test cannot reach %s: %v", addr, err)
	}
	defer func() { _ = c.Close() }()
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// Issue 10 item 5: the sandbox's network reaches the outside world
// (buildpacks download toolchains) but not the cloud's metadata endpoint,
// which hands out the node's credentials. Tests may not use the real
// network, so the outside world is a namespace this test makes: a listener
// on a TEST-NET address there is reachable from the build; one on
// 169.254.169.254 is not, nor one on the host's own end of the link, while
// the test itself reaches all three. With --build-net-allow naming the
// metadata address, the operator opens that one destination.
func TestBuildNetworkReachesOutside(t *testing.T) {
	t.Parallel()
	needBuildNetwork(t)
	o := newOutside(t)
	worldPort := greet(t, o.listen(t, outsideRouter+":0"), "hello from the world")
	metaPort := greet(t, o.listen(t, metadataAddress+":0"), "AccessKeyId=AKIA-node-credentials")
	hostLn, err := net.Listen("tcp", outsideHost+":0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := greet(t, hostLn, "the host's own address")
	for addr, want := range map[string]string{
		outsideRouter + ":" + worldPort: "hello from the world", metadataAddress + ":" + metaPort: "AccessKeyId=AKIA-node-credentials",
		outsideHost + ":" + hostPort: "the host's own address",
	} {
		if got := reach(t, addr); got != want {
			t.Fatalf("the test reads %q from %s, want %q", got, addr, want)
		}
	}
	targets := []target{{"world", outsideRouter, worldPort}, {"metadata", metadataAddress, metaPort}, {"host-end", outsideHost, hostPort}}

	for _, tc := range []struct {
		name  string
		args  []string
		reach []string
	}{
		{"default", nil, []string{"world"}},
		{"allowed", []string{"--build-net-allow", metadataAddress + "/32"}, []string{"world", "metadata"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bp := buildpack(t, "prober", "echo Prober", tryScript, "")
			writeTargets(t, bp, targets)
			srv := startServer(t, append([]string{"--sandbox", "bwrap", "--buildpacks", bp}, tc.args...)...)
			alice := srv.addUser("alice@example.com", false)
			app := newApp(t, map[string]string{"index.html": "hi"})
			res := runResult(t, srv.git(alice, app, "push", srv.remote("prober"), "main"))
			if res.code != 0 || !strings.Contains(res.stderr, "Released v1") {
				t.Fatalf("the build should succeed:\n%s", res)
			}
			for _, tg := range targets {
				want := "refused " + tg.name
				for _, r := range tc.reach {
					if r == tg.name {
						want = "reached " + tg.name + ": "
					}
				}
				if !strings.Contains(res.stderr, "remote: "+want) {
					t.Errorf("want %q:\n%s", want, res.stderr)
				}
			}
			waitNoBuildHelpers(t, srv)
		})
	}
}

// gatedFine is a buildpack for apps without a bomb file: it says "waiting",
// sleeps until the test kills the sleep (found by marker on the host), and
// builds.
func gatedFine(t *testing.T, marker string) string {
	return buildpack(t, "fine", `[ -f "$1/bomb" ] && exit 1; echo Fine`,
		`echo waiting; sleep `+marker+`; echo "fine built"`, "")
}

// Issue 10 item 6: builds had no process bound, so one fork bomb could take
// the server (and every other build) down. With --build-pids the bomb ends
// its own build with a line saying why; the server stays up, and another
// app's build that runs at the same time releases.
//
// The bomb forks like a real one but only to a depth a machine without the
// limit survives (about 500 processes), so this test can fail there.
func TestForkBombEndsOnlyItsBuild(t *testing.T) {
	t.Parallel()
	needBuildNetwork(t)
	marker := fmt.Sprintf("1000.%d%06d", os.Getpid(), time.Now().UnixNano()%1e6)
	bomb := buildpack(t, "bomb", `[ -f "$1/bomb" ] && echo Bomb`,
		`bomb() { if [ "$1" -gt 0 ]; then bomb $(($1-1)) & bomb $(($1-1)) & wait; else sleep 5; fi; }
bomb 8`, "")
	srv := startServer(t, "--sandbox", "bwrap", "--build-pids", "64", "--buildpacks", bomb+","+gatedFine(t, marker))
	alice := srv.addUser("alice@example.com", false)

	fine := srv.git(alice, newApp(t, map[string]string{"index.html": "hi"}), "push", srv.remote("fine"), "main")
	lines, wait := followPush(t, fine)
	waitLine(t, lines, `^remote: waiting`)
	waitFor(t, "the fine build's sleep", func() bool { return len(markerProcs(marker)) > 0 })

	res := runResult(t, srv.git(alice, newApp(t, map[string]string{"bomb": "x"}), "push", srv.remote("bomb"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "\nremote:  !     Push rejected, the build hit its process limit (64).") {
		t.Fatalf("the bomb's push:\n%s", res)
	}
	select {
	case <-srv.done:
		t.Fatalf("the server died:\n%s", srv.log)
	default:
	}
	if r := runResult(t, srv.ssh(alice, "whoami")); r.code != 0 {
		t.Fatalf("whoami after the bomb:\n%s", r)
	}
	// The other build went on meanwhile; now let it finish.
	for _, pid := range markerProcs(marker) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	waitLine(t, lines, `^remote: fine built`)
	waitLine(t, lines, `^remote:        Released v1`)
	for range lines {
	}
	if err := wait(); err != nil {
		t.Fatalf("the fine app's push: %v", err)
	}
	waitNoBuildHelpers(t, srv)
}

// Issue 10 item 6: a runaway compile had no memory bound. With
// --build-memory, a build that holds more ends with a line saying why, and
// the server stays up.
func TestMemoryHogEndsItsBuild(t *testing.T) {
	t.Parallel()
	needBuildNetwork(t)
	hog := buildpack(t, "hog", "echo Hog", `x=$(head -c 268435456 /dev/zero | tr '\0' x)
echo "hog holds ${#x} bytes"`, "")
	srv := startServer(t, "--sandbox", "bwrap", "--build-memory", "64M", "--buildpacks", hog)
	alice := srv.addUser("alice@example.com", false)
	res := runResult(t, srv.git(alice, newApp(t, map[string]string{"index.html": "hi"}), "push", srv.remote("hog"), "main"))
	if res.code == 0 || !strings.Contains(res.stderr, "\nremote:  !     Push rejected, the build hit its memory limit (64M).") ||
		strings.Contains(res.stderr, "hog holds") {
		t.Fatalf("the hog's push:\n%s", res)
	}
	if r := runResult(t, srv.ssh(alice, "whoami")); r.code != 0 {
		t.Fatalf("whoami after the hog:\n%s", r)
	}
	waitNoBuildHelpers(t, srv)
}

// waitNoBuildHelpers waits until the server has no child process left (the
// build network's holder and slirp4netns die with the build) and no build
// cgroup.
func waitNoBuildHelpers(t *testing.T, srv *server) {
	t.Helper()
	pid := srv.cmd.Process.Pid
	waitFor(t, "the build's helpers and cgroups to go", func() bool {
		return len(childrenOf(pid)) == 0 && len(buildCgroupsOf(pid)) == 0
	})
}

// childrenOf lists the live children of pid.
func childrenOf(pid int) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	parent := strconv.Itoa(pid)
	for _, e := range entries {
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		rest := string(st)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+2:]
		}
		if f := strings.Fields(rest); len(f) > 1 && f[1] == parent && f[0] != "Z" {
			out = append(out, e.Name())
		}
	}
	return out
}

// buildCgroupsOf lists the build cgroups of the server with this pid, in
// every hierarchy it is in.
func buildCgroupsOf(pid int) []string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/*"} {
			m, _ := filepath.Glob(filepath.Join(root, parts[2], fmt.Sprintf("sokoban-build-%d-*", pid)))
			out = append(out, m...)
		}
	}
	return out
}
