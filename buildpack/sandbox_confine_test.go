package buildpack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// needBuildNetwork fails loudly where the build network cannot be set up.
func needBuildNetwork(t *testing.T) {
	t.Helper()
	needBwrap(t)
	for tool, pkg := range map[string]string{"slirp4netns": "slirp4netns", "nft": "nftables", "nsenter": "util-linux"} {
		if _, err := lookTool(tool); err != nil {
			t.Fatalf("%s is required for the build network tests: apt-get install %s (make deps)", tool, pkg)
		}
	}
	if err := New(Config{Sandbox: SandboxBwrap}).NetworkIsolation(); err != nil {
		t.Fatalf("the build network does not work on this machine: %v", err)
	}
}

// needLimits fails loudly where builds cannot be limited.
func needLimits(t *testing.T) {
	t.Helper()
	if pids, mem, err := New(Config{}).Limits(); pids == 0 || mem == 0 {
		t.Fatalf("build limits need cgroup pids and memory controllers the server can use: %v", err)
	}
}

// serveToken accepts connections on ln and greets each with token.
func serveToken(t *testing.T, ln net.Listener, token string) {
	t.Helper()
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(token + "\n"))
			_ = c.Close()
		}
	}()
}

// tryConnect is a shell function for build scripts: `try NAME HOST PORT`
// prints "reached NAME: <greeting>", or "refused NAME" when it cannot
// connect.
const tryConnect = `try() {
	if got=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1; head -n 1 <&3 || true' "$2" "$3" 2>/dev/null); then
		echo "reached $1: $got"
	else
		echo "refused $1"
	fi
}
`

// Issue 10: a build's network reached the host's loopback, so a buildpack
// could read the server's /metrics, talk to its SSH port or to any service
// on the node (a Redis in cluster mode), and through slirp-style host
// mappings or the host's own addresses reach services bound to all
// interfaces. Now a sandboxed build has a network namespace of its own: its
// 127.0.0.1 is its own, slirp's host address 10.0.2.2 and every address of
// this host are refused, and the build itself still succeeds.
func TestSandboxNetworkRefusesHost(t *testing.T) {
	t.Parallel()
	needBuildNetwork(t)
	all, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	serveToken(t, all, "host-any")
	loop, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveToken(t, loop, "host-loopback")
	anyPort := strconv.Itoa(all.Addr().(*net.TCPAddr).Port)
	loopPort := strconv.Itoa(loop.Addr().(*net.TCPAddr).Port)

	script := tryConnect
	script += "try loopback 127.0.0.1 " + loopPort + "\n"
	script += "try loopback-any 127.0.0.1 " + anyPort + "\n"
	script += "try slirp-host 10.0.2.2 " + loopPort + "\n"
	script += "try slirp-host-any 10.0.2.2 " + anyPort + "\n"
	script += "try slirp-dns 10.0.2.3 " + anyPort + "\n"
	tries := 5
	for _, a := range hostAddrs() {
		if a.Is4() {
			script += fmt.Sprintf("try host-%s %s %s\n", a, a, anyPort)
			tries++
		}
	}
	script += `echo "resolv: $(grep nameserver /etc/resolv.conf | tr '\n' ' ')"` + "\n"
	script += `echo ok > "$1/built"`
	bp := writeBuildpack(t, "echo Net", script, "")
	f := newJob(t, nil)
	if _, err := build(t, Config{Defaults: []string{bp}, Sandbox: SandboxBwrap}, f); err != nil {
		t.Fatalf("the build itself should succeed: %v\n%s", err, f.out)
	}
	out := f.out.String()
	if strings.Contains(out, "reached") || strings.Count(out, "refused ") != tries {
		t.Fatalf("the build reached the host:\n%s", out)
	}
	if !strings.Contains(out, "resolv: nameserver 10.0.2.3 \n") {
		t.Errorf("the build does not resolve names through slirp4netns's forwarder:\n%s", out)
	}
}

// The ruleset refuses slirp's host and the host's own addresses before the
// operator's allow-list, which comes before the private ranges; a host
// address is only reachable when the allow-list names it alone.
func TestSandboxNetworkRules(t *testing.T) {
	t.Parallel()
	allow, err := ParseNetAllow([]string{"10.1.0.0/16", "10.1.2.0/24", "192.0.2.7", " fd00:1::/64 ", "::ffff:172.16.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.1.2.0/24"),
		netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("fd00:1::/64"), netip.MustParsePrefix("172.16.0.1/32")}
	if fmt.Sprint(allow) != fmt.Sprint(want) {
		t.Fatalf("ParseNetAllow = %v, want %v", allow, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "fe80::1%eth0"} {
		if _, err := ParseNetAllow([]string{bad}); !errors.Is(err, ErrNetAllow) {
			t.Errorf("ParseNetAllow(%q) = %v", bad, err)
		}
	}
	hosts := []netip.Addr{netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::1")}
	rules := netRules(allow, hosts)
	order := []string{
		`oifname "lo" accept`,
		"ip daddr 10.0.2.3 udp dport 53 accept",
		"ip daddr { 10.0.2.2, 10.0.2.3 } jump refuse",
		"ip daddr { 10.1.0.5 } jump refuse",
		"ip6 daddr { 2001:db8::1 } jump refuse",
		"ip daddr { 10.1.0.0/16, 172.16.0.1/32, 192.0.2.7/32 } accept",
		"ip6 daddr { fd00:1::/64 } accept",
		"ip daddr { 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16",
		"ip6 daddr { ::/127, ::ffff:0:0/96",
	}
	at := 0
	for _, r := range order {
		i := strings.Index(rules[at:], r)
		if i < 0 {
			t.Fatalf("rule %q missing or out of order:\n%s", r, rules)
		}
		at += i
	}
	for _, private := range []string{"fc00::/7", "fe80::/10", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3"} {
		if !strings.Contains(rules, private) {
			t.Errorf("%s is not refused:\n%s", private, rules)
		}
	}
	// The rules load into a real namespace (nft checks them), when nft is here.
	needBuildNetwork(t)
	tools, err := findNetTools("slirp4netns", "nft")
	if err != nil {
		t.Fatal(err)
	}
	n, err := tools.start(context.Background(), t.TempDir(), allow)
	if err != nil {
		t.Fatalf("the ruleset does not load: %v", err)
	}
	n.close()
}

// Where the build network cannot be set up, --sandbox=auto builds run with
// no network at all rather than the host's, and --sandbox=bwrap builds are
// refused.
func TestSandboxNetworkUnavailable(t *testing.T) {
	t.Parallel()
	needBwrap(t)
	missing := filepath.Join(t.TempDir(), "no-slirp4netns")
	loop, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveToken(t, loop, "host-loopback")
	port := strconv.Itoa(loop.Addr().(*net.TCPAddr).Port)
	bp := writeBuildpack(t, "echo Net", tryConnect+"try loopback 127.0.0.1 "+port+"\necho \"interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')\"", "")

	auto := New(Config{Defaults: []string{bp}, Slirp4netns: missing})
	if err := auto.NetworkIsolation(); !errors.Is(err, ErrBuildNetwork) || !strings.Contains(err.Error(), "slirp4netns") {
		t.Fatalf("auto without slirp4netns: %v", err)
	}
	f := newJob(t, nil)
	if _, err := auto.Build(context.Background(), f.job); err != nil {
		t.Fatalf("auto without slirp4netns should build: %v\n%s", err, f.out)
	}
	if out := f.out.String(); !strings.Contains(out, "refused loopback") || !strings.Contains(out, "interfaces: lo \n") {
		t.Fatalf("auto without slirp4netns should build without a network:\n%s", out)
	}

	strict := New(Config{Defaults: []string{bp}, Slirp4netns: missing, Sandbox: SandboxBwrap})
	f = newJob(t, nil)
	_, err = strict.Build(context.Background(), f.job)
	if !errors.Is(err, ErrBuildNetwork) || strings.Contains(f.out.String(), "loopback") ||
		!strings.Contains(f.out.String(), " !     Push rejected, the build sandbox could not be set up; tell the operator.") {
		t.Fatalf("bwrap without slirp4netns: %v\n%s", err, f.out)
	}
}

// forkBomb forks without end in a real bomb's shape, but only to a depth
// where a machine without the limit survives it (about 500 processes that
// sleep briefly): this test must be able to fail there.
const forkBomb = `bomb() { if [ "$1" -gt 0 ]; then bomb $(($1-1)) & bomb $(($1-1)) & wait; else sleep 5; fi; }
bomb 8`

// memoryHog holds 256 MiB in a shell variable.
const memoryHog = `x=$(head -c 268435456 /dev/zero | tr '\0' x)
echo "hog holds ${#x} bytes"`

// Issue 10 item 6: a build had no process or memory bound, so a fork bomb
// or a runaway compile could take the server down. Now each build has a
// cgroup of its own; hitting either limit ends that build with a line that
// says which, sandboxed or not, and the cgroup is gone afterwards.
func TestSandboxLimitsEndBuild(t *testing.T) {
	t.Parallel()
	needLimits(t)
	needBwrap(t)
	for _, tc := range []struct {
		name, script string
		mode         SandboxMode
		want         error
		line         string
	}{
		{"fork bomb", forkBomb, SandboxBwrap, ErrProcessLimit, " !     Push rejected, the build hit its process limit (48)."},
		{"fork bomb unsandboxed", forkBomb, SandboxNone, ErrProcessLimit, " !     Push rejected, the build hit its process limit (48)."},
		{"memory hog", memoryHog, SandboxBwrap, ErrMemoryLimit, " !     Push rejected, the build hit its memory limit (48M)."},
		{"memory hog unsandboxed", memoryHog, SandboxNone, ErrMemoryLimit, " !     Push rejected, the build hit its memory limit (48M)."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bp := writeBuildpack(t, "echo Hostile", tc.script, "")
			f := newJob(t, nil)
			_, err := build(t, Config{Defaults: []string{bp}, Sandbox: tc.mode, BuildPids: 48, BuildMemory: 48 << 20}, f)
			out := f.out.String()
			if !errors.Is(err, tc.want) || !strings.Contains(out, "\n"+tc.line+"\n") {
				t.Fatalf("err = %v, want %v and %q:\n%s", err, tc.want, tc.line, out)
			}
			if strings.Count(out, "Push rejected") != 1 || strings.Contains(out, "hog holds") || strings.Contains(out, "Compressing") {
				t.Fatalf("one reason, and the build ended:\n%s", out)
			}
		})
	}
}

// DESIGN rule 6: everything a build starts for its confinement (the network
// namespace's holder, slirp4netns, the cgroup) is gone when the build ends,
// whether it succeeded, failed, was cancelled or hit a limit.
func TestSandboxConfinementLeavesNothing(t *testing.T) {
	needBuildNetwork(t)
	needLimits(t)
	before := childProcs()
	for _, tc := range []struct {
		name, script string
		cancel       bool
	}{
		{"success", "echo built", false},
		{"failure", "exit 3", false},
		{"limit", forkBomb, false},
		{"cancel", "echo started; sleep 1000", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bp := writeBuildpack(t, "echo X", tc.script, "")
			f := newJob(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := New(Config{Defaults: []string{bp}, Sandbox: SandboxBwrap, BuildPids: 48}).Build(ctx, f.job)
				done <- err
			}()
			if tc.cancel {
				waitFor(t, "compile to start", func() bool { return strings.Contains(f.out.String(), "started") })
				if len(childProcs()) <= len(before) {
					t.Fatal("no helper processes while the build runs")
				}
				if len(buildCgroups(t)) == 0 {
					t.Fatal("no cgroup while the build runs")
				}
				cancel()
			}
			err := <-done
			if tc.name == "success" && err != nil {
				t.Fatalf("%v\n%s", err, f.out)
			}
			if got := childProcs(); len(got) != len(before) {
				t.Fatalf("processes left after the build: %v (before: %v)", got, before)
			}
			if left := buildCgroups(t); len(left) != 0 {
				t.Fatalf("cgroups left after the build: %v", left)
			}
		})
	}
}

// childProcs lists this process's live children.
func childProcs() []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		rest := string(st)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+2:]
		}
		if f := strings.Fields(rest); len(f) > 1 && f[1] == self && f[0] != "Z" {
			comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
			out = append(out, e.Name()+":"+strings.TrimSpace(string(comm)))
		}
	}
	return out
}

// buildCgroups lists this process's build cgroups.
func buildCgroups(t *testing.T) []string {
	t.Helper()
	self, _ := os.ReadFile("/proc/self/cgroup")
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	pids, mem := findCgroups(self, mi)
	var out []string
	for _, c := range []*cgroupCtl{pids, mem} {
		if c == nil {
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(c.parent, fmt.Sprintf("sokoban-build-%d-*", os.Getpid())))
		out = append(out, matches...)
	}
	return out
}

// cgroup discovery reads v1 hierarchies and a v2 mount from the proc files,
// v2 winning where it has the controller.
func TestSandboxFindsCgroups(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	v2 := filepath.Join(root, "unified")
	if err := os.MkdirAll(filepath.Join(v2, "system.slice", "sokoban.service"), 0o755); err != nil {
		t.Fatal(err)
	}
	mountinfo := fmt.Sprintf(`25 30 0:22 / /sys rw - sysfs sysfs rw
35 25 0:30 / %[1]s/pids rw,relatime shared:14 - cgroup cgroup rw,pids
36 25 0:31 / %[1]s/memory rw,relatime shared:15 - cgroup cgroup rw,memory
37 25 0:32 / %[1]s/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
38 25 0:33 / %[2]s rw - cgroup2 cgroup2 rw
`, root, v2)
	self := "8:pids:/a\n4:memory:/b/c\n3:cpu,cpuacct:/\n0::/system.slice/sokoban.service\n"
	pids, mem := findCgroups([]byte(self), []byte(mountinfo))
	if pids == nil || pids.v2 || pids.parent != filepath.Join(root, "pids", "a") ||
		mem == nil || mem.v2 || mem.parent != filepath.Join(root, "memory", "b", "c") {
		t.Fatalf("v1: pids %+v, memory %+v", pids, mem)
	}
	// Once v2 offers them, v2 is used.
	svc := filepath.Join(v2, "system.slice", "sokoban.service")
	if err := os.WriteFile(filepath.Join(svc, "cgroup.controllers"), []byte("cpu io memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pids, mem = findCgroups([]byte(self), []byte(mountinfo))
	if pids == nil || !pids.v2 || pids.parent != svc || mem == nil || !mem.v2 || mem.parent != svc {
		t.Fatalf("v2: pids %+v, memory %+v", pids, mem)
	}
	// The v2 service cgroup holds the server: it moves into a leaf of its
	// own before the controllers are turned on for its children.
	for name, body := range map[string]string{"cgroup.subtree_control": "", "cgroup.procs": strconv.Itoa(os.Getpid()) + "\n"} {
		if err := os.WriteFile(filepath.Join(svc, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := enableV2(pids, mem, []string{"pids", "memory"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(svc, "server", "cgroup.procs")); string(b) != strconv.Itoa(os.Getpid()) {
		t.Errorf("the server did not move into its leaf: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(svc, "cgroup.subtree_control")); string(b) != "+pids +memory" {
		t.Errorf("subtree_control = %q", b)
	}
	// A cgroup shared with other processes is not the server's to split.
	if err := os.WriteFile(filepath.Join(svc, "cgroup.procs"), []byte("1\n"+strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(svc, "cgroup.subtree_control"), nil, 0o644)
	if err := enableV2(pids, mem, []string{"pids", "memory"}); err == nil || !strings.Contains(err.Error(), "Delegate=yes") {
		t.Errorf("shared cgroup: %v", err)
	}
}
