// Package cluster coordinates pushes: one lease per app, with a holder that other
// pushes are told about, and a fencing generation. The embedded default keeps it
// in process; it never holds durable data (that is stow's).
package cluster
