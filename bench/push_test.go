package bench

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rig is a Sokoban server and an OpenSSH server side by side, one key, one repo.
type rig struct {
	dir      string
	key      string
	app      string // the pushing repository
	sokoban  string // sokoban's SSH port
	openssh  string // sshd's port
	bareRepo string // the baseline's bare repository
}

func newRig(b *testing.B) *rig {
	b.Helper()
	for _, tool := range []string{"git", "ssh", "ssh-keygen", "/usr/sbin/sshd"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is required (apt-get install git openssh-client openssh-server; `make bench` does it)", tool)
		}
	}
	dir := b.TempDir()
	r := &rig{dir: dir, key: filepath.Join(dir, "id"), app: filepath.Join(dir, "app"), bareRepo: filepath.Join(dir, "base.git")}
	sh(b, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", r.key)

	// Sokoban, built without the race detector, with a buildpack that does nothing.
	bin := filepath.Join(dir, "sokoban")
	sh(b, "", "go", "build", "-o", bin, "../cmd/sokoban")
	bp := filepath.Join(dir, "bp")
	writeFile(b, filepath.Join(bp, "bin", "detect"), "#!/bin/sh\necho Bench\n", 0o755)
	writeFile(b, filepath.Join(bp, "bin", "compile"), "#!/bin/sh\ntrue\n", 0o755)
	data := filepath.Join(dir, "data")
	sh(b, "", bin, "keys", "add", "--data", data, "bench@example.com", r.key+".pub")
	r.sokoban = start(b, data, bin, "serve", "--data", data, "--listen", "127.0.0.1:0", "--buildpacks", bp, "--log-level", "warn", "--http", "")

	// Plain OpenSSH on a free port, set up the way a git host is: a dedicated
	// user whose shell is git-shell, the same key. (A login shell with dotfiles
	// would make the baseline slow and the ratio flattering.)
	ensureGitUser(b)
	r.openssh = freePort(b)
	sshd := filepath.Join(dir, "sshd")
	if err := os.MkdirAll(sshd, 0o700); err != nil {
		b.Fatal(err)
	}
	sh(b, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(sshd, "host_key"))
	keyData, _ := os.ReadFile(r.key + ".pub")
	writeFile(b, filepath.Join(sshd, "authorized_keys"), string(keyData), 0o644)
	writeFile(b, filepath.Join(sshd, "sshd_config"), fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s/host_key
AuthorizedKeysFile %s/authorized_keys
PidFile %s/sshd.pid
StrictModes no
UsePAM no
UseDNS no
GSSAPIAuthentication no
PrintMotd no
PrintLastLog no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers %s
`, r.openssh, sshd, sshd, sshd, gitUser), 0o600)
	_ = os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(sshd, "sshd_config"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var sshdLog bytes.Buffer
	cmd.Stdout, cmd.Stderr = &sshdLog, &sshdLog
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	waitPort(b, r.openssh, &sshdLog)
	sh(b, "", "git", "init", "-q", "--bare", r.bareRepo)
	sh(b, "", "chown", "-R", gitUser, r.bareRepo)
	// The git user must reach its repository and key file inside the temp dir.
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	_ = os.Chmod(sshd, 0o755)

	// An app of 300 files, 3 MiB, pushed once to both before timing.
	for i := range 300 {
		blob := make([]byte, 10<<10)
		_, _ = rand.Read(blob)
		writeFile(b, filepath.Join(r.app, "src", fmt.Sprintf("f%03d.bin", i)), string(blob), 0o644)
	}
	sh(b, r.app, "git", "init", "-q", "-b", "main")
	sh(b, r.app, "git", "add", "-A")
	sh(b, r.app, "git", "commit", "-qm", "initial")
	r.push(b, r.sokobanURL(), "main")
	r.push(b, r.opensshURL(), "main")
	return r
}

func (r *rig) sokobanURL() string { return "ssh://git@127.0.0.1:" + r.sokoban + "/bench-app.git" }
func (r *rig) opensshURL() string {
	return "ssh://" + gitUser + "@127.0.0.1:" + r.openssh + r.bareRepo
}

// gitUser is the baseline's account: created once, shell git-shell, no password.
const gitUser = "sokobench"

func ensureGitUser(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Fatal("the benchmark runs its own sshd and needs root (to create the sokobench user)")
	}
	if exec.Command("id", gitUser).Run() == nil {
		return
	}
	sh(b, "", "useradd", "--system", "--shell", "/usr/bin/git-shell", "--home-dir", "/nonexistent", "--no-create-home", gitUser)
	// A system account is locked ("!"), which sshd refuses; "*" means no password.
	sh(b, "", "usermod", "-p", "*", gitUser)
}

// commit makes a small change, the kind of push people make all day.
func (r *rig) commit(b *testing.B, i int) {
	b.Helper()
	writeFile(b, filepath.Join(r.app, "CHANGES"), strconv.Itoa(i)+"\n", 0o644)
	sh(b, r.app, "git", "add", "CHANGES")
	sh(b, r.app, "git", "commit", "-qm", "change "+strconv.Itoa(i))
}

// push runs one `git push` and returns how long it took.
func (r *rig) push(b *testing.B, url, refspec string) time.Duration {
	b.Helper()
	cmd := exec.Command("git", "push", "-q", "-f", url, refspec)
	cmd.Dir = r.app
	cmd.Env = append(baseEnv(), "GIT_SSH_COMMAND=ssh -i "+r.key+" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git push %s: %v\n%s", url, err, out)
	}
	return time.Since(start)
}

// BenchmarkPush alternates the same push through Sokoban and through plain
// OpenSSH + git receive-pack, and reports both and their ratio.
//
//   - branch: a push Sokoban does not build (receive-pack, hook, stowing the
//     repository) against the same push to the baseline.
//   - deploy: a push to main that Sokoban builds with a no-op buildpack, packs,
//     stows and releases, against the same plain push.
func BenchmarkPush(b *testing.B) {
	r := newRig(b)
	for _, tc := range []struct{ name, refspec string }{{"branch", "HEAD:refs/heads/bench"}, {"deploy", "HEAD:main"}} {
		b.Run(tc.name, func(b *testing.B) {
			var sok, base time.Duration
			for i := 0; b.Loop(); i++ {
				r.commit(b, i)
				base += r.push(b, r.opensshURL(), tc.refspec)
				sok += r.push(b, r.sokobanURL(), tc.refspec)
			}
			n := float64(b.N)
			b.ReportMetric(float64(sok.Milliseconds())/n, "sokoban-ms/push")
			b.ReportMetric(float64(base.Milliseconds())/n, "openssh-ms/push")
			b.ReportMetric(float64(sok)/float64(base), "ratio")
		})
	}
}

func start(b *testing.B, data string, bin string, args ...string) string {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); _ = cmd.Wait() })
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if addr, err := os.ReadFile(filepath.Join(data, "listen.addr")); err == nil {
			s := strings.TrimSpace(string(addr))
			return s[strings.LastIndexByte(s, ':')+1:]
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("sokoban did not start:\n%s", log.String())
	return ""
}

func freePort(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func waitPort(b *testing.B, port string, log *bytes.Buffer) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("sshd did not start:\n%s", log.String())
}

func baseEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=b", "GIT_AUTHOR_EMAIL=b@example.com", "GIT_COMMITTER_NAME=b", "GIT_COMMITTER_EMAIL=b@example.com"}
}

func sh(b *testing.B, dir, name string, args ...string) {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = baseEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func writeFile(b *testing.B, path, body string, mode os.FileMode) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		b.Fatal(err)
	}
}
