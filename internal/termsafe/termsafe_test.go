package termsafe

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// filter runs chunks through one Writer, then Flush, and returns what came out.
func filter(t testing.TB, chunks ...string) string {
	t.Helper()
	var out bytes.Buffer
	w := NewWriter(&out)
	for _, c := range chunks {
		if n, err := w.Write([]byte(c)); n != len(c) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(c))
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// attacks is issue 10 item 4 as a table: build output (buildpacks are code
// nobody on the server reviewed) reached the pusher's terminal, and the
// terminal of anyone running `logs`, byte for byte (SPEC B8 said "untouched").
// OSC 52 wrote the reader's clipboard, OSC 0 their window title, CSI 2J and
// ESC c wiped their screen, and DSR / DECRQSS made their terminal type a reply
// as if the reader had. Each row is a sequence a hostile build can print;
// "want" is what the reader's terminal gets. The first rows are what must pass
// through unchanged.
var attacks = []struct {
	name, in, want string
}{
	{"plain text", "-----> Building app\n       done\n", "-----> Building app\n       done\n"},
	{"UTF-8 text", "héllo — ✓ 日本語 🚀 \u00a0nbsp �\n", "héllo — ✓ 日本語 🚀 \u00a0nbsp �\n"},
	{"tabs", "a\tb\n", "a\tb\n"},
	{"progress with CR", "  10%\r  50%\r 100%\n", "  10%\r  50%\r 100%\n"},
	{"SGR colours", "\x1b[1;31mred\x1b[0m \x1b[m\x1b[38;2;10;20;30mrgb\x1b[39;49m \x1b[38:5:196mcolon\x1b[0m",
		"\x1b[1;31mred\x1b[0m \x1b[m\x1b[38;2;10;20;30mrgb\x1b[39;49m \x1b[38:5:196mcolon\x1b[0m"},
	{"long but plausible SGR", "\x1b[1;4;38;2;255;255;255;48;2;255;255;255mx\x1b[0m", "\x1b[1;4;38;2;255;255;255;48;2;255;255;255mx\x1b[0m"},

	{"OSC 52 clipboard, BEL", "a\x1b]52;c;Y3VybCBldmlsfHNo\x07b", "ab"},
	{"OSC 52 clipboard, ST", "a\x1b]52;c;Y3VybCBldmlsfHNo\x1b\\b", "ab"},
	{"OSC 0 window title", "a\x1b]0;sudo password:\x07b", "ab"},
	{"OSC 8 hyperlink", "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\", "click me"},
	{"OSC with UTF-8 payload", "\x1b]2;tïtle ✓\x07ok", "ok"},
	{"CSI 2J clear screen", "a\x1b[2Jb", "ab"},
	{"CSI 3J clear scrollback", "a\x1b[3Jb", "ab"},
	{"CSI H cursor home", "a\x1b[Hb\x1b[1;1Hc", "abc"},
	{"CSI cursor up and erase line", "a\x1b[1A\x1b[2Kb", "ab"},
	{"CSI 6n device status report", "a\x1b[6nb", "ab"},
	{"CSI 21t report window title", "a\x1b[21tb", "ab"},
	{"CSI window resize", "a\x1b[8;1;1tb", "ab"},
	{"CSI alternate screen", "a\x1b[?1049hb\x1b[?25l", "ab"},
	{"CSI > m (xterm key modifiers, not SGR)", "a\x1b[>4;2mb", "ab"},
	{"CSI with intermediate (cursor shape)", "a\x1b[2 qb\x1b[1 m", "ab"},
	{"SGR too long", "a\x1b[" + strings.Repeat("1;", 100) + "mb", "ab"},
	{"ESC c full reset", "a\x1bcb", "ab"},
	{"ESC 7 / ESC 8 save and restore cursor", "a\x1b7b\x1b8", "ab"},
	{"ESC ( 0 line-drawing charset", "a\x1b(0b\x1b(B", "ab"},
	{"ESC # 8 screen alignment", "a\x1b#8b", "ab"},
	{"ESC N single shift", "a\x1bNb", "ab"},
	{"DCS DECRQSS", "a\x1bP$qm\x1b\\b", "ab"},
	{"DCS sixel", "a\x1bPq#0;2;0;0;0#1!6~\x1b\\b", "ab"},
	{"APC kitty graphics", "a\x1b_Gf=100;iVBORw0KGgo=\x1b\\b", "ab"},
	{"PM", "a\x1b^private\x1b\\b", "ab"},
	{"SOS", "a\x1bXstring\x1b\\b", "ab"},
	{"NUL", "a\x00b", "ab"},
	{"BEL", "a\x07b", "ab"},
	{"backspace", "secret\b\b\b\b\b\bpublic", "secretpublic"},
	{"VT FF SO SI", "a\x0b\x0c\x0e\x0fb", "ab"},
	{"other C0", "a\x01\x02\x03\x04\x05\x06\x10\x11\x12\x13\x14\x15\x16\x17\x19\x1c\x1d\x1e\x1fb", "ab"},
	{"DEL", "a\x7fb", "ab"},
	{"CAN cancels a CSI", "a\x1b[2\x18Jb", "aJb"},
	{"SUB cancels an OSC", "a\x1b]0;t\x1ab", "ab"},
	{"lone ESC at the end", "a\x1b", "a"},
	{"ESC ESC", "a\x1b\x1b[1mb", "a\x1b[1mb"},

	{"C1 CSI in UTF-8", "a\u009b2Jb", "ab"},
	{"C1 SGR in UTF-8 is dropped too", "a\u009b31mb", "ab"},
	{"C1 OSC in UTF-8", "a\u009d52;c;eA==\u009cb", "ab"},
	{"C1 DCS in UTF-8", "a\u0090$qm\u009cb", "ab"},
	{"C1 APC, PM, SOS in UTF-8", "a\u009fx\u009c\u009ex\u009c\u0098x\u009cb", "ab"},
	{"C1 NEL, IND, RI in UTF-8", "a\u0085\u0084\u008db", "ab"},
	{"raw 8-bit CSI is not UTF-8", "a\x9b2Jb", "a\ufffd2Jb"},
	{"raw 8-bit OSC is not UTF-8", "a\x9d0;t\x07b", "a\ufffd0;tb"},
	{"invalid UTF-8", "a\xff\xfe\xc0\xafb", "a\ufffd\ufffd\ufffd\ufffdb"},
	{"UTF-8 surrogate", "a\xed\xa0\x80b", "a\ufffd\ufffd\ufffdb"},
	{"truncated character then text", "a\xe2\x9cb", "a\ufffd\ufffdb"},
	{"truncated character at the end", "a\xe2\x9c", "a\ufffd"},

	{"newline ends an open OSC", "\x1b]0;title\nnext line\n", "\nnext line\n"},
	{"CR ends an open DCS", "\x1bPq#0\r100%\n", "\r100%\n"},
	{"newline ends a CSI", "\x1b[2\nJ", "\nJ"},
	{"ESC in an OSC starts a new sequence", "\x1b]0;x\x1b[1mbold", "\x1b[1mbold"},
	{"text ends an ESC", "\x1b\u00e9x", "\u00e9x"},
	{"colour around an attack", "\x1b[32m-----> \x1b[2J\x1b]0;x\x07ok\x1b[0m\n", "\x1b[32m-----> ok\x1b[0m\n"},
}

func TestFilterAttacks(t *testing.T) { // SPEC B8, issue 10 item 4
	for _, c := range attacks {
		t.Run(c.name, func(t *testing.T) {
			if got := filter(t, c.in); got != c.want {
				t.Fatalf("filter(%q) = %q; want %q", c.in, got, c.want)
			}
		})
	}
}

// A sequence or a character split across writes (a pipe hands over whatever
// it has) is filtered as if it came whole, at every split point and byte by
// byte: an attacker cannot slip ESC [ 2 J past the filter as "ESC [" and "2J".
func TestFilterSplitAcrossWrites(t *testing.T) { // SPEC B8, issue 10 item 4
	for _, c := range attacks {
		t.Run(c.name, func(t *testing.T) {
			for i := 0; i <= len(c.in); i++ {
				if got := filter(t, c.in[:i], c.in[i:]); got != c.want {
					t.Fatalf("split at %d: filter(%q, %q) = %q; want %q", i, c.in[:i], c.in[i:], got, c.want)
				}
			}
			bytewise := make([]string, len(c.in))
			for i := 0; i < len(c.in); i++ {
				bytewise[i] = c.in[i : i+1]
			}
			if got := filter(t, bytewise...); got != c.want {
				t.Fatalf("byte by byte: %q; want %q", got, c.want)
			}
		})
	}
}

// An OSC (or a CSI of digits) that never ends must not make the filter hold
// what it has seen: a build could print gigabytes of it. Nothing of it comes
// out, the filter's buffer stays at the SGR bound, and the next line passes.
func TestFilterUnterminatedSequenceIsBounded(t *testing.T) { // issue 10 item 4
	for _, intro := range []string{"\x1b]52;c;", "\x1bP", "\x1b[", "\u009d"} {
		var out bytes.Buffer
		w := NewWriter(&out)
		_, _ = w.Write([]byte("before" + intro))
		chunk := bytes.Repeat([]byte("1"), 64<<10)
		for range 160 { // 10 MiB
			if _, err := w.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if cap(w.seq) > 2*maxSGR {
			t.Errorf("%q: the filter holds %d bytes of an endless sequence", intro, cap(w.seq))
		}
		_, _ = w.Write([]byte("\nafter\n"))
		if out.String() != "before\nafter\n" {
			t.Errorf("%q: got %q", intro, out.String())
		}
	}
}

// Flush drops a sequence left open at the end, so the next stream (or the
// server's own line after a stored log) starts clean.
func TestFlushEndsOpenSequence(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	_, _ = w.Write([]byte("a\x1b]0;never ends"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("b"))
	if out.String() != "ab" {
		t.Fatalf("got %q", out.String())
	}
}

type countingWriter struct {
	calls int
	err   error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.calls++
	if c.err != nil {
		return 0, c.err
	}
	return len(p), nil
}

// A write whose bytes are all dropped writes nothing below (no empty frames to
// the pusher); the writer's error comes back to the caller.
func TestWriteCallsAndErrors(t *testing.T) {
	c := &countingWriter{}
	w := NewWriter(c)
	if n, err := w.Write([]byte("\x1b]0;title\x07\x00")); n != 11 || err != nil || c.calls != 0 {
		t.Fatalf("all dropped: n=%d err=%v calls=%d", n, err, c.calls)
	}
	boom := errors.New("client gone")
	c.err = boom
	if _, err := w.Write([]byte("text")); !errors.Is(err, boom) {
		t.Fatalf("err = %v; want %v", err, boom)
	}
}
