package buildpack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sokoban-deploy/sokoban/internal/proc"
)

// SandboxMode says how build processes are confined (DESIGN "Sandbox").
type SandboxMode string

const (
	// SandboxAuto uses bubblewrap when it works on this machine and runs
	// unconfined otherwise; the server logs a loud warning in that case.
	SandboxAuto SandboxMode = "auto"
	// SandboxBwrap always uses bubblewrap; a server whose bwrap does not work
	// refuses to start.
	SandboxBwrap SandboxMode = "bwrap"
	// SandboxNone runs buildpacks as plain child processes.
	SandboxNone SandboxMode = "none"
)

// ParseSandbox reads a --sandbox value.
func ParseSandbox(s string) (SandboxMode, error) {
	switch m := SandboxMode(s); m {
	case SandboxAuto, SandboxBwrap, SandboxNone:
		return m, nil
	case "":
		return SandboxAuto, nil
	}
	return "", fmt.Errorf("%w: %q (use auto, bwrap or none)", ErrSandboxMode, s)
}

// Where a build's directories appear inside the sandbox. Fixed paths keep the
// server's layout (the data directory's location) out of the build, and let
// bind mounts never create mount points in a host directory.
const (
	sandboxRoot       = "/workspace"
	sandboxBuild      = sandboxRoot + "/build"
	sandboxCache      = sandboxRoot + "/cache"
	sandboxEnv        = sandboxRoot + "/env"
	sandboxBuildpacks = sandboxRoot + "/buildpacks"
	sandboxHome       = sandboxRoot + "/home"
)

// systemDirs are bound read-only; on merged-/usr systems the top-level ones
// are symlinks and stay symlinks.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// etcFiles are the only parts of /etc a build sees: name resolution, users,
// TLS roots, the dynamic linker cache and the time zone. Not /etc itself:
// /etc/sokoban/env holds the server's secrets, /etc/ssl/private its TLS keys.
var etcFiles = []string{
	"/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf", "/etc/nsswitch.conf",
	"/etc/services", "/etc/protocols", "/etc/passwd", "/etc/group",
	"/etc/ssl/certs", "/etc/ssl/openssl.cnf", "/etc/ca-certificates", "/etc/ca-certificates.conf",
	"/etc/pki/tls/certs", "/etc/pki/ca-trust/extracted",
	"/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
	"/etc/localtime", "/etc/timezone", "/etc/os-release", "/etc/mime.types",
}

// mount is one of a build's directories as the sandbox shows it.
type mount struct {
	host, inside string
	rw           bool
}

// jail runs a build's processes: under bubblewrap with its directories mapped
// to fixed paths, or, without a sandbox, as they are; in either case in the
// build's cgroup when it has one (confine).
type jail struct {
	bwrap  string // "" runs unconfined
	base   []string
	mounts []mount

	net       *buildNet    // the build's own network; nil: none at all, or the host's without a sandbox
	cg        *buildCgroup // nil: no limits
	stop      context.CancelCauseFunc
	watchDone chan struct{}
}

// jobJail is the jail for one build. tmp becomes the build's private /tmp.
func (b *Builder) jobJail(mounts []mount, tmp string) *jail {
	if !b.sandboxed() {
		return &jail{}
	}
	args := append(b.sandboxArgs(), "--bind", tmp, "/tmp", "--bind", tmp, "/var/tmp")
	if b.cfg.Sandbox == SandboxAuto && b.NetworkIsolation() != nil {
		// A build network that cannot be kept off the host's loopback and
		// private networks is no network at all (cmd/sokoban says so at start).
		args = append(args, "--unshare-net")
	}
	return &jail{bwrap: b.cfg.Bwrap, base: args, mounts: mounts}
}

// path is where a host path of the build appears to its processes.
func (j *jail) path(host string) string {
	if j.bwrap == "" {
		return host
	}
	for _, m := range j.mounts {
		if host == m.host {
			return m.inside
		}
		if rel, ok := strings.CutPrefix(host, m.host+string(filepath.Separator)); ok {
			return m.inside + "/" + filepath.ToSlash(rel)
		}
	}
	return host
}

// cmd wraps c to run inside the sandbox. Argv and Dir are host paths or
// paths already mapped with path.
func (j *jail) cmd(c proc.Cmd) proc.Cmd {
	if j.bwrap == "" {
		if j.cg != nil {
			c.Argv = append(j.cg.join(), c.Argv...)
		}
		return c
	}
	argv := append([]string{j.bwrap}, j.base...)
	for _, m := range j.mounts {
		flag := "--ro-bind"
		if m.rw {
			flag = "--bind"
		}
		argv = append(argv, flag, m.host, m.inside)
	}
	argv = append(argv, "--chdir", j.path(c.Dir), "--")
	c.Argv = append(argv, c.Argv...)
	c.Dir = "/"
	if j.net != nil {
		c.Argv = append(j.net.enter(), c.Argv...)
	}
	if j.cg != nil {
		c.Argv = append(j.cg.join(), c.Argv...)
	}
	return c
}

// sandboxArgs are bubblewrap's options common to every build and the probe.
// bwrap is started with the build's environment and nothing else, because
// /proc/1/environ inside the sandbox is bwrap's own.
func (b *Builder) sandboxArgs() []string {
	args := []string{
		"--die-with-parent", // the sandbox ends when its bwrap is killed
		"--unshare-pid",     // ... and with it every descendant, setsid or not
		"--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--new-session", // no controlling terminal to push keystrokes into
	}
	if os.Geteuid() == 0 {
		// A root server's builds keep uid 0 but lose every capability: no
		// mounts, no devices, no reading past file permissions.
		args = append(args, "--cap-drop", "ALL")
	}
	for _, d := range systemDirs {
		st, err := os.Lstat(d)
		switch {
		case err != nil:
		case st.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(d); err == nil {
				args = append(args, "--symlink", target, d)
			}
		case st.IsDir():
			args = append(args, "--ro-bind", d, d)
		}
	}
	for _, f := range etcFiles {
		args = append(args, "--ro-bind-try", f, f)
	}
	args = append(args, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm")
	// Paths the operator named that happen to sit under a system directory
	// (a data directory under /usr/local, say) are covered up.
	for _, h := range b.cfg.HideFromSandbox {
		h = filepath.Clean(h)
		if !underSystemDir(h) {
			continue
		}
		st, err := os.Stat(h)
		switch {
		case err != nil:
		case st.IsDir():
			args = append(args, "--tmpfs", h)
		default:
			args = append(args, "--ro-bind", "/dev/null", h)
		}
	}
	return args
}

func underSystemDir(p string) bool {
	for _, d := range systemDirs {
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			continue
		}
		for _, root := range []string{d, real} {
			if p == root || strings.HasPrefix(p, root+"/") {
				return true
			}
		}
	}
	return false
}

// sandboxed reports whether builds run under bubblewrap. In bwrap mode they do
// even when the probe failed: the build then fails rather than run unconfined.
func (b *Builder) sandboxed() bool {
	switch b.cfg.Sandbox {
	case SandboxNone:
		return false
	case SandboxBwrap:
		return true
	}
	mode, _ := b.Sandbox()
	return mode == SandboxBwrap
}

// Sandbox probes bubblewrap once and reports how builds will run: bwrap or
// none. The error says why bwrap does not work here; it is nil when the
// sandbox works or was turned off.
func (b *Builder) Sandbox() (SandboxMode, error) {
	if b.cfg.Sandbox == SandboxNone {
		return SandboxNone, nil
	}
	b.probeOnce.Do(func() { b.probeErr = b.probe() })
	if b.probeErr != nil {
		if b.cfg.Sandbox == SandboxBwrap {
			return SandboxBwrap, b.probeErr
		}
		return SandboxNone, b.probeErr
	}
	return SandboxBwrap, nil
}

// probe runs /bin/true under the same options a build gets.
func (b *Builder) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tmp, err := os.MkdirTemp("", "sokoban-sandbox-probe-")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSandbox, err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	j := &jail{bwrap: b.cfg.Bwrap, base: append(b.sandboxArgs(), "--bind", tmp, "/tmp"),
		mounts: []mount{{host: tmp, inside: sandboxBuild, rw: true}}}
	var out bytes.Buffer
	c := j.cmd(proc.Cmd{Argv: []string{"/bin/sh", "-c", "test -w " + sandboxBuild + " && touch /tmp/ok"}, Dir: tmp,
		Env: []string{"PATH=" + defaultPath}, Stdout: &limitedBuffer{buf: &out, max: 4096}})
	if err := proc.Run(ctx, c); err != nil {
		msg := lastLine(out.String())
		if proc.ExitCode(err) < 0 {
			msg = rootCause(err)
		}
		return fmt.Errorf("%w: %s: %s", ErrSandbox, b.cfg.Bwrap, msg)
	}
	if _, err := os.Stat(filepath.Join(tmp, "ok")); err != nil {
		return fmt.Errorf("%w: %s: the sandbox's /tmp is not the one it was given", ErrSandbox, b.cfg.Bwrap)
	}
	return nil
}

// confinement is what Builder probes once about build networks and limits.
type confinement struct {
	netOnce  sync.Once
	netTools *netTools
	netErr   error

	cgOnce sync.Once
	cg     *cgroupHost
	cgErr  error
}

// Limits of a build, with Config's defaults: 0 is no limit.
func (b *Builder) buildPids() int64   { return limitOr(b.cfg.BuildPids, 4096) }
func (b *Builder) buildMemory() int64 { return limitOr(b.cfg.BuildMemory, 4<<30) }

func limitOr(v, def int64) int64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// NetworkIsolation probes once whether sandboxed builds can get a network
// of their own that reaches the outside world but not this host or its
// private networks (README "Sandbox"). nil means they do; otherwise the
// error says why not: with --sandbox=bwrap builds then fail, with auto they
// run without any network.
func (b *Builder) NetworkIsolation() error {
	if b.cfg.Sandbox == SandboxNone {
		return fmt.Errorf("%w: the sandbox is off", ErrBuildNetwork)
	}
	if _, err := b.Sandbox(); err != nil {
		return fmt.Errorf("%w: %v", ErrBuildNetwork, err)
	}
	b.conf.netOnce.Do(func() { b.conf.netTools, b.conf.netErr = b.probeNet() })
	return b.conf.netErr
}

// Limits probes once which build limits this machine can enforce and
// returns them (0: none): processes and threads per build, and bytes of
// memory. The error names what is missing and why.
func (b *Builder) Limits() (pids, memory int64, err error) {
	b.conf.cgOnce.Do(func() {
		pids, mem := b.buildPids(), b.buildMemory()
		if pids == 0 && mem == 0 {
			b.conf.cg = &cgroupHost{}
			return
		}
		h, err := discoverCgroups(pids > 0, mem > 0)
		// Make and remove one cgroup per controller, as a build would.
		if h.pids != nil {
			if cg, cerr := h.create(pids, 0); cerr != nil {
				h.pids, err = nil, errors.Join(err, cerr)
			} else if rerr := cg.remove(); rerr != nil {
				h.pids, err = nil, errors.Join(err, rerr)
			}
		}
		if h.memory != nil {
			if cg, cerr := h.create(0, mem); cerr != nil {
				h.memory, err = nil, errors.Join(err, cerr)
			} else if rerr := cg.remove(); rerr != nil {
				h.memory, err = nil, errors.Join(err, rerr)
			}
		}
		b.conf.cg, b.conf.cgErr = h, err
	})
	if b.conf.cg.pids != nil {
		pids = b.buildPids()
	}
	if b.conf.cg.memory != nil {
		memory = b.buildMemory()
	}
	return pids, memory, b.conf.cgErr
}

// probeNet sets up a build network and runs a sandboxed step in it, as a
// build would, first with slirp4netns's own sandbox and seccomp filter and,
// where those do not work, without.
func (b *Builder) probeNet() (*netTools, error) {
	t, err := findNetTools(b.cfg.Slirp4netns, b.cfg.Nft)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sokoban-network-probe-")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBuildNetwork, err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	for _, extra := range [][]string{{"--enable-sandbox", "--enable-seccomp"}, nil} {
		t.slirpExtra = extra
		if err = b.tryNet(dir, t); err == nil {
			return t, nil
		}
	}
	return nil, fmt.Errorf("%w: %v", ErrBuildNetwork, err)
}

// tryNet checks that a step in the build network sees slirp's interface,
// not the host's.
func (b *Builder) tryNet(dir string, t *netTools) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := t.start(ctx, dir, nil)
	if err != nil {
		return err
	}
	defer n.close()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, resolvConf(), 0o644); err != nil {
		return err
	}
	j := &jail{bwrap: b.cfg.Bwrap, base: append(append(b.sandboxArgs(), "--bind", dir, "/tmp"), n.bwrapArgs(resolv)...), net: n}
	var out bytes.Buffer
	c := j.cmd(proc.Cmd{Argv: []string{"/bin/cat", "/proc/net/dev", "/etc/resolv.conf"}, Dir: "/",
		Env: []string{"PATH=" + defaultPath}, Stdout: &limitedBuffer{buf: &out, max: 16 << 10}})
	if err := proc.Run(ctx, c); err != nil {
		return fmt.Errorf("a step in the build network: %s", lastLineOf(out.String(), err))
	}
	if !strings.Contains(out.String(), "tap0:") || !strings.Contains(out.String(), "nameserver "+slirpDNS) {
		return errors.New("a step in the build network does not see slirp4netns's interface")
	}
	return nil
}

func lastLineOf(out string, err error) string {
	s := strings.TrimSpace(out)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return err.Error()
	}
	return s
}

// confine gives a build its own network (sandboxed builds) and its own
// cgroup, and returns the context the build runs under: it ends when the
// build hits a limit. jail.close undoes it all, also after an error.
func (b *Builder) confine(ctx context.Context, w *workspace) (context.Context, error) {
	j := w.jail
	ctx, j.stop = context.WithCancelCause(ctx)
	if j.bwrap != "" && b.cfg.Sandbox == SandboxBwrap {
		if err := b.NetworkIsolation(); err != nil {
			return ctx, err
		}
	}
	if j.bwrap != "" && b.NetworkIsolation() == nil {
		n, err := b.conf.netTools.start(ctx, w.job.WorkDir, b.cfg.BuildNetAllow)
		if err != nil {
			return ctx, fmt.Errorf("%w: %v", ErrBuildNetwork, err)
		}
		j.net = n
		resolv := filepath.Join(w.job.WorkDir, "resolv.conf")
		if err := os.WriteFile(resolv, resolvConf(), 0o644); err != nil {
			return ctx, fmt.Errorf("%w: %v", ErrBuildNetwork, err)
		}
		j.base = append(j.base, n.bwrapArgs(resolv)...)
	}
	pids, mem, _ := b.Limits()
	if pids == 0 && mem == 0 {
		return ctx, nil
	}
	cg, err := b.conf.cg.create(pids, mem)
	if err != nil {
		return ctx, fmt.Errorf("buildpack: build cgroup: %w", err)
	}
	j.cg = cg
	j.watchDone = make(chan struct{})
	go func() {
		defer close(j.watchDone)
		defer func() {
			if v := recover(); v != nil {
				b.log.Error("build limit watch panicked", "build", w.job.ID, "panic", v)
			}
		}()
		cg.watch(ctx, j.stop)
	}()
	return ctx, nil
}

// run runs one step in the jail. A step that ran into a limit ends the
// whole build: the next check of the build's context stops it.
func (j *jail) run(ctx context.Context, c proc.Cmd) error {
	err := proc.Run(ctx, j.cmd(c))
	if j.cg != nil {
		if hit := j.cg.hit(); hit != nil {
			j.stop(hit)
		}
	}
	return err
}

// close ends what confine set up: whatever is left of the build's
// processes, its cgroup, its network. It returns the limit that ended the
// build, if one did.
func (j *jail) close() error {
	var hit error
	if j.cg != nil {
		hit = j.cg.hit()
	}
	if j.stop != nil {
		j.stop(nil)
	}
	if j.watchDone != nil {
		<-j.watchDone
	}
	if j.cg != nil {
		_ = j.cg.remove() // only fails if its processes outlive SIGKILL; the next start sweeps it
		j.cg = nil
	}
	if j.net != nil {
		j.net.close()
		j.net = nil
	}
	return hit
}

// endLine ends the build's last line of output if it was cut short (a
// process killed mid-line), so that what follows starts a line of its own.
func (c *outputCap) endLine() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.midLine && !c.stopped {
		_, _ = c.w.Write([]byte("\n"))
		c.midLine = false
	}
}
