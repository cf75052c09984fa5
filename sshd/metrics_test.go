package sshd

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sokoban-deploy/sokoban/receiver"
)

// The front door's series land on the registry it is given: open connections
// go up and back down, a key that fails to authenticate is counted.
func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	git := &fakeGit{fn: func(context.Context, receiver.Request) int { return 0 }}
	ts := startTestServer(t, Config{Metrics: reg}, git)

	client := ts.dial(t)
	if n := value(ts.srv.metrics.conns); n != 1 {
		t.Fatalf("sokoban_ssh_connections_active = %v with one client", n)
	}
	_ = client.Close()
	waitMetric(t, "the connection to be counted out", func() bool { return value(ts.srv.metrics.conns) == 0 })

	_, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
		User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(newSigner(t))},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err == nil {
		t.Fatal("an unknown key authenticated")
	}
	waitMetric(t, "the auth failure to be counted", func() bool { return value(ts.srv.metrics.authFailures) == 1 })

	// A bare TCP connection that never authenticates is no auth failure.
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	waitMetric(t, "the probe to be counted out", func() bool { return value(ts.srv.metrics.conns) == 0 })
	if n := value(ts.srv.metrics.authFailures); n != 1 {
		t.Fatalf("sokoban_auth_failures_total = %v after a TCP probe", n)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	if strings.Join(names, " ") != "sokoban_auth_failures_total sokoban_ssh_connections_active" {
		t.Fatalf("registered series: %v", names)
	}
}

// value reads a counter's or gauge's current value.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func waitMetric(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
