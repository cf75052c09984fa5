// Package testkit holds helpers shared by the tests of several packages:
// servers a test starts on loopback and tears down itself (SeaweedFS for S3).
// It is imported only from _test.go files and never by the binary.
package testkit
