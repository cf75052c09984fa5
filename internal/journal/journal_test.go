package journal

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// writes records every Write separately, so a test sees what journald would
// read as one line.
type writes struct {
	mu  sync.Mutex
	got []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, string(p))
	return len(p), nil
}

func text(opts *slog.HandlerOptions) func(io.Writer) slog.Handler {
	return func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) }
}

// The priority comes from the record's level, not from its text: a
// ReplaceAttr that renames or drops the level, a JSON line, a level between
// the named ones and a derived logger all keep it.
func TestHandlerPriorityFromLevel(t *testing.T) {
	t.Parallel()
	dropLevel := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.LevelKey {
			return slog.Attr{}
		}
		return a
	}
	for _, tc := range []struct {
		name  string
		inner func(io.Writer) slog.Handler
		level slog.Level
		want  string
	}{
		{"debug", text(&slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: DropTime(nil)}), slog.LevelDebug, "<7>level=DEBUG msg=m\n"},
		{"info", text(&slog.HandlerOptions{ReplaceAttr: DropTime(nil)}), slog.LevelInfo, "<6>level=INFO msg=m\n"},
		{"warn+2", text(&slog.HandlerOptions{ReplaceAttr: DropTime(nil)}), slog.LevelWarn + 2, "<4>level=WARN+2 msg=m\n"},
		{"error+4", text(&slog.HandlerOptions{ReplaceAttr: DropTime(nil)}), slog.LevelError + 4, "<3>level=ERROR+4 msg=m\n"},
		{"below debug", text(&slog.HandlerOptions{Level: slog.Level(-10), ReplaceAttr: DropTime(nil)}), slog.Level(-8), "<7>level=DEBUG-4 msg=m\n"},
		{"json", func(w io.Writer) slog.Handler {
			return slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: DropTime(nil)})
		}, slog.LevelWarn, `<4>{"level":"WARN","msg":"m"}` + "\n"},
		{"level dropped", text(&slog.HandlerOptions{ReplaceAttr: DropTime(dropLevel)}), slog.LevelError, "<3>msg=m\n"},
		{"time kept", text(nil), slog.LevelError, "<3>time="},
	} {
		w := &writes{}
		slog.New(NewHandler(w, tc.inner)).Log(context.Background(), tc.level, "m")
		if len(w.got) != 1 || !strings.HasPrefix(w.got[0], tc.want) {
			t.Errorf("%s: wrote %q, want %q", tc.name, w.got, tc.want)
		}
	}
}

// Derived loggers share the output and keep the prefix; records logged at
// once from many goroutines leave one Write each, prefix and line together.
func TestHandlerDerivedAndConcurrent(t *testing.T) {
	t.Parallel()
	w := &writes{}
	log := slog.New(NewHandler(w, text(&slog.HandlerOptions{ReplaceAttr: DropTime(nil)})))
	conn := log.With("conn", "abc").WithGroup("push")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				conn.Warn("w", "n", i)
			} else {
				log.Info("i", "n", i)
			}
		}()
	}
	wg.Wait()
	if len(w.got) != 50 {
		t.Fatalf("%d writes for 50 records", len(w.got))
	}
	line := regexp.MustCompile(`^(<4>level=WARN msg=w conn=abc push\.n=\d+|<6>level=INFO msg=i n=\d+)\n$`)
	for _, g := range w.got {
		if !line.MatchString(g) {
			t.Errorf("record %q", g)
		}
	}
}

func TestPriority(t *testing.T) {
	t.Parallel()
	for l, want := range map[slog.Level]int{
		slog.LevelDebug - 4: 7, slog.LevelDebug: 7, slog.LevelInfo - 1: 7, slog.LevelInfo: 6, slog.LevelInfo + 3: 6,
		slog.LevelWarn: 4, slog.LevelError - 1: 4, slog.LevelError: 3, slog.LevelError + 8: 3,
	} {
		if got := Priority(l); got != want {
			t.Errorf("Priority(%v) = %d, want %d", l, got, want)
		}
	}
}
