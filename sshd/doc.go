// Package sshd is Sokoban's SSH front door: host keys, public-key authentication,
// the command table, limits, keepalives and exit status. It resolves who is
// connecting and what they asked for, then hands git commands to the receiver;
// it never runs git, builds, or touches storage itself, beyond the shared
// host keys cluster nodes keep in the store it is handed (hostkeys_cluster.go).
package sshd
