package journal

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Priority is the syslog priority journald stores for a record of level l
// (`journalctl -p`): err, warning, info or debug. Levels between slog's named
// ones take the priority of the named level below them (WARN+2 is a warning).
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	default:
		return 7
	}
}

// Handler writes each record as the handler it wraps renders it, prefixed
// with "<N>", its priority, which journald strips and stores
// (SyslogLevelPrefix=, on by default; sd-daemon(3)). The wrapped handler
// renders into a buffer, so the prefix and the line leave in one Write and
// lines from concurrent goroutines never interleave.
type Handler struct {
	inner slog.Handler
	out   *output
}

// output is what a Handler and the handlers derived from it with WithAttrs
// and WithGroup share: the buffer the wrapped handlers render into, and the
// writer the prefixed record goes to.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   io.Writer
}

func (o *output) Write(p []byte) (int, error) { return o.buf.Write(p) }

// NewHandler returns a handler writing to w; newInner builds the handler
// that renders records (slog.NewTextHandler or slog.NewJSONHandler with the
// caller's options) on the writer it is given.
func NewHandler(w io.Writer, newInner func(io.Writer) slog.Handler) *Handler {
	out := &output{w: w}
	return &Handler{inner: newInner(out), out: out}
}

// Enabled is the wrapped handler's.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle renders r and writes it with its priority prefix.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	h.out.buf.WriteString("<" + strconv.Itoa(Priority(r.Level)) + ">")
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.out.w.Write(h.out.buf.Bytes())
	return err
}

// WithAttrs wraps the wrapped handler's.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs), out: h.out}
}

// WithGroup wraps the wrapped handler's.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), out: h.out}
}

// DropTime is a slog.HandlerOptions.ReplaceAttr that removes the record's
// time, which the journal stamps itself; next, if not nil, sees the rest.
func DropTime(next func([]string, slog.Attr) slog.Attr) func([]string, slog.Attr) slog.Attr {
	return func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if next != nil {
			return next(groups, a)
		}
		return a
	}
}

// IsStream reports whether w is the file JOURNAL_STREAM ("DEV:INODE")
// names, that is, whether systemd connected it to the journal. A child whose
// stderr was redirected keeps the variable but not the stream, hence the
// comparison.
func IsStream(w io.Writer, stream string) bool {
	f, ok := w.(*os.File)
	if !ok || stream == "" {
		return false
	}
	dev, ino, ok := strings.Cut(stream, ":")
	if !ok {
		return false
	}
	d, err1 := strconv.ParseUint(dev, 10, 64)
	i, err2 := strconv.ParseUint(ino, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == d && st.Ino == i //nolint:unconvert // Dev's type differs by architecture
}
