package sshd

import (
	"testing"

	"go.uber.org/goleak"
)

// Every session, keepalive and connection goroutine ends with its server.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
