// Package journal makes slog output fit for systemd's journal: it tells
// whether stderr is the journal's stream, and gives each record the syslog
// priority of its slog level. It never parses log text or talks to journald's
// native socket.
package journal
