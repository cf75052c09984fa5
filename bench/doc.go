// Package bench measures Sokoban against a baseline in the same run: the same
// `git push` through plain OpenSSH + `git receive-pack`. It reports ratios,
// never asserts a time. Run with `make bench`.
package bench
