package termsafe

import (
	"io"
	"unicode/utf8"
)

// Why a hand-written state machine and not github.com/charmbracelet/x/ansi's
// Parser: that parser is made for terminal emulators. It hands over parsed
// parameters rather than the bytes (an SGR would have to be re-encoded), keeps
// up to 64 KiB of a string's payload, panics on states it takes to be
// unreachable, and brings five modules along. A filter only needs to know where
// each ECMA-48 sequence ends so it can drop it whole, holding back nothing but
// a CSI that may still be SGR: the few states below.

// maxSGR bounds the only bytes the filter holds back: a CSI that may still turn
// out to be SGR. The longest SGR a build plausibly prints, bold and underlined
// 24-bit colour on 24-bit colour, is under 50 bytes; a longer one is dropped.
const maxSGR = 128

// replacement is what a byte that is not UTF-8 becomes, as a UTF-8 terminal
// would show it.
var replacement = []byte(string(utf8.RuneError))

type state uint8

const (
	ground   state = iota
	escape         // after ESC
	escInter       // after ESC and intermediate bytes (0x20–0x2F), until the final byte
	csi            // after ESC [ or a C1 CSI, until the final byte (0x40–0x7E)
	str            // the payload of an OSC, DCS, SOS, PM or APC, until ST or BEL
)

// Writer passes what a terminal may safely show to the writer under it:
// printable text as valid UTF-8, `\t`, `\n`, `\r`, and SGR sequences
// (ESC [ params m, params being digits, `;` and `:`), byte for byte. Everything
// else is dropped:
//
//   - every other escape sequence, whole: OSC (window title, clipboard via
//     OSC 52, hyperlinks), DCS, SOS, PM, APC, CSI other than SGR (cursor moves,
//     screen and line erase, modes, device queries), and two-byte escapes such
//     as ESC c (full reset) or ESC ( 0 (a line-drawing character set);
//   - C0 controls other than `\t`, `\n`, `\r`, and DEL. BEL goes too: it is a
//     signal, not text (an audible bell, a window manager's urgency flag) and
//     a build can ring it without end. So does backspace: `\r` already serves
//     progress lines, and backspace only lets output overwrite what the reader
//     was shown on the same line;
//   - C1 controls (U+0080–U+009F) encoded in UTF-8, which terminals act on as
//     their 7-bit forms: a C1 CSI, OSC, DCS, SOS, PM or APC is dropped with its
//     sequence, like ESC [, ESC ], and so on (a C1 SGR too).
//
// A byte that is not part of valid UTF-8 becomes U+FFFD, so a lone 0x9B
// reaches no terminal as an 8-bit CSI. The output is for UTF-8 terminals: one
// that reads bytes as Latin-1 with C1 controls on could still find a 0x9B
// inside a valid character's encoding.
//
// Unlike a terminal, the filter ends a sequence at any C0 control other than
// ESC (and BEL, which ends an OSC), and the control then counts as text: a
// build that leaves an OSC open cannot swallow the lines after it, the
// server's own verdict among them. Nothing of the cut sequence was written, so
// the terminal never enters it; what followed shows as plain text.
//
// State carries across Write calls, so a sequence or a character split across
// writes is handled as if whole; at most maxSGR bytes of a sequence and three
// of a character are held. A Writer is not safe for concurrent use.
type Writer struct {
	w     io.Writer
	state state
	seq   []byte // the CSI in progress, from its ESC [, while sgr holds
	sgr   bool   // the CSI in progress can still be an SGR
	pend  [utf8.UTFMax]byte
	npend int    // bytes of a multi-byte character still incomplete, in pend
	out   []byte // what this Write passes on
}

// NewWriter returns a filter that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write filters p and writes what is kept in one Write to the writer under it
// (none when nothing is kept). It reports len(p) or the underlying error.
func (f *Writer) Write(p []byte) (int, error) {
	n := len(p)
	f.out = f.out[:0]
	for len(p) > 0 {
		if f.state == ground && f.npend == 0 {
			// Plain text, by far the most of any build's output, goes in one copy.
			i := 0
			for i < len(p) && plain(p[i]) {
				i++
			}
			f.out = append(f.out, p[:i]...)
			if p = p[i:]; len(p) == 0 {
				break
			}
		}
		f.feed(p[0])
		p = p[1:]
	}
	if err := f.flushOut(); err != nil {
		return 0, err
	}
	return n, nil
}

// Flush ends the stream: an incomplete character at the end becomes U+FFFD and
// a sequence still open is dropped. The Writer may be used again after it.
func (f *Writer) Flush() error {
	f.out = f.out[:0]
	if f.npend > 0 {
		f.npend = 0
		f.char(utf8.RuneError, replacement)
	}
	f.state = ground
	return f.flushOut()
}

func (f *Writer) flushOut() error {
	if len(f.out) == 0 {
		return nil
	}
	_, err := f.w.Write(f.out)
	if cap(f.out) > 64<<10 {
		f.out = nil // one huge write need not pin its buffer for the stream's life
	}
	return err
}

func plain(b byte) bool {
	return (b >= 0x20 && b < 0x7f) || b == '\t' || b == '\n' || b == '\r'
}

// feed decodes UTF-8 across writes and hands each character on.
func (f *Writer) feed(b byte) {
	if f.npend == 0 && b < utf8.RuneSelf {
		f.ascii(b)
		return
	}
	// npend < UTFMax here: any UTFMax bytes make a FullRune, consumed below.
	f.pend[f.npend] = b
	f.npend++
	for f.npend > 0 && utf8.FullRune(f.pend[:f.npend]) {
		r, size := utf8.DecodeRune(f.pend[:f.npend])
		switch {
		case r == utf8.RuneError && size == 1:
			f.char(utf8.RuneError, replacement)
		case r < utf8.RuneSelf:
			f.ascii(byte(r))
		default:
			f.char(r, f.pend[:size])
		}
		f.npend = copy(f.pend[:], f.pend[size:f.npend])
	}
}

func (f *Writer) ascii(b byte) {
	switch {
	case b == 0x1b:
		f.state = escape // whatever was in progress is dropped
		return
	case b == 0x7f:
		return // DEL is ignored everywhere, as ECMA-48 has terminals do
	case b < 0x20:
		if b == 0x07 && f.state == str {
			f.state = ground // BEL ends an OSC (xterm's form)
			return
		}
		f.state = ground
		if b == '\t' || b == '\n' || b == '\r' {
			f.out = append(f.out, b)
		}
		return
	}
	switch f.state {
	case ground:
		f.out = append(f.out, b)
	case escape:
		switch {
		case b == '[':
			f.startCSI()
		case b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_':
			f.state = str // OSC, DCS, SOS, PM, APC
		case b < 0x30:
			f.state = escInter
		default:
			f.state = ground // a two-byte escape such as ESC c or ESC \ (ST)
		}
	case escInter:
		if b >= 0x30 {
			f.state = ground
		}
	case csi:
		switch {
		case b >= 0x40: // the final byte
			if b == 'm' && f.sgr {
				f.out = append(append(f.out, f.seq...), 'm')
			}
			f.state = ground
		case f.sgr && (b >= '0' && b <= '9' || b == ';' || b == ':') && len(f.seq) < maxSGR:
			f.seq = append(f.seq, b)
		default:
			// A private marker (ESC [ ? … or ESC [ > … m, which xterm reads
			// as key modifier settings), an intermediate byte or too long:
			// not SGR, so the rest of it needs no keeping.
			f.sgr = false
		}
	case str:
		// payload, dropped
	}
}

// char takes a character of at least U+0080, or U+FFFD for bytes that were
// not UTF-8; enc is its encoding.
func (f *Writer) char(r rune, enc []byte) {
	if r < 0xa0 {
		f.c1(byte(r))
		return
	}
	if f.state == str {
		return // payload, dropped
	}
	// Text ends an ESC or CSI sequence that cannot hold it (none can).
	f.state = ground
	f.out = append(f.out, enc...)
}

// c1 acts on a C1 control as ECMA-48 has it: each stands for ESC and a byte.
func (f *Writer) c1(b byte) {
	switch b {
	case 0x9b: // CSI, dropped even if SGR: no tool writes colours this way
		f.startCSI()
		f.sgr = false
	case 0x90, 0x98, 0x9d, 0x9e, 0x9f: // DCS, SOS, OSC, PM, APC
		f.state = str
	default: // ST and the rest, dropped
		f.state = ground
	}
}

// startCSI begins a CSI, written as ESC [ if it proves to be SGR.
func (f *Writer) startCSI() {
	f.state = csi
	f.seq = append(f.seq[:0], 0x1b, '[')
	f.sgr = true
}
