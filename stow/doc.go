// Package stow is Sokoban's blob store: every piece of durable state (repositories,
// slugs, caches, build logs, releases, keys) is an object under a slash-separated key.
// It has a local-directory implementation (the embedded default) and never knows what
// a slug or a repository is; callers choose the keys (DESIGN.md, "Where durable state goes").
package stow
