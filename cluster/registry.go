package cluster

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotRunning means no running build matches (cancel, follow).
var ErrNotRunning = errors.New("cluster: no running build")

// Build is a running build as `status` shows it on any node.
type Build struct {
	ID         string    `json:"id"`
	App        string    `json:"app"`
	User       string    `json:"user"`
	Node       string    `json:"node"`
	Stage      string    `json:"stage"`
	Started    time.Time `json:"started"`
	StageSince time.Time `json:"stage_since"`
}

// Registry is the cluster-wide view of running builds: what runs where, cancel
// requests that reach the node running a build, and live output that followers
// on any node can replay and tail.
type Registry interface {
	// Start announces a build. The returned Running must be finished with Finish.
	Start(ctx context.Context, b Build) (Running, error)
	// Builds lists the running builds on every live node, oldest first. A node
	// that died stops appearing within the lease TTL.
	Builds(ctx context.Context) ([]Build, error)
	// Cancel asks the node running app's build to cancel it, on behalf of user.
	// It returns the build it reached, or ErrNotRunning.
	Cancel(ctx context.Context, app, user string) (Build, error)
	// Follow streams the output of a running build from its first byte. The
	// reader ends (io.EOF) when the build finishes; Result then reports how.
	// ErrNotRunning if the build is not running (read its stowed log instead).
	Follow(ctx context.Context, buildID string) (Follower, error)
}

// Running is the handle of a build this node runs.
type Running interface {
	// SetStage records the build's current stage (`status` shows it).
	SetStage(ctx context.Context, stage string)
	// Cancelled delivers the name of the user who asked to cancel, once.
	Cancelled() <-chan string
	// Output is where the build's output goes so followers see it. Writes never
	// block on slow followers.
	Output() io.Writer
	// Finish records the result (succeeded, failed, cancelled, rejected), ends
	// followers' streams and removes the build from the registry.
	Finish(ctx context.Context, result string)
}

// Follower reads a build's live output.
type Follower interface {
	io.ReadCloser
	// Result is the build's result once Read has returned io.EOF.
	Result() string
}
