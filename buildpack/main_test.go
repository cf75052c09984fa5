package buildpack

import (
	"testing"

	"go.uber.org/goleak"
)

// Every build's goroutines (output copies, fetches, cache locks) end with it.
// Idle keep-alive connections of the tarball client are the transport's, not
// a build's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
}
