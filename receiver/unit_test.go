package receiver

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sokoban-deploy/sokoban/buildpack"
)

func tarOf(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		h := h
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = "data"
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(tw, body)
	}
	_ = tw.Close()
	return b.Bytes()
}

// A crafted tree cannot make the export write outside the build directory.
func TestExtractStaysInside(t *testing.T) {
	t.Parallel()
	for name, entries := range map[string][]tar.Header{
		"dotdot":          {{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644}},
		"absolute":        {{Name: "/tmp/escape", Typeflag: tar.TypeReg, Mode: 0o644}},
		"through symlink": {{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, {Name: "link/escape", Typeflag: tar.TypeReg, Mode: 0o644}},
	} {
		dir := t.TempDir()
		err := buildpack.Untar(bytes.NewReader(tarOf(t, entries...)), dir)
		if err == nil {
			t.Errorf("%s: extract succeeded", name)
		}
		if _, err := os.Stat("/tmp/escape"); err == nil {
			t.Fatalf("%s: wrote /tmp/escape", name)
		}
	}
	dir := t.TempDir()
	ok := tarOf(t, tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o755},
		tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "a/b"})
	if err := buildpack.Untar(bytes.NewReader(ok), dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "l")); err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Fatalf("extracted file: %v %v", st, err)
	}
}

func TestRefuseGitFormat(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	_ = RefuseGit(&b, "no such app: x\nsecond line")
	if b.String() != "0023ERR no such app: x second line\n" {
		t.Fatalf("%q", b.String())
	}
}

func TestParseRefs(t *testing.T) {
	t.Parallel()
	z, a := strings.Repeat("0", 40), strings.Repeat("a", 40)
	ups, err := parseRefs(z + " " + a + " refs/heads/main\n" + a + " " + z + " refs/tags/v1\n")
	if err != nil || len(ups) != 2 || ups[0].deletes() || !ups[1].deletes() {
		t.Fatalf("%+v %v", ups, err)
	}
	for _, bad := range []string{"x y z", z + " " + a + " main", z + " " + a, z + " " + a + " refs/heads/x extra"} {
		if _, err := parseRefs(bad); err == nil {
			t.Errorf("parseRefs(%q) accepted", bad)
		}
	}
}

// The hook round trip: ref lines and git's environment reach the server's
// callback, output frames and the verdict come back; a token works once.
func TestHookRoundTrip(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "hk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	hs, err := newHookServer(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hs.close() })
	var got hookRequest
	token := hs.register(func(req hookRequest, w io.Writer) bool {
		got = req
		_, _ = io.WriteString(w, "building\n")
		return false
	})
	env := []string{EnvHookSocket + "=" + hs.path, EnvHookToken + "=" + token,
		"GIT_QUARANTINE_PATH=/q", "GIT_PUSH_OPTION_COUNT=1", "GIT_PUSH_OPTION_0=cache=purge", "AWS_SECRET_ACCESS_KEY=nope"}
	var out, errOut bytes.Buffer
	code := RunHook(context.Background(), env, strings.NewReader("old new refs/heads/main\n"), &out, &errOut)
	if code != 1 || out.String() != "building\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out.String(), errOut.String())
	}
	if got.Refs != "old new refs/heads/main\n" || got.Env["GIT_QUARANTINE_PATH"] != "/q" ||
		got.Env["GIT_PUSH_OPTION_0"] != "cache=purge" || got.Env["AWS_SECRET_ACCESS_KEY"] != "" {
		t.Fatalf("server saw %+v", got)
	}
	out.Reset()
	if code := RunHook(context.Background(), env, strings.NewReader(""), &out, &errOut); code != 1 || !strings.Contains(out.String(), "not known to the server") {
		t.Fatalf("reused token: exit %d, %q", code, out.String())
	}
}
