package termsafe

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// sgrAt matches an SGR sequence at the start of what follows an ESC.
var sgrAt = regexp.MustCompile(`^\x1b\[[0-9;:]*m`)

// unsafeAt says what in out a terminal could act on, or "" when nothing:
// out must be valid UTF-8 with no C0 control but \t \n \r, no DEL, no C1
// control, and every ESC the start of an SGR.
func unsafeAt(out []byte) string {
	if !utf8.Valid(out) {
		return "invalid UTF-8"
	}
	for i := 0; i < len(out); {
		r, size := utf8.DecodeRune(out[i:])
		switch {
		case r == 0x1b:
			m := sgrAt.Find(out[i:])
			if m == nil {
				return fmt.Sprintf("ESC not starting an SGR at %d", i)
			}
			i += len(m)
			continue
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r', r == 0x7f, r >= 0x80 && r < 0xa0:
			return fmt.Sprintf("control %U at %d", r, i)
		}
		i += size
	}
	return ""
}

// benign is input the filter must pass byte for byte: valid UTF-8 of text,
// \t \n \r and SGR sequences within the bound.
var benign = regexp.MustCompile(`^(?:[\t\n\r\x20-\x7e]|[^\x00-\x7f\x{80}-\x{9f}]|\x1b\[[0-9;:]{0,126}m)*$`)

// plainText keeps the characters of data that are text, for the SGR and text
// property below.
func plainText(data []byte) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return -1
		}
		return r
	}, strings.ToValidUTF8(string(data), "\ufffd"))
}

func run(t *testing.T, chunks ...[]byte) []byte {
	var out bytes.Buffer
	w := NewWriter(&out)
	for _, c := range chunks {
		if n, err := w.Write(c); n != len(c) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if cap(w.seq) > 2*maxSGR || w.npend >= utf8.UTFMax {
			t.Fatalf("the filter holds %d bytes of a sequence and %d of a character", cap(w.seq), w.npend)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// FuzzFilter pins what a terminal gets from any build output (SPEC B8, issue
// 10 item 4): nothing it can act on but SGR; the same whatever the write
// boundaries; and SGR with text, or any benign input, unchanged.
func FuzzFilter(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		out := run(t, data)
		if why := unsafeAt(out); why != "" {
			t.Fatalf("%s in %q (from %q)", why, out, data)
		}
		c := int(cut) % (len(data) + 1)
		if split := run(t, data[:c], data[c:]); !bytes.Equal(split, out) {
			t.Fatalf("split at %d: %q; whole: %q", c, split, out)
		}
		if len(data) <= 64 {
			bytewise := make([][]byte, len(data))
			for i := range data {
				bytewise[i] = data[i : i+1]
			}
			if got := run(t, bytewise...); !bytes.Equal(got, out) {
				t.Fatalf("byte by byte: %q; whole: %q", got, out)
			}
		}
		if benign.Match(data) && utf8.Valid(data) && !bytes.Equal(out, data) {
			t.Fatalf("benign input changed: %q became %q", data, out)
		}
		text := "\x1b[1;31m" + plainText(data) + "\x1b[0m\x1b[38;2;1;2;3m\r\n"
		if got := run(t, []byte(text)); string(got) != text {
			t.Fatalf("SGR and text changed: %q became %q", text, got)
		}
	})
}
