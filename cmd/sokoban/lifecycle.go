package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sokoban-deploy/sokoban/internal/ops"
	"github.com/sokoban-deploy/sokoban/receiver"
	"github.com/sokoban-deploy/sokoban/sshd"
)

// serviceFlags are serve's flags for running as a service.
type serviceFlags struct {
	http       string
	keyRefresh time.Duration
}

func (s *serviceFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.http, "http", "127.0.0.1:9222", "ops HTTP address for /metrics, /healthz and /readyz; empty turns it off")
	fs.DurationVar(&s.keyRefresh, "key-refresh", 2*time.Second, "how often the key store is checked for changes (SIGHUP re-reads it at once)")
}

// newMetricsRegistry is the one registry every package registers its series
// on (never the global default), with the Go runtime and process collectors.
func newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	_ = reg.Register(collectors.NewGoCollector())
	_ = reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// reloader is one thing SIGHUP reloads.
type reloader struct {
	name string
	fn   func(ctx context.Context) error
}

// lifecycle runs a wired server from READY=1 to its exit: it feeds the
// watchdog, reloads on SIGHUP, and drains on SIGTERM (SPEC H5). The one drain
// state is the receiver's (Drain, Draining): the receiver refuses new pushes,
// and STATUS= and /readyz read it, so nothing else keeps a flag that could
// disagree.
type lifecycle struct {
	log          *slog.Logger
	data         string
	ssh          *sshd.Server
	ln           net.Listener
	recv         *receiver.Receiver
	metrics      prometheus.Gatherer
	http         string // ops address; "" for none
	drainTimeout time.Duration
	reload       []reloader

	notify  notifier
	serving atomic.Bool // the SSH accept loop runs
}

// forceGrace bounds how long cancelled builds get to clean up (kill their
// processes, record the result, release the lease) before the server stops
// waiting for them.
const forceGrace = time.Minute

// sessionGrace is how long sessions still open after the drain (a `logs -f`,
// a clone) get to finish before they are cut.
const sessionGrace = 5 * time.Second

// run serves until ctx ends (SIGTERM, SIGINT) and then drains: new pushes are
// refused while the listener stays open, running builds get drainTimeout to
// finish, the rest are cancelled. It returns nil after a clean drain, so the
// process exits 0.
func (s *lifecycle) run(ctx context.Context) error {
	s.notify.log = s.log
	// Signals beyond the first: a second SIGTERM or Ctrl-C skips the wait.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	opsSrv, opsDone, err := s.startOps(ctx)
	if err != nil {
		_ = s.ln.Close()
		return err
	}
	serveErr := make(chan error, 1)
	s.serving.Store(true)
	go func() {
		err := s.ssh.Serve(s.ln)
		s.serving.Store(false)
		serveErr <- err
	}()

	// The listener was bound before Serve started: connections queue from
	// here on, so the server is ready.
	s.notify.ready(s.status())
	loops, stopLoops := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.statusLoop(loops) }()
	go func() { defer wg.Done(); s.watchdogLoop(loops) }()

	var result error
running:
	for {
		select {
		case <-ctx.Done():
			break running
		case <-hup:
			s.reloadAll()
		case err := <-serveErr:
			// The listener died under us: drain what runs, then exit non-zero
			// so systemd restarts the service (the caller logs why).
			result = errors.New("ssh listener closed")
			if err != nil {
				result = fmt.Errorf("ssh listener: %w", err)
			}
			s.log.Warn("ssh listener stopped; draining before exiting")
			break running
		}
	}
	s.drain(sigs)
	stopLoops()
	wg.Wait()

	// Sessions still open get a moment, then are cut; the listener closes here.
	sctx, cancel := context.WithTimeout(context.Background(), sessionGrace)
	if err := s.ssh.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("ssh shutdown", "err", err)
	}
	cancel()
	_ = s.ssh.Close()
	if opsSrv != nil {
		octx, cancel := context.WithTimeout(context.Background(), sessionGrace)
		_ = opsSrv.Shutdown(octx)
		cancel()
		if err := <-opsDone; err != nil {
			s.log.Warn("ops endpoints", "err", err)
		}
	}
	s.log.Info("stopped")
	return result
}

// startOps starts /metrics, /healthz and /readyz on --http.
func (s *lifecycle) startOps(ctx context.Context) (*ops.Server, <-chan error, error) {
	if s.http == "" {
		return nil, nil, nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.http)
	if err != nil {
		return nil, nil, fmt.Errorf("--http %s: %w (pass --http '' to turn the ops endpoints off)", s.http, err)
	}
	addr := ln.Addr().String()
	// Tests and scripts that listen on port 0 read the real address here.
	writeAddrFile(filepath.Join(s.data, "http.addr"), addr)
	var ready []ops.Check
	for _, b := range s.recv.Backends() {
		ready = append(ready, ops.Check{Name: b.Name, Pinger: b.Pinger})
	}
	// A draining node is alive but takes no new pushes: a load balancer that
	// reads /readyz sends them elsewhere.
	ready = append(ready, ops.Check{Name: "accepting pushes", Pinger: ops.PingFunc(func(context.Context) error {
		if s.recv.Draining() {
			return errors.New("draining: the server is stopping")
		}
		return nil
	})})
	srv := ops.New(ops.Config{
		Gatherer: s.metrics,
		Health:   s.healthChecks(),
		Ready:    ready,
		Logger:   s.log,
	})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	s.log.Info("ops endpoints listening", "addr", addr, "paths", "/metrics /healthz /readyz")
	return srv, done, nil
}

// healthChecks are what /healthz and the watchdog check: the process answers,
// the SSH accept loop runs, the hook socket is there.
func (s *lifecycle) healthChecks() []ops.Check {
	return []ops.Check{
		{Name: "ssh listener", Pinger: ops.PingFunc(func(context.Context) error {
			if !s.serving.Load() {
				return errors.New("not accepting connections")
			}
			return nil
		})},
		{Name: "hook socket", Pinger: ops.PingFunc(func(context.Context) error { return s.recv.Healthy() })},
	}
}

func (s *lifecycle) healthy(ctx context.Context) error {
	checks := s.healthChecks()
	var errs []error
	for i, err := range ops.Run(ctx, checks) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", checks[i].Name, err))
		}
	}
	return errors.Join(errs...)
}

// watchdogLoop feeds systemd's watchdog at half its interval while the server
// is healthy. When it is not, systemd stops hearing from it and restarts the
// service after WatchdogSec.
func (s *lifecycle) watchdogLoop(ctx context.Context) {
	interval := watchdogInterval(s.log)
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	var failing bool
	for {
		cctx, cancel := context.WithTimeout(ctx, interval/2)
		err := s.healthy(cctx)
		cancel()
		switch {
		case err != nil && !failing:
			s.log.Error("unhealthy: no longer feeding the systemd watchdog", "err", err)
		case err == nil && failing:
			s.log.Info("healthy again")
		}
		failing = err != nil
		if !failing {
			s.notify.send("WATCHDOG=1")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statusLoop keeps STATUS= current: "2 builds running", "draining: 1 build
// running".
func (s *lifecycle) statusLoop(ctx context.Context) {
	for {
		changed := s.recv.Changed()
		s.notify.setStatus(s.status())
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func (s *lifecycle) status() string {
	n := s.recv.Active()
	text := fmt.Sprintf("%d builds running", n)
	if n == 1 {
		text = "1 build running"
	}
	if s.recv.Draining() {
		text = "draining: " + text
	}
	return text
}

// reloadAll is SIGHUP: re-read what can change without a restart.
func (s *lifecycle) reloadAll() {
	s.notify.reloading()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range s.reload {
		if err := r.fn(ctx); err != nil {
			s.log.Error("reload failed; keeping the previous state", "what", r.name, "err", err)
			continue
		}
		s.log.Info("reloaded", "what", r.name)
	}
	s.notify.ready(s.status())
}

// drain refuses new pushes, waits up to drainTimeout for the running ones
// (less if another signal comes), then cancels the rest and waits for them to
// clean up.
func (s *lifecycle) drain(sigs <-chan os.Signal) {
	s.recv.Drain()
	s.notify.send("STOPPING=1")
	s.log.Info("draining: new pushes are refused, running builds may finish",
		"builds", s.recv.Active(), "drain_timeout", s.drainTimeout)

	ctx, cancel := context.WithTimeout(context.Background(), s.drainTimeout)
	defer cancel()
	go func() {
		// The signal that started the drain is the first one on sigs.
		for seen := 0; ; {
			select {
			case <-ctx.Done():
				return
			case <-sigs:
				if seen++; seen >= 2 {
					s.log.Warn("second stop signal: cancelling running builds now")
					cancel()
					return
				}
			}
		}
	}()
	if err := s.recv.Wait(ctx); err == nil {
		s.log.Info("drained: no builds running")
		return
	}
	n := s.recv.CancelAll(receiver.ErrRestarting)
	s.log.Warn("drain timeout: cancelling the builds still running", "builds", n)
	gctx, gcancel := context.WithTimeout(context.Background(), forceGrace)
	defer gcancel()
	if err := s.recv.Wait(gctx); err != nil {
		s.log.Error("cancelled builds did not stop in time; stopping anyway", "err", err)
	}
}
