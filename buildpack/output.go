package buildpack

import (
	"bytes"
	"io"
	"sync"
)

// outputCap forwards buildpack output until limit bytes have passed, then says
// so once and swallows the rest. It keeps accepting writes, so a chatty
// buildpack never blocks on a full pipe and the build goes on; the compile
// timeout still bounds it. The pusher's connection, the build log and the live
// log fan-out are what the cap protects. Bytes pass through untouched
// (SPEC B8): colours, \r progress lines.
type outputCap struct {
	mu      sync.Mutex
	w       io.Writer
	limit   int64 // <= 0: no limit
	n       int64
	stopped bool
	midLine bool // the last byte forwarded was not a newline
}

func newOutputCap(w io.Writer, limit int64) *outputCap {
	return &outputCap{w: w, limit: limit}
}

func (c *outputCap) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return len(p), nil
	}
	if c.limit <= 0 || c.n+int64(len(p)) <= c.limit {
		c.n += int64(len(p))
		if len(p) > 0 {
			c.midLine = p[len(p)-1] != '\n'
		}
		if _, err := c.w.Write(p); err != nil {
			// The pusher is gone; the build's context ends it. Keep draining.
			c.stopped = true
		}
		return len(p), nil
	}
	// Forward up to the last whole line within the limit, then the notice.
	head := p[:c.limit-c.n]
	if i := bytes.LastIndexByte(head, '\n'); i >= 0 {
		head = head[:i+1]
	} else if c.n > 0 {
		head = nil
	}
	c.n = c.limit
	c.stopped = true
	if len(head) > 0 {
		_, _ = c.w.Write(head)
		c.midLine = head[len(head)-1] != '\n'
	}
	if c.midLine {
		_, _ = c.w.Write([]byte("\n"))
	}
	Warn(c.w, "Build output limit reached (%s); the rest of this build's output is not shown.", Limit(c.limit))
	return len(p), nil
}

// truncated reports whether the cap was hit.
func (c *outputCap) truncated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped && c.n >= c.limit && c.limit > 0
}
