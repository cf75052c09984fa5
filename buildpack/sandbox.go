package buildpack

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
// to fixed paths, or, without a sandbox, as they are.
type jail struct {
	bwrap  string // "" runs unconfined
	base   []string
	mounts []mount
}

// jobJail is the jail for one build. tmp becomes the build's private /tmp.
func (b *Builder) jobJail(mounts []mount, tmp string) *jail {
	if !b.sandboxed() {
		return &jail{}
	}
	args := append(b.sandboxArgs(), "--bind", tmp, "/tmp", "--bind", tmp, "/var/tmp")
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
