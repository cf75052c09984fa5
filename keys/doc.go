// Package keys knows who an SSH key belongs to, what role that user has, and who may
// do what to an app: it holds the key store (a human-readable file in stow) and the
// one access decision every command goes through. It never handles SSH or HTTP itself.
package keys
