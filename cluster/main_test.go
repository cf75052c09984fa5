package cluster_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a lease, a build or a follower starts ends by Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
