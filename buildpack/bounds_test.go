package buildpack

// Security regression tests for issue 10 ("Hostile pushes"): everything a
// pusher (or a buildpack's bin/release) hands to the parsers in this package
// is bounded in size, in memory and in work. Each test fails on the code
// before its bound.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// hostileSlugignore is the pattern from issue 10: 14 "**/" segments and a
// name that is nowhere, so a matcher that backtracks tries every way of
// splitting a deep path among the "**"s.
var hostileSlugignore = strings.Repeat("**/", 14) + "nowhere\n"

// deepPath is n directories deep: d/d/.../d.
func deepPath(n int) string {
	return strings.TrimSuffix(strings.Repeat("d/", n), "/")
}

// The attack: a pusher's .slugignore of 14 "**/" segments against a 30-deep
// directory pinned a server core for minutes (past the compile timeout and
// after the pusher hung up), because matching recursed on every "**" and
// tried every split of the path: C(44, 14) ways. The matcher now reads each
// path segment once per pattern position. Counted, not timed: the recursive
// matcher made 142,619 segment comparisons for the small case below, which
// the bound allows 294.
func TestSlugignoreMatchIsLinear(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		pattern, path string
	}{
		{"small", strings.Repeat("**/d/", 6) + "x", deepPath(20)},
		{"issue", hostileSlugignore, deepPath(30)},
		{"alternating", strings.Repeat("**/d/", 40) + "x", deepPath(200)},
		{"stars", strings.Repeat("*/", 100) + "**/x", deepPath(300)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules, _, err := parseSlugignore([]byte(tc.pattern))
			if err != nil || len(rules) != 1 {
				t.Fatalf("parse: %v, %d rules", err, len(rules))
			}
			name := strings.Split(tc.path, "/")
			ok, steps := matchSegs(rules[0].segs, name)
			if ok {
				t.Errorf("%q matched %s", tc.pattern, tc.path)
			}
			if bound := (len(rules[0].segs) + 1) * (len(name) + 1); steps > bound {
				t.Errorf("%d steps for %d pattern segments and %d path segments (bound %d)",
					steps, len(rules[0].segs), len(name), bound)
			}
		})
	}
}

// The matcher keeps .slugignore's documented syntax, "**" included, and a
// run of "**" means what one does.
func TestSlugignoreDoubleStar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, path string
		match         bool
	}{
		{"assets/**", "assets", false}, {"assets/**", "assets/a", true}, {"assets/**", "assets/a/b", true},
		{"assets/**/**", "assets", false}, {"assets/**/**", "assets/a", true},
		{"a/**/b", "a/b", true}, {"a/**/**/b", "a/b", true}, {"a/**/**/b", "a/x/y/b", true},
		{"a/**/b", "a/x/c", false}, {"**/**/b", "b", true}, {"**/**/b", "x/b/c", false},
		{"/**", "x", true}, {"**", "x/y", true},
		{hostileSlugignore, deepPath(30) + "/nowhere", true},
		{strings.Repeat("**/d/", 3) + "x", "d/d/d/x", true}, {strings.Repeat("**/d/", 3) + "x", "d/d/x", false},
	} {
		rules, _, err := parseSlugignore([]byte(tc.pattern))
		if err != nil || len(rules) != 1 {
			t.Fatalf("%q: %v, %d rules", tc.pattern, err, len(rules))
		}
		for i := 1; i < len(rules[0].segs); i++ {
			if rules[0].segs[i] == "**" && rules[0].segs[i-1] == "**" {
				t.Errorf("%q: a run of ** reached the matcher: %q", tc.pattern, rules[0].segs)
				break
			}
		}
		if got := rules[0].match(tc.path, false); got != tc.match {
			t.Errorf("%q against %s: %v, want %v", tc.pattern, tc.path, got, tc.match)
		}
	}
}

// The same pattern against a real 30-deep tree finishes, under a deadline
// the fixed matcher never comes near, and deletes what it should.
func TestSlugignoreHostileTreeCompletes(t *testing.T) {
	t.Parallel()
	deep := deepPath(30)
	f := newJob(t, map[string]string{deep + "/keep": "", deep + "/nowhere": ""})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n, err := applySlugignore(ctx, f.job.BuildDir, []byte(hostileSlugignore), func(string, ...any) {})
	if err != nil || n != 1 {
		t.Fatalf("applySlugignore = %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(f.job.BuildDir, deep, "keep")); err != nil {
		t.Fatal(err)
	}
}

// The attack went on after the pusher had gone: nothing stopped the walk.
// A cancelled build stops applying .slugignore and deletes nothing.
func TestSlugignoreStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	f := newJob(t, map[string]string{"a.psd": "", "b/c.psd": ""})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := applySlugignore(ctx, f.job.BuildDir, []byte("*.psd\n"), func(string, ...any) {})
	if !errors.Is(err, context.Canceled) || n != 0 {
		t.Fatalf("applySlugignore = %d, %v; want context.Canceled", n, err)
	}
	if _, err := os.Stat(filepath.Join(f.job.BuildDir, "a.psd")); err != nil {
		t.Fatalf("a cancelled build deleted files: %v", err)
	}
}

// .slugignore runs under the compile timeout: past it the push is rejected
// with a line that says so. (A nanosecond has passed before the walk starts.)
func TestSlugignoreTimeoutRejectsPush(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", "true", "")
	f := newJob(t, map[string]string{".slugignore": "*.psd\n", "a.psd": ""})
	_, err := New(Config{Defaults: []string{bp}, CompileTimeout: 1, Sandbox: SandboxNone}).Build(context.Background(), f.job)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(f.out.String(), " !     Push rejected, applying .slugignore timed out after 1ns;") {
		t.Fatalf("err = %v\n%s", err, f.out)
	}
}

// A .slugignore past its bounds is refused, not partly applied: the file
// size, the number of patterns and a pattern's length.
func TestSlugignoreBounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, data, want string
	}{
		{"size", strings.Repeat("#", 1<<20+1), ".slugignore is larger than 1M"},
		{"patterns", strings.Repeat("*.psd\n", 1000) + "# fine\n*.tmp\n", ".slugignore line 1002: more than 1000 patterns"},
		{"length", "*.psd\n" + strings.Repeat("a", 1024+1) + "\n", ".slugignore line 2: the pattern is longer than 1K"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseSlugignore([]byte(tc.data))
			if !errors.Is(err, ErrSlugignore) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// At the bounds is fine: a full-length comment, 1000 patterns, a 1 KiB pattern.
	ok := strings.Repeat("#", 4<<10) + "\n" + strings.Repeat("*.psd\n", 1000-1) + strings.Repeat("a", 1024)
	if rules, _, err := parseSlugignore([]byte(ok)); err != nil || len(rules) != 1000 {
		t.Fatalf("%d rules, %v", len(rules), err)
	}
	// The push is rejected with the reason.
	bp := writeBuildpack(t, "echo X", "true", "")
	f := newJob(t, map[string]string{".slugignore": "*.psd\n" + strings.Repeat("x", 2000) + "\n"})
	_, err := New(Config{Defaults: []string{bp}, Sandbox: SandboxNone}).Build(context.Background(), f.job)
	if !errors.Is(err, ErrSlugignore) ||
		!strings.Contains(f.out.String(), "\n !     Push rejected, .slugignore line 2: the pattern is longer than 1K; shorten it.\n") {
		t.Fatalf("err = %v\n%s", err, f.out)
	}
}

// hostileRelease is bin/release output of about size bytes in one of the
// shapes that cost yaml.v3 the most.
func hostileRelease(shape string, size int) []byte {
	var b bytes.Buffer
	add := func(head, rep, tail string) {
		b.WriteString(head)
		for b.Len()+len(rep)+len(tail) <= size {
			b.WriteString(rep)
		}
		b.WriteString(tail)
	}
	switch shape {
	case "repeated-keys": // issue 10's 100 MB of YAML
		add("default_process_types:\n", "  web: x\n", "")
	case "repeated-top-keys":
		add("", "a: x\n", "")
	case "repeated-flow-keys":
		add("default_process_types: {", "a: b, ", "}\n")
	case "many-types":
		b.WriteString("default_process_types:\n")
		for i := 0; b.Len() < size-16; i++ {
			fmt.Fprintf(&b, "  w%d: x\n", i)
		}
	case "flow-list":
		add("addons: [", "a,", "a]\n")
	case "aliases":
		add("x: &a a\naddons: [", "*a,", "*a]\n")
	case "laughs": // each level nine of the one before: 9^n if expanded
		b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x]\n")
		for i := 1; b.Len() < size-100; i++ {
			fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), ", "))
		}
		b.WriteString("addons: *a9\n")
	case "nesting":
		add("", "[", "")
	}
	return b.Bytes()
}

// allocated is how many bytes f allocates on the heap. The callers are not
// parallel tests, so nothing else allocates meanwhile.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The attack: a buildpack's bin/release printed 100 MB of YAML with repeated
// keys and the server grew to 16 GB. yaml.Unmarshal compares every key of a
// mapping with every other and formats an error for each repeated pair:
// 16 KiB of "  web: x" allocated 262 MiB, 30 KiB 1 GiB, and the error it
// returned (all of it) went to the pusher. Output is now capped at 64 KiB
// and walked as a yaml.Node; bytes allocated are pinned, not time. Not
// parallel: it reads the process's allocation counter.
func TestReleaseParseMemory(t *testing.T) {
	const budget = 16 << 20
	for _, tc := range []struct {
		shape   string
		size    int
		refused bool
	}{
		{"repeated-keys", 16 << 10, true},
		{"repeated-keys", 64 << 10, true},
		{"repeated-keys", 1 << 20, true},
		{"repeated-top-keys", 16 << 10, true},
		{"repeated-top-keys", 64 << 10, true},
		{"repeated-flow-keys", 64 << 10, true},
		{"many-types", 64 << 10, true},
		{"flow-list", 64 << 10, false},
		{"aliases", 64 << 10, false},
		{"laughs", 64 << 10, true},
		{"nesting", 64 << 10, true},
	} {
		t.Run(fmt.Sprintf("%s-%dK", tc.shape, tc.size>>10), func(t *testing.T) {
			in := hostileRelease(tc.shape, tc.size)
			var err error
			n := allocated(func() { _, err = parseRelease(in) })
			t.Logf("%d bytes of input: %.1f MiB allocated, err = %.100v", len(in), float64(n)/(1<<20), err)
			if n > budget {
				t.Errorf("%d bytes of %s allocated %.1f MiB (budget %d MiB)", len(in), tc.shape, float64(n)/(1<<20), budget>>20)
			}
			if (err != nil) != tc.refused || err != nil && len(err.Error()) > 200 {
				t.Errorf("err = %.300v (want refused: %v, in a short line)", err, tc.refused)
			}
		})
	}
}

// bin/release: the output bound and default_process_types' bounds, each
// refused with its reason; legacy addons and config_vars still accepted.
func TestReleaseBounds(t *testing.T) {
	t.Parallel()
	var many strings.Builder
	many.WriteString("default_process_types:\n")
	for i := 0; i <= 100; i++ {
		fmt.Fprintf(&many, "  w%d: x\n", i)
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"output", "default_process_types:\n  web: x\n" + strings.Repeat("# padding\n", 64<<10/10), "output is larger than 64K"},
		{"types", many.String(), "line 102: default_process_types: more than 100 process types"},
		{"command", "default_process_types:\n  web: " + strings.Repeat("x", 4096+1) + "\n", `the command of "web" is longer than 4K`},
		{"name", "default_process_types:\n  \"a b\": x\n", `process type "a b" must be letters`},
		{"duplicate", "default_process_types:\n  web: x\n  web: y\n", `line 3: default_process_types: key "web" appears twice`},
		{"merge", "base: &b {web: x}\ndefault_process_types:\n  <<: *b\n", "merge keys (<<) are not supported"},
		{"not a mapping", "default_process_types: [web]\n", "default_process_types is not a mapping"},
		{"not yaml", "default_process_types:\n\tweb: x\n", "output is not valid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRelease([]byte(tc.in))
			if !errors.Is(err, ErrRelease) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %.300v, want %q", err, tc.want)
			}
		})
	}
	r, err := parseRelease([]byte("---\naddons:\n  - heroku-postgresql:mini\nconfig_vars:\n  LANG: en_US.UTF-8\n  N: 1\n" +
		"default_process_types:\n  web: &w bundle exec puma -p $PORT\n  worker: *w\n  console: ~\nunknown: [1, {a: b}]\n"))
	if err != nil || r.DefaultProcessTypes["web"] != "bundle exec puma -p $PORT" || r.DefaultProcessTypes["worker"] != r.DefaultProcessTypes["web"] ||
		r.DefaultProcessTypes["console"] != "" || len(r.DefaultProcessTypes) != 3 ||
		len(r.Addons) != 1 || r.ConfigVars["LANG"] != "en_US.UTF-8" || r.ConfigVars["N"] != "1" {
		t.Fatalf("parseRelease = %+v, %v", r, err)
	}
	for _, empty := range []string{"", "\n  \n", "# nothing\n", "---\n", "~\n"} {
		if r, err := parseRelease([]byte(empty)); err != nil || r.DefaultProcessTypes != nil {
			t.Errorf("%q: %+v, %v", empty, r, err)
		}
	}
}

// A bin/release that prints more than 64 KiB fails the build with the
// reason. 100 KB of distinct keys: yaml.Unmarshal took them (quadratic in
// time, not in memory) and the release record carried them all.
func TestReleaseOutputBoundRejectsPush(t *testing.T) {
	t.Parallel()
	bp := writeBuildpack(t, "echo X", "true",
		`echo default_process_types:; i=0; while [ $i -lt 10000 ]; do echo "  w$i: x"; i=$((i+1)); done`)
	f := newJob(t, nil)
	_, err := New(Config{Defaults: []string{bp}, Sandbox: SandboxNone}).Build(context.Background(), f.job)
	if !errors.Is(err, ErrRelease) || !strings.Contains(f.out.String(), " !     Push rejected, bin/release failed: output is larger than 64K") {
		t.Fatalf("err = %v\n%.2000s", err, f.out)
	}
}

// The attack: a 10 MB Procfile became a 14 MB release record (five of them
// made `releases --json` 72 MB). A Procfile is bounded in size, in process
// types and in command length, each refused with its reason.
func TestProcfileBounds(t *testing.T) {
	t.Parallel()
	var many strings.Builder
	for i := 0; i <= 100; i++ {
		fmt.Fprintf(&many, "w%d: x\n", i)
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"size", "web: x\n" + strings.Repeat("# padding\n", (1<<20)/10), "Procfile: larger than 1M"},
		{"types", many.String(), "Procfile: line 101: more than 100 process types"},
		{"command", "web: x\nworker: " + strings.Repeat("x", 4096+1) + "\n", `Procfile: line 2: the command of "worker" is longer than 4K`},
		{"long name", strings.Repeat("\x1b", 1000) + ": x\n", `Procfile: line 1: process type "\x1b\x1b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProcfile([]byte(tc.in))
			if !errors.Is(err, ErrProcfile) || !strings.Contains(procfileMessage(err), tc.want) || len(err.Error()) > 300 {
				t.Fatalf("err = %.400v, want %q", err, tc.want)
			}
		})
	}
	// At the bounds is fine: 100 types, a 4 KiB command, a 1 MiB file.
	at := strings.Repeat("w: "+strings.Repeat("x", 4096)+"\n", 1)
	for i := 1; i < 100; i++ {
		at += fmt.Sprintf("w%d: x\n", i)
	}
	at += strings.Repeat("#", 1<<20-len(at))
	if types, err := ParseProcfile([]byte(at)); err != nil || len(types) != 100 {
		t.Fatalf("%d types, %v", len(types), err)
	}
}

// The attack: .buildpacks lines are echoed to the pusher ("-----> Using
// buildpacks:") and land in the build log that admins read with `logs`, so a
// line with an OSC 52 sequence wrote the reader's clipboard. The whole file
// is checked before anything of it is printed: control characters, invalid
// UTF-8 and other unprintable runes are refused with the line number, as are
// more than 32 URLs and lines longer than 2 KiB.
func TestReadBuildpacksFileBounds(t *testing.T) {
	t.Parallel()
	ok := "https://example.com/a.git\n"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"escape", ok + "# fine\nhttps://example.com/b.git\x1b]52;c;aGk=\x07\n", ".buildpacks line 3: column 26 holds U+001B, which is not printable"},
		{"nul", "https://ex\x00ample.com/a.git", "line 1: column 11 holds U+0000"},
		{"delete", ok + "  https://example.com/\x7f", "line 2: column 23 holds U+007F"},
		{"c1 csi", "https://example.com/\u009b2J", "line 1: column 21 holds U+009B"},
		{"bidi", "https://example.com/\u202egit.exe", "line 1: column 21 holds U+202E"},
		{"tab inside", "https://example.com/a.git\t#v1", "line 1: column 26 holds U+0009"},
		{"invalid utf-8", "https://example.com/\xff", "line 1: column 21 is not UTF-8"},
		{"urls", strings.Repeat(ok, 32) + "\n" + ok, ".buildpacks line 34: more than 32 buildpacks"},
		{"line", ok + "#" + strings.Repeat("x", 2048) + "\n", ".buildpacks line 2: longer than 2K"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			urls, err := ReadBuildpacksFile([]byte(tc.in))
			if !errors.Is(err, ErrBuildpacksFile) || !strings.Contains(err.Error(), tc.want) || urls != nil {
				t.Fatalf("ReadBuildpacksFile = %q, %v; want %q", urls, err, tc.want)
			}
			if !printable(err.Error()) {
				t.Fatalf("the refusal quotes the line: %q", err)
			}
		})
	}
	// At the bounds is fine, and printable non-ASCII passes.
	at := strings.Repeat(ok, 32-1) + "https://例え.jp/" + strings.Repeat("x", 2048-len("https://例え.jp/")) + "\r\n"
	if urls, err := ReadBuildpacksFile([]byte(at)); err != nil || len(urls) != 32 {
		t.Fatalf("%d URLs, %v", len(urls), err)
	}
}

// The push is rejected before any line of a bad .buildpacks reaches the
// pusher.
func TestBadBuildpacksFileRejectsPush(t *testing.T) {
	t.Parallel()
	// Loopback, port 9 (discard): nothing is fetched, even by the code
	// before the fix, which tried.
	f := newJob(t, map[string]string{".buildpacks": "http://127.0.0.1:9/a.tgz\n\nhttp://127.0.0.1:9/b.tgz\x1b]52;c;aGk=\x07\n"})
	_, err := quick(Config{}).Build(context.Background(), f.job)
	out := f.out.String()
	if !errors.Is(err, ErrBuildpacksFile) ||
		!strings.Contains(out, "\n !     Push rejected, .buildpacks line 3: column 25 holds U+001B, which is not printable; write the URL in plain text.\n") {
		t.Fatalf("err = %v\n%s", err, out)
	}
	if strings.Contains(out, "127.0.0.1") || strings.Contains(out, "\x1b") || strings.Contains(out, "Using buildpack") {
		t.Fatalf("the file reached the pusher:\n%q", out)
	}
}

// printable: valid UTF-8 with no control character or other unprintable rune.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
