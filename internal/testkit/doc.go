// Package testkit holds helpers shared by the tests of several packages:
// servers the tests run on loopback (SeaweedFS for S3 with conditional
// writes) and small utilities. It is imported only from _test.go files.
package testkit
