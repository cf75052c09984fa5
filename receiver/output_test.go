package receiver

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Issue 10 item 4, SPEC B8: a buildpack's output went to the pusher byte for
// byte, so a build could write their clipboard (OSC 52), retitle their window
// (OSC 0) or wipe their screen (CSI 2J, ESC c). The pusher's copy is filtered
// now; the build log (and the live fan-out behind it) keeps every byte, so
// what happened stays on record. The sequence is split across writes, as a
// pipe may hand it over.
func TestOutputFiltersThePusherNotTheLog(t *testing.T) {
	t.Parallel()
	var pusher, log bytes.Buffer
	out := newOutput(&pusher, &log, time.Hour, func() string { return "compiling" })
	raw := []string{"\x1b[1;31mred\x1b[0m 10%\r100%\n", "osc52 \x1b]52;c;Y3VybCBldmls", "fHNo\x07after\n", "clear \x1b[2", "J\x1bcafter\x00\n", "cut \xe2\x9c"}
	for _, p := range raw {
		if _, err := out.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	out.stop()
	if got, want := pusher.String(), "\x1b[1;31mred\x1b[0m 10%\r100%\nosc52 after\nclear after\ncut \ufffd"; got != want {
		t.Errorf("pusher got %q; want %q", got, want)
	}
	if got, want := log.String(), strings.Join(raw, ""); got != want {
		t.Errorf("log got %q; want the raw %q", got, want)
	}
}
