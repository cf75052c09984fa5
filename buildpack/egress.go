package buildpack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
)

// A user's buildpack URL is fetched by the server, so without a rule it
// reaches whatever the server reaches, as the server: another Sokoban's
// repositories with this account's SSH key, internal git hosts, the host's
// loopback services, the cloud metadata endpoint. egress is that rule for
// fetches a user chose (buildpack URLs now, submodules later):
//
//   - a destination is checked on the address actually dialled, after DNS,
//     so a name that resolves (or re-resolves) to a private address is
//     refused: tarball downloads dial through guardedDialer; git over
//     http(s) goes through a per-fetch proxy on loopback that dials the same
//     way; git:// and ssh are resolved and checked here and git is handed the
//     checked address, so it cannot resolve the name again;
//   - loopback, link-local, private, unspecified, multicast and other special
//     addresses (IANA's special-purpose registries, via code.dny.dev/ssrf;
//     for IPv6 everything outside 2000::/3) are refused unless the operator
//     allows them (Config.UserFetchAllow);
//   - no credential of the server goes along: git's config and environment
//     start from nothing (gitEnv), no credential helper, netrc or proxy of
//     the server, and ssh gets no key, agent, config or known hosts;
//   - ssh URLs are refused unless the operator allows them
//     (Config.UserFetchSSH).
type egress struct {
	allow  []netip.Prefix
	ssh    bool
	guard  *ssrf.Guardian
	dialer *net.Dialer
	http   *http.Client // tarball downloads: no proxy from the environment
}

func newEgress(allow []netip.Prefix, ssh bool) *egress {
	e := &egress{allow: allow, ssh: ssh, guard: ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())}
	e.dialer = &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: e.control}
	e.http = &http.Client{Transport: e.transport()}
	return e
}

// transport is an HTTP transport whose every connection, redirects included,
// passes the destination check, and which ignores HTTP(S)_PROXY: the
// server's proxy (and its credentials) is not the user's.
func (e *egress) transport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         e.dialer.DialContext,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 30 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConns:        16,
	}
}

// control is the dialer's last word on each address it is about to connect
// to, after name resolution: the rebinding-safe place for the check.
func (e *egress) control(network, address string, _ syscall.RawConn) error {
	if !strings.HasPrefix(network, "tcp") {
		return refusal{address + " is not a TCP destination", ErrUserDestination}
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return refusal{fmt.Sprintf("%s: %v", address, err), ErrUserDestination}
	}
	return e.check(ap.Addr())
}

// check says why a user's fetch may not connect to a, or nil.
func (e *egress) check(a netip.Addr) error {
	a = a.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	for _, p := range e.allow {
		if p.Contains(a) {
			return nil
		}
	}
	if e.guard.SafeAddr(a.WithZone("")) != nil {
		return &destError{addr: a, kind: addrKind(a)}
	}
	return nil
}

// destError is a destination refused for a user's fetch.
type destError struct {
	addr netip.Addr
	kind string
}

func (d *destError) Error() string {
	return fmt.Sprintf("%s is %s; the operator can allow it with --user-fetch-allow", d.addr, d.kind)
}

func (d *destError) Unwrap() error { return ErrUserDestination }

// refusal is a reason told to the pusher as it is, matching a sentinel.
type refusal struct {
	msg      string
	sentinel error
}

func (r refusal) Error() string { return r.msg }
func (r refusal) Unwrap() error { return r.sentinel }

// addrKind names what sort of special address a is, for the pusher.
func addrKind(a netip.Addr) string {
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "a link-local address"
	case a.IsPrivate(), sharedSpace.Contains(a):
		return "a private address"
	case a.IsUnspecified():
		return "an unspecified address"
	case a.IsMulticast():
		return "a multicast address"
	}
	return "a special-purpose address"
}

// sharedSpace is carrier-grade NAT space (RFC 6598): private in practice.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// ParseFetchAllow reads the operator's --user-fetch-allow entries: CIDR
// prefixes (10.0.0.0/8, fd00::/8) or single addresses.
func ParseFetchAllow(entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range entries {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%w: %q", ErrFetchAllow, s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// errSSHOff is a user's ssh URL on a server that does not allow them.
var errSSHOff = refusal{"ssh URLs are turned off for users' buildpacks on this server; use an https URL " +
	"(the operator can turn them on with --user-fetch-ssh)", ErrUserSSH}

// pin checks a user's git URL before git runs and returns the URL to give
// git. An http(s) URL is unchanged (the fetch's proxy checks every
// connection); a git:// or ssh URL gets the checked address in place of its
// host name, so git connects where the check looked.
func (e *egress) pin(ctx context.Context, raw string) (string, error) {
	lower := strings.ToLower(raw)
	switch {
	case strings.HasPrefix(lower, "https://"), strings.HasPrefix(lower, "http://"):
		u, err := neturl.Parse(raw)
		if err != nil {
			return "", permanentError{err}
		}
		_, err = e.resolve(ctx, u.Hostname())
		return raw, err
	case strings.HasPrefix(lower, "git://"), strings.HasPrefix(lower, "ssh://"):
		if strings.HasPrefix(lower, "ssh://") && !e.ssh {
			return "", permanentError{errSSHOff}
		}
		u, err := neturl.Parse(raw)
		if err != nil {
			return "", permanentError{err}
		}
		if u.User != nil && strings.HasPrefix(lower, "git://") {
			// git takes user@host as the whole host name and would look it up.
			return "", permanentError{errors.New("git:// URLs take no user name")}
		}
		a, err := e.resolve(ctx, u.Hostname())
		if err != nil {
			return "", err
		}
		port := u.Port()
		u.Host = hostLiteral(a)
		if port != "" {
			u.Host += ":" + port
		}
		return u.String(), nil
	case isSCPLike(raw):
		if !e.ssh {
			return "", permanentError{errSSHOff}
		}
		at := strings.Index(raw, "@")
		colon := at + strings.Index(raw[at:], ":")
		if strings.HasPrefix(raw[at+1:], "[") { // user@[::1]:path
			if end := strings.Index(raw[at:], "]:"); end > 0 {
				colon = at + end + 1
			}
		}
		a, err := e.resolve(ctx, strings.Trim(raw[at+1:colon], "[]"))
		if err != nil {
			return "", err
		}
		return raw[:at+1] + hostLiteral(a) + raw[colon:], nil
	}
	return "", permanentError{refusal{"not an https, http, git or ssh URL", ErrUserDestination}}
}

// resolve returns the first address of host that a user's fetch may reach;
// when there is none, the reason for the first one.
func (e *egress) resolve(ctx context.Context, host string) (netip.Addr, error) {
	if host == "" {
		return netip.Addr{}, permanentError{refusal{"the URL names no host", ErrUserDestination}}
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return netip.Addr{}, err
		}
	}
	var first error
	for _, a := range addrs {
		err := e.check(a)
		if err == nil {
			return a.Unmap(), nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		return netip.Addr{}, fmt.Errorf("%s has no address", host)
	}
	return netip.Addr{}, permanentError{first}
}

func hostLiteral(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// userSSHCommand is ssh for a user's URL: no configuration (ssh reads
// ~/.ssh of the account's passwd entry whatever HOME says), no key, no
// agent, no Kerberos ticket, no host-based authentication, no known hosts
// and no prompts. Only servers that let anyone in can answer it.
const userSSHCommand = "ssh -F /dev/null -o IdentityFile=none -o IdentitiesOnly=yes -o IdentityAgent=none " +
	"-o PubkeyAuthentication=no -o GSSAPIAuthentication=no -o HostbasedAuthentication=no " +
	"-o BatchMode=yes -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null " +
	"-o StrictHostKeyChecking=no -o ProxyCommand=none -o ProxyJump=none -o ControlMaster=no " +
	"-o ControlPath=none -o ForwardAgent=no -o PermitLocalCommand=no -o LogLevel=ERROR"

// gitProxy is one user git fetch's way to http(s) remotes: an HTTP proxy on
// loopback, for this fetch only, that git is told to use. It tunnels
// CONNECT (https) and forwards absolute-URL requests (http), dialling
// through the egress check, so every connection git makes, redirects
// included, is checked on the address dialled. A token keeps other local
// processes from borrowing it while it runs.
type gitProxy struct {
	e       *egress
	ln      net.Listener
	srv     *http.Server
	forward *httputil.ReverseProxy
	tr      *http.Transport
	token   string
	served  chan struct{}

	mu      sync.Mutex
	closed  bool
	active  sync.WaitGroup
	tunnels map[net.Conn]struct{}
	refused error // the first destination refused, for the pusher
}

// startGitProxy starts the proxy for one fetch; close it when git is done.
func (e *egress) startGitProxy(ctx context.Context) (*gitProxy, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("user fetch proxy: %w", err)
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	g := &gitProxy{e: e, ln: ln, tr: e.transport(), token: hex.EncodeToString(tok),
		served: make(chan struct{}), tunnels: map[net.Conn]struct{}{}}
	g.forward = &httputil.ReverseProxy{
		Rewrite:      func(pr *httputil.ProxyRequest) { pr.Out.Host = pr.In.Host },
		Transport:    g.tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { g.fail(w, r.Host, err) },
	}
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		defer close(g.served)
		_ = g.srv.Serve(ln)
	}()
	return g, nil
}

// env is what git needs to use the proxy and nothing else: the proxy comes
// through GIT_CONFIG_* so its token stays out of the command line.
func (g *gitProxy) env() []string {
	config := [][2]string{
		{"http.proxy", "http://sokoban:" + g.token + "@" + g.ln.Addr().String()},
		{"http.proxyAuthMethod", "basic"},
		{"credential.helper", ""},
	}
	env := []string{"GIT_CONFIG_COUNT=" + strconv.Itoa(len(config))}
	for i, kv := range config {
		n := strconv.Itoa(i)
		env = append(env, "GIT_CONFIG_KEY_"+n+"="+kv[0], "GIT_CONFIG_VALUE_"+n+"="+kv[1])
	}
	return env
}

// refusal is the first destination the proxy refused, if any.
func (g *gitProxy) refusal() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused
}

func (g *gitProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	g.active.Add(1)
	g.mu.Unlock()
	defer g.active.Done()
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
	}()
	if !g.authorized(r) {
		w.Header().Set("Proxy-Authenticate", `Basic realm="sokoban"`)
		http.Error(w, "proxy authentication required", http.StatusProxyAuthRequired)
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		g.tunnel(w, r)
	case r.URL.IsAbs() && r.URL.Scheme == "http":
		g.forward.ServeHTTP(w, r)
	default:
		http.Error(w, "not a proxy request", http.StatusBadRequest)
	}
}

func (g *gitProxy) authorized(r *http.Request) bool {
	const prefix = "Basic "
	h := r.Header.Get("Proxy-Authorization")
	if !strings.HasPrefix(h, prefix) {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(h[len(prefix):])
	if err != nil {
		return false
	}
	_, pass, _ := strings.Cut(string(b), ":")
	return pass == g.token
}

// fail answers a request the proxy could not carry, remembering a refused
// destination so the pusher learns why rather than git's "403 from proxy".
func (g *gitProxy) fail(w http.ResponseWriter, target string, err error) {
	var d *destError
	if errors.As(err, &d) {
		g.mu.Lock()
		if g.refused == nil {
			g.refused = d
			if host, _, _ := net.SplitHostPort(target); host != d.addr.String() {
				g.refused = fmt.Errorf("%s: %w", host, d) // a name, or a redirect's target
			}
		}
		g.mu.Unlock()
		http.Error(w, d.Error(), http.StatusForbidden)
		return
	}
	http.Error(w, err.Error(), http.StatusBadGateway)
}

func (g *gitProxy) tunnel(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot tunnel", http.StatusInternalServerError)
		return
	}
	up, err := g.e.dialer.DialContext(r.Context(), "tcp", r.Host)
	if err != nil {
		g.fail(w, r.Host, err)
		return
	}
	down, rw, err := hj.Hijack()
	if err != nil {
		_ = up.Close()
		return
	}
	if !g.track(up, down) {
		_ = up.Close()
		_ = down.Close()
		return
	}
	defer g.untrack(up, down)
	if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, rw.Reader) // what was read past the CONNECT head, then the rest
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(down, up)
	_ = down.Close()
	<-done
}

func (g *gitProxy) track(conns ...net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	for _, c := range conns {
		g.tunnels[c] = struct{}{}
	}
	return true
}

func (g *gitProxy) untrack(conns ...net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
		delete(g.tunnels, c)
	}
}

// close stops the proxy and waits for its goroutines: a fetch leaves
// nothing running behind it.
func (g *gitProxy) close() {
	g.mu.Lock()
	g.closed = true
	for c := range g.tunnels {
		_ = c.Close()
	}
	g.mu.Unlock()
	_ = g.srv.Close()
	<-g.served
	g.active.Wait()
	g.tr.CloseIdleConnections()
}
