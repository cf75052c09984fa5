package ops

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serve runs s on a loopback port and returns its base URL.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func ok(context.Context) error { return nil }

// /healthz checks the process's own parts, /readyz those and the backends; a
// failing check makes the answer 503 and names itself.
func TestProbes(t *testing.T) {
	t.Parallel()
	storeDown := errors.New("dial tcp: connection refused\nretrying")
	base := serve(t, New(Config{
		Health: []Check{{Name: "ssh listener", Pinger: PingFunc(ok)}},
		Ready:  []Check{{Name: "store", Pinger: PingFunc(func(context.Context) error { return storeDown })}, {Name: "cluster", Pinger: PingFunc(ok)}},
	}))
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ssh listener: ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || body != "ssh listener: ok\nstore: dial tcp: connection refused retrying\ncluster: ok\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	if code, _ := get(t, base+"/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics without a gatherer: %d", code)
	}
}

// A check that hangs or panics fails its probe instead of hanging the
// endpoint or the process.
func TestProbeTimeoutAndPanic(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	base := serve(t, New(Config{
		Timeout: 50 * time.Millisecond,
		Ready: []Check{
			{Name: "stuck", Pinger: PingFunc(func(context.Context) error { <-release; return nil })},
			{Name: "broken", Pinger: PingFunc(func(context.Context) error { panic("boom") })},
		},
	}))
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "stuck: context deadline exceeded") || !strings.Contains(body, "broken: ops: check panicked: boom") {
		t.Fatalf("/readyz: %d %q", code, body)
	}
}

// /metrics serves exactly the registry it is given, in the text format.
func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sokoban_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	base := serve(t, New(Config{Gatherer: reg}))
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "\nsokoban_test_total 3\n") || strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
}
