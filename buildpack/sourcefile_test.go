package buildpack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 10 item 1: the server reads files of the push only as regular files
// in the build directory, never through a symlink, and bounded.
func TestReadSourceFileRefusesWhatIsNotARegularFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "host_key")
	if err := os.WriteFile(secret, []byte("PRIVATE KEY"), 0o600); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "plain"), []byte("web: ok\n"), 0o644))
	must(os.Symlink(secret, filepath.Join(dir, "abs-link")))
	must(os.Symlink("plain", filepath.Join(dir, "rel-link")))
	must(os.Symlink("/dev/zero", filepath.Join(dir, "device-link")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(os.Mkdir(filepath.Join(dir, "adir"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "big"), make([]byte, 2048), 0o644))

	if b, err := readSourceFile(dir, "plain", 1024); err != nil || string(b) != "web: ok\n" {
		t.Fatalf("plain: %q, %v", b, err)
	}
	if b, err := readSourceFile(dir, "missing", 1024); err != nil || b != nil {
		t.Fatalf("missing: %q, %v", b, err)
	}
	for name, want := range map[string]string{
		"abs-link":    "abs-link is a symlink",
		"rel-link":    "rel-link is a symlink",
		"device-link": "device-link is a symlink",
		"fifo":        "fifo is not a regular file",
		"adir":        "adir is not a regular file",
		"big":         "big is larger than 1K",
	} {
		done := make(chan struct{})
		var b []byte
		var err error
		go func() { b, err = readSourceFile(dir, name, 1024); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("%s: read blocked", name) // a FIFO opened without O_NONBLOCK
		}
		if !errors.Is(err, ErrSourceFile) || !strings.Contains(err.Error(), want) || b != nil {
			t.Errorf("%s: got %q, %v; want %q", name, b, err, want)
		}
	}
}

// A Procfile that a buildpack turned into a symlink is refused too: what a
// buildpack leaves in BUILD_DIR is as hostile as what was pushed.
func TestBuildRefusesCompiledProcfileSymlink(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("web: cat TOPSECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bp := writeBuildpack(t, "echo X", `ln -sf `+secret+` "$1/Procfile"`, "")
	f := newJob(t, map[string]string{"index.html": "x"})
	res, err := New(Config{Defaults: []string{bp}, Sandbox: SandboxNone}).Build(context.Background(), f.job)
	if !errors.Is(err, ErrSourceFile) || res != nil {
		t.Fatalf("err = %v, res = %v\n%s", err, res, f.out)
	}
	if !strings.Contains(f.out.String(), "Push rejected, Procfile is a symlink") || strings.Contains(f.out.String(), "TOPSECRET") {
		t.Fatalf("output:\n%s", f.out)
	}
}

// Issue 10 item 2: bin/detect and bin/release have a time limit of their
// own; before, a detect that never ended held the push until the client
// gave up.
func TestDetectAndReleaseTimeOut(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, detect, release, want string
	}{
		{"detect", "sleep 600", "", "bin/detect timed out after 200ms"},
		{"release", "echo X", "sleep 600", "bin/release timed out after 200ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			bp := writeBuildpack(t, c.detect, "true", c.release)
			f := newJob(t, nil)
			_, err := New(Config{Defaults: []string{bp}, ScriptTimeout: 200 * time.Millisecond, Sandbox: SandboxNone}).
				Build(context.Background(), f.job)
			if err == nil || !strings.Contains(f.out.String(), c.want) {
				t.Fatalf("err = %v\n%s", err, f.out)
			}
		})
	}
}
