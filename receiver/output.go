package receiver

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sokoban-deploy/sokoban/internal/termsafe"
)

// output is where a push's build output goes: the pusher (through the hook)
// and the build log. During a silent phase it prints a heartbeat (SPEC B10) so
// the pusher and any load balancer can tell the push is alive. Writes are
// serialized; a failing log never fails the build.
//
// What a buildpack prints is an attacker's: the pusher's copy goes through
// termsafe, so their terminal gets colours, progress and text but no other
// escape sequence (issue 10 item 4). The log, and the live fan-out `logs -f`
// reads, keep the raw bytes; sshd filters those on the way out.
type output struct {
	mu          sync.Mutex
	pusher      *termsafe.Writer
	log         io.Writer
	last        time.Time
	start       time.Time
	atLineStart bool
	done        chan struct{}
	stopOnce    sync.Once
}

func newOutput(pusher, log io.Writer, heartbeat time.Duration, stage func() string) *output {
	o := &output{pusher: termsafe.NewWriter(pusher), log: log, last: time.Now(), start: time.Now(), atLineStart: true, done: make(chan struct{})}
	go o.heartbeat(heartbeat, stage)
	return o
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.writeLocked(p)
}

func (o *output) writeLocked(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o.last = time.Now()
	o.atLineStart = p[len(p)-1] == '\n'
	if o.log != nil {
		_, _ = o.log.Write(p)
	}
	return o.pusher.Write(p)
}

func (o *output) heartbeat(every time.Duration, stage func() string) {
	t := time.NewTicker(every / 4)
	defer t.Stop()
	for {
		select {
		case <-o.done:
			return
		case now := <-t.C:
			o.mu.Lock()
			if now.Sub(o.last) >= every {
				line := fmt.Sprintf("       ... still %s (%s)\n", stage(), now.Sub(o.start).Round(time.Second))
				if !o.atLineStart {
					line = "\n" + line
				}
				_, _ = o.writeLocked([]byte(line))
			}
			o.mu.Unlock()
		}
	}
}

// stop ends the heartbeat and the pusher's stream: a character cut short at
// the end is written as U+FFFD, a sequence left open is dropped.
func (o *output) stop() {
	o.stopOnce.Do(func() {
		close(o.done)
		o.mu.Lock()
		_ = o.pusher.Flush()
		o.mu.Unlock()
	})
}
