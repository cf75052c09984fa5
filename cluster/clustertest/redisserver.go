// Package clustertest holds what tests of cluster backends and their users
// share: a real redis-server started per test, and the conformance suite every
// cluster backend must pass.
package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RedisServer is a redis-server process on a random 127.0.0.1 port, without
// persistence, stopped when the test ends.
type RedisServer struct {
	// Addr is host:port.
	Addr string
	// URL is redis://Addr.
	URL string

	bin, dir string
	port     int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRedis starts a redis-server for t and waits until it answers PING. It
// fails the test when redis-server is not installed.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found in PATH: install redis-server (apt-get install redis-server)")
	}
	s := &RedisServer{bin: bin, dir: t.TempDir()}
	// The port is free when picked but could be taken before redis binds it:
	// try a few.
	var last string
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("pick a port for redis-server: %v", err)
		}
		s.port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "redis://" + s.Addr
		if last = s.start(); last == "" {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redis-server did not start; its last output:\n%s", last)
	return nil
}

// start runs redis-server on s.port and waits until it answers; on failure it
// returns the server's output.
func (s *RedisServer) start() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &lockedBuffer{}
	// The server outlives any one call: Stop and Restart manage its life.
	cmd := exec.Command(s.bin, //nolint:noctx // see above
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--daemonize", "no")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return "start redis-server: " + err.Error()
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	if waitReady(s.Addr, exited, 10*time.Second) {
		return ""
	}
	_ = cmd.Process.Kill()
	<-exited
	s.cmd = nil
	return out.String() + "(redis-server did not answer PING)"
}

// Stop kills the server and waits for it to exit; safe to call again.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart stops the server and starts an empty one on the same port, as a
// Redis without persistence comes back after a crash.
func (s *RedisServer) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if out := s.start(); out != "" {
		t.Fatalf("restart redis-server: %s", out)
	}
}

// waitReady polls PING until the server at addr answers, exits, or the guard passes.
func waitReady(addr string, exited <-chan struct{}, guard time.Duration) bool {
	deadline := time.Now().Add(guard)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if ping(addr) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func ping(addr string) bool {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return false
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func freePort() (int, error) {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("unexpected listener address %v", l.Addr())
	}
	return addr.Port, nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
