package sshd

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	gossh "golang.org/x/crypto/ssh"
)

// metrics are the front door's Prometheus series (DESIGN "Metrics").
type metrics struct {
	conns        prometheus.Gauge
	authFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sokoban_ssh_connections_active",
			Help: "Open SSH connections, from TCP accept to close, handshakes included.",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sokoban_auth_failures_total",
			Help: "SSH connections that failed to authenticate, and sessions refused because their key no longer resolves.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.conns, m.authFailures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("sshd: register metrics: %w", err)
		}
	}
	return m, nil
}

// track counts conn as open until it is closed (gliderlabs closes every
// connection it accepted, whatever happened to it).
func (m *metrics) track(conn net.Conn) net.Conn {
	m.conns.Inc()
	return &countedConn{Conn: conn, closed: m.conns.Dec}
}

// handshakeFailed counts a connection that gave up authenticating. A bare TCP
// probe or a key scan ends before authentication and is not a failure.
func (m *metrics) handshakeFailed(err error) {
	var auth *gossh.ServerAuthError
	if errors.As(err, &auth) {
		m.authFailures.Inc()
	}
}

type countedConn struct {
	net.Conn
	once   sync.Once
	closed func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.closed)
	return c.Conn.Close()
}
