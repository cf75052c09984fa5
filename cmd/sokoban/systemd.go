package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
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
//     priority for `journalctl -p` (internal/journal, from the record's level).

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
