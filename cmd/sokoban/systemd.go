package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// What systemd hands a service, and what Sokoban does with it:
//
//   - NOTIFY_SOCKET (Type=notify): READY=1 once the SSH listener is up,
//     STATUS= with the builds running, WATCHDOG=1 while healthy, RELOADING=1
//     and READY=1 around a SIGHUP reload, STOPPING=1 when the drain starts.
//   - LISTEN_FDS (sokoban.socket): the inherited listener replaces --listen, so
//     connections queue in the kernel across a restart instead of being refused.
//   - JOURNAL_STREAM (stderr goes to the journal): the journal stamps every line
//     itself, so slog's time is dropped, and a <N> prefix gives each line its
//     priority for `journalctl -p`.

// notifier sends sd_notify messages. Without NOTIFY_SOCKET it does nothing.
type notifier struct {
	log *slog.Logger

	mu     sync.Mutex
	failed bool
	status string
}

// send sends one message of newline-separated assignments.
func (n *notifier) send(states ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sendLocked(states...)
}

func (n *notifier) sendLocked(states ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(states, "\n")); err != nil && !n.failed {
		// Said once: a broken notify socket would otherwise log every tick.
		n.failed = true
		n.log.Warn("sd_notify failed", "err", err)
	}
}

// setStatus sends STATUS= when the text changed.
func (n *notifier) setStatus(status string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if status == n.status {
		return
	}
	n.status = status
	n.sendLocked("STATUS=" + status)
}

// ready sends READY=1 with the current status.
func (n *notifier) ready(status string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.status = status
	n.sendLocked("READY=1", "STATUS="+status)
}

// reloading tells systemd a reload began. MONOTONIC_USEC lets systemd ≥ 253
// (Type=notify-reload) match it to its request; older ones ignore it.
func (n *notifier) reloading() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.status = "reloading"
	n.sendLocked("RELOADING=1", daemon.SdNotifyMonotonicUsec(), "STATUS=reloading")
}

// watchdogInterval is how often systemd wants WATCHDOG=1 (WATCHDOG_USEC for
// this pid), or 0.
func watchdogInterval(log *slog.Logger) time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("watchdog settings ignored", "err", err)
		return 0
	}
	return d
}

// listenSSH returns the listener systemd passed (socket activation) or a new
// one on addr.
func listenSSH(ctx context.Context, addr string, log *slog.Logger) (net.Listener, error) {
	// Files(true) unsets LISTEN_* and marks the fds close-on-exec, so no child
	// inherits them.
	files := activation.Files(true)
	if len(files) == 0 {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return ln, nil
	}
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	if len(files) > 1 {
		return nil, fmt.Errorf("socket activation passed %d sockets; sokoban.socket must have exactly one ListenStream", len(files))
	}
	ln, err := net.FileListener(files[0])
	if err != nil {
		return nil, fmt.Errorf("socket activation: fd %d is not a listening socket: %w", files[0].Fd(), err)
	}
	log.Info("using the listener passed by systemd (socket activation); --listen is ignored",
		"addr", ln.Addr().String(), "listen", addr)
	return ln, nil
}

// forJournal adapts log output when w is the journal's stream (JOURNAL_STREAM
// names its device and inode): no time attribute, and a priority prefix.
func forJournal(w io.Writer, opts *slog.HandlerOptions, getenv func(string) string) (io.Writer, *slog.HandlerOptions) {
	if !isJournalStream(w, getenv("JOURNAL_STREAM")) {
		return w, opts
	}
	o := *opts
	next := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if next != nil {
			return next(groups, a)
		}
		return a
	}
	return &journalWriter{w: w}, &o
}

// isJournalStream reports whether w is the file JOURNAL_STREAM ("DEV:INODE")
// names. A child whose stderr was redirected keeps the variable but not the
// stream, hence the comparison.
func isJournalStream(w io.Writer, stream string) bool {
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

// journalWriter prefixes each record with its syslog priority ("<6>"), which
// journald strips and stores (SyslogLevelPrefix=, on by default). slog handlers
// write one record per Write; with the time dropped the level comes first.
type journalWriter struct {
	w io.Writer
}

var journalLevels = []struct {
	text, json string
	prefix     string
}{
	{"level=ERROR", `{"level":"ERROR"`, "<3>"},
	{"level=WARN", `{"level":"WARN"`, "<4>"},
	{"level=INFO", `{"level":"INFO"`, "<6>"},
	{"level=DEBUG", `{"level":"DEBUG"`, "<7>"},
}

func (j *journalWriter) Write(p []byte) (int, error) {
	for _, l := range journalLevels {
		if bytes.HasPrefix(p, []byte(l.text)) || bytes.HasPrefix(p, []byte(l.json)) {
			buf := make([]byte, 0, len(l.prefix)+len(p))
			buf = append(append(buf, l.prefix...), p...)
			if _, err := j.w.Write(buf); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return j.w.Write(p)
}
