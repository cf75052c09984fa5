// Package e2e drives the built sokoban binary with the real git and the real
// OpenSSH client, one scenario per user story (testdata/*.txtar) plus Go tests
// for properties that need precise control: streaming, disconnects, concurrent
// pushes and the CVE-2024-45337 regression.
package e2e
