package buildpack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A sandboxed build has a network namespace of its own (README "Sandbox"):
// slirp4netns gives it user-mode networking to the outside world, with its
// mapping of 10.0.2.2 to the host's loopback turned off, and nftables rules
// inside the namespace refuse every loopback, link-local, private and
// otherwise special destination, and every address of the host itself, that
// the operator did not allow (--build-net-allow). The build has no
// capability over that namespace, so it cannot change the rules.
//
// The namespace is held by a small process (the holder) for the whole build;
// each step's bwrap enters it with nsenter. Holder and slirp4netns die with
// the build, and with the server (Pdeathsig).

// slirp4netns's fixed addresses (--configure): the host and the DNS
// forwarder; the build itself is 10.0.2.100.
const (
	slirpHost = "10.0.2.2"
	slirpDNS  = "10.0.2.3"
)

// Destinations no build reaches unless the operator allows them: this
// network, private ranges, shared address space (CGNAT, also cloud-internal
// services such as 100.100.100.200), loopback, link-local (the cloud
// metadata endpoint 169.254.169.254), IETF protocol assignments,
// benchmarking, multicast and reserved; for IPv6 the same kinds, including
// unique local addresses (AWS's fd00:ec2::254) and the v4-mapped and NAT64
// forms of IPv4 addresses. The documentation ranges (TEST-NET) are not
// private services of anyone and stay reachable.
var (
	privateNets4 = []string{"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3"}
	privateNets6 = []string{"::/127", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
		"fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"}
)

// ParseNetAllow reads --build-net-allow entries: CIDRs, or single addresses.
func ParseNetAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%w: %q (use CIDRs such as 10.1.0.0/16)", ErrNetAllow, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// netRules is the nftables ruleset of a build's namespace. Order matters:
// the build's own loopback and slirp's DNS forwarder first; slirp's host
// address never; the host's own addresses even when an allowed range
// covers them (unless the allow-list names the address alone); then the
// allow-list; then the private ranges.
func netRules(allow []netip.Prefix, host []netip.Addr) string {
	exact := map[netip.Addr]bool{}
	for _, p := range allow {
		if p.IsSingleIP() {
			exact[p.Addr()] = true
		}
	}
	var host4, host6, allow4, allow6 []string
	for _, a := range host {
		a = a.Unmap()
		if exact[a] || !a.IsValid() {
			continue
		}
		if a.Is4() {
			host4 = append(host4, a.String())
		} else {
			host6 = append(host6, a.WithZone("").String())
		}
	}
	for _, p := range disjoint(allow) {
		if p.Addr().Is4() {
			allow4 = append(allow4, p.String())
		} else {
			allow6 = append(allow6, p.String())
		}
	}
	var b strings.Builder
	b.WriteString("table inet sokoban {\n")
	// Refused at once, so a build fails fast instead of waiting for a timeout.
	b.WriteString("\tchain refuse {\n\t\tmeta l4proto tcp reject with tcp reset\n\t\treject with icmpx type admin-prohibited\n\t}\n")
	b.WriteString("\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n")
	rule := func(format string, args ...any) { fmt.Fprintf(&b, "\t\t"+format+"\n", args...) }
	set := func(family string, elems []string, verdict string) {
		if len(elems) > 0 {
			rule("%s daddr { %s } %s", family, strings.Join(elems, ", "), verdict)
		}
	}
	for _, l := range []*[]string{&host4, &host6, &allow4, &allow6} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
	rule(`oifname "lo" accept`)
	rule("ip daddr %s udp dport 53 accept", slirpDNS)
	rule("ip daddr %s tcp dport 53 accept", slirpDNS)
	rule("ip daddr { %s, %s } jump refuse", slirpHost, slirpDNS)
	set("ip", host4, "jump refuse")
	set("ip6", host6, "jump refuse")
	set("ip", allow4, "accept")
	set("ip6", allow6, "accept")
	set("ip", privateNets4, "jump refuse")
	set("ip6", privateNets6, "jump refuse")
	b.WriteString("\t}\n}\n")
	return b.String()
}

// disjoint drops the prefixes another one covers: nftables refuses
// overlapping intervals in one set.
func disjoint(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		covered := false
		for _, q := range ps {
			if q != p && q.Bits() <= p.Bits() && q.Contains(p.Addr()) && q.Addr().BitLen() == p.Addr().BitLen() {
				covered = true
				break
			}
		}
		if !covered && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// hostAddrs are the addresses of this host's interfaces: a service that
// listens on all of them (0.0.0.0) must not be reachable through its
// public address either.
func hostAddrs() []netip.Addr {
	addrs, _ := net.InterfaceAddrs()
	var out []netip.Addr
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ad, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ad.Unmap())
			}
		}
	}
	return out
}

// resolvConf points the build at slirp's DNS forwarder, which asks the
// host's resolvers; the host's own nameserver lines name addresses the build
// cannot reach (a loopback stub resolver, a private DNS server). The host's
// search and options lines are kept.
func resolvConf() []byte {
	var b bytes.Buffer
	b.WriteString("nameserver " + slirpDNS + "\n")
	host, _ := os.ReadFile("/etc/resolv.conf")
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && (f[0] == "search" || f[0] == "domain" || f[0] == "options") {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.Bytes()
}

// netTools are the programs a build network needs.
type netTools struct {
	slirp, nft, nsenter string
	slirpExtra          []string // slirp4netns's own hardening, where it works
}

// findNetTools looks the programs up, also in /usr/sbin and /sbin, which
// a service's PATH may lack.
func findNetTools(slirp, nft string) (*netTools, error) {
	t := &netTools{}
	var missing []string
	for _, p := range []struct {
		name, pkg string
		dst       *string
	}{{slirp, "slirp4netns", &t.slirp}, {nft, "nftables", &t.nft}, {"nsenter", "util-linux", &t.nsenter}} {
		path, err := lookTool(p.name)
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", p.name, p.pkg))
			continue
		}
		*p.dst = path
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: not installed: %s", ErrBuildNetwork, strings.Join(missing, ", "))
	}
	return t, nil
}

func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil || strings.Contains(name, "/") {
		return p, err
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p, err2 := exec.LookPath(filepath.Join(dir, name)); err2 == nil {
			return p, nil
		}
	}
	return "", err
}

// buildNet is one build's network namespace and what keeps it connected.
type buildNet struct {
	nsenter  string
	userns   bool // a non-root server's namespace has a user namespace of its own
	pid      int  // the holder's: /proc/PID/ns/net
	holder   *exec.Cmd
	holderIn *os.File // closing it ends the holder
	slirp    *exec.Cmd
}

// start sets up a build's network: dir is the build's private scratch
// directory (the ruleset and the helpers' log go there). The namespace is
// filtered before slirp4netns connects it, so no packet ever leaves it
// unfiltered.
func (t *netTools) start(ctx context.Context, dir string, allow []netip.Prefix) (n *buildNet, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rules := filepath.Join(dir, "netfilter.nft")
	if err := os.WriteFile(rules, []byte(netRules(allow, hostAddrs())), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "network.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logf.Close() }()
	n = &buildNet{nsenter: t.nsenter, userns: os.Geteuid() != 0}
	defer func() {
		if err != nil {
			n.close()
			if msg := readTail(logPath); msg != "" {
				err = fmt.Errorf("%w: %s", err, msg)
			}
		}
	}()

	// The holder loads the rules in its new namespace, says ready and waits
	// for its stdin to close: at the end of the build, or when the server
	// dies. A non-root server's holder is root of a user namespace that owns
	// the network namespace, which is what lets it load the rules.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	n.holderIn = inW
	outR, outW, err := os.Pipe()
	if err != nil {
		_ = inR.Close()
		return nil, err
	}
	defer func() { _ = outR.Close() }()
	holder := exec.Command("/bin/sh", "-c", `"$1" -f "$2" || exit 1; echo ready; read -r _`, "sh", t.nft, rules) //nolint:noctx // lives for the build; close kills it
	holder.Env = []string{"PATH=" + defaultPath}
	holder.Stdin, holder.Stdout, holder.Stderr = inR, outW, logf
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWNET}
	if n.userns {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	holder.SysProcAttr = attr
	err = holder.Start()
	_ = inR.Close()
	_ = outW.Close()
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	n.holder, n.pid = holder, holder.Process.Pid
	if err := waitReady(ctx, outR, "ready\n"); err != nil {
		return nil, fmt.Errorf("network namespace: firewall rules: %w", err)
	}

	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer func() { _ = readyR.Close() }()
	args := []string{"--configure", "--mtu=65520", "--disable-host-loopback", "--ready-fd=3"}
	args = append(args, t.slirpExtra...)
	if n.userns {
		args = append(args, "--userns-path=/proc/"+strconv.Itoa(n.pid)+"/ns/user")
	}
	args = append(args, strconv.Itoa(n.pid), "tap0")
	slirp := exec.Command(t.slirp, args...) //nolint:noctx // lives for the build; close kills it
	slirp.Env = []string{"PATH=" + defaultPath}
	slirp.Stdout, slirp.Stderr = logf, logf
	slirp.ExtraFiles = []*os.File{readyW}
	slirp.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = slirp.Start()
	_ = readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("slirp4netns: %w", err)
	}
	n.slirp = slirp
	if err := waitReady(ctx, readyR, "1"); err != nil {
		return nil, fmt.Errorf("slirp4netns: %w", err)
	}
	return n, nil
}

// waitReady reads want from r, or fails when the writer went away first
// or ctx ended.
func waitReady(ctx context.Context, r *os.File, want string) error {
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, len(want))
		_, err := io.ReadFull(r, buf)
		switch {
		case err != nil:
			got <- errors.New("exited before it was ready")
		case string(buf) != want:
			got <- fmt.Errorf("said %q instead of ready", buf)
		default:
			got <- nil
		}
	}()
	select {
	case err := <-got:
		return err
	case <-ctx.Done():
		_ = r.SetReadDeadline(time.Now()) // unblocks the reader
		return fmt.Errorf("not ready: %w", ctx.Err())
	}
}

// enter is the argv prefix that runs a step inside the namespace.
func (n *buildNet) enter() []string {
	ns := "/proc/" + strconv.Itoa(n.pid) + "/ns/"
	if n.userns {
		// Root of the holder's user namespace, so that bwrap can set up the
		// sandbox; bwrap then maps the build back to the server's uid in a
		// user namespace of its own, without capabilities.
		return []string{n.nsenter, "--user=" + ns + "user", "--net=" + ns + "net", "--preserve-credentials", "--"}
	}
	return []string{n.nsenter, "--net=" + ns + "net", "--"}
}

// bwrapArgs are the sandbox options a build in this namespace needs.
func (n *buildNet) bwrapArgs(resolv string) []string {
	args := []string{"--ro-bind", resolv, "/etc/resolv.conf"}
	if n.userns {
		args = append(args, "--unshare-user", "--uid", strconv.Itoa(os.Getuid()), "--gid", strconv.Itoa(os.Getgid()),
			"--cap-drop", "ALL")
	}
	return args
}

// close ends slirp4netns and the holder; the namespace goes with them.
func (n *buildNet) close() {
	for _, c := range []*exec.Cmd{n.slirp, n.holder} {
		if c == nil || c.Process == nil {
			continue
		}
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		_ = c.Wait()
	}
	if n.holderIn != nil {
		_ = n.holderIn.Close()
	}
	n.slirp, n.holder, n.holderIn = nil, nil, nil
}

// readTail is the last line of a small log file, for an error message.
func readTail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
