package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Pinger says whether something is working: nil, or why not.
type Pinger interface {
	Ping(ctx context.Context) error
}

// PingFunc adapts a function to Pinger.
type PingFunc func(ctx context.Context) error

// Ping calls f.
func (f PingFunc) Ping(ctx context.Context) error { return f(ctx) }

// Check is one named probe of /healthz or /readyz.
type Check struct {
	Name   string
	Pinger Pinger
}

// Config is what the endpoints serve.
type Config struct {
	Gatherer prometheus.Gatherer // /metrics; nil serves 404
	Health   []Check             // /healthz: the process and its listeners
	Ready    []Check             // /readyz: backends reachable (Health is checked too)
	Timeout  time.Duration       // per probe; default 5s
	Logger   *slog.Logger
}

// Server is the ops HTTP server.
type Server struct {
	cfg  Config
	log  *slog.Logger
	http *http.Server

	mu   sync.Mutex
	last map[string]string // path → last failing answer, to log changes only
}

// New returns a server for cfg; Serve starts it.
func New(cfg Config) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, last: map[string]string{}}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Handler serves /metrics, /healthz and /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		s.probe(w, r, s.cfg.Health)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s.probe(w, r, append(append([]Check(nil), s.cfg.Health...), s.cfg.Ready...))
	})
	return mux
}

// Serve answers on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops: serve: %w", err)
	}
	return nil
}

// Shutdown stops the server, letting requests in flight finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}

// probe runs checks in parallel and answers 200 when all pass, 503 otherwise,
// with one "name: ok" or "name: error" line per check.
func (s *Server) probe(w http.ResponseWriter, r *http.Request, checks []Check) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	errs := Run(ctx, checks)
	var b strings.Builder
	failed := false
	for i, c := range checks {
		if errs[i] != nil {
			failed = true
			fmt.Fprintf(&b, "%s: %s\n", c.Name, oneLine(errs[i].Error()))
		} else {
			fmt.Fprintf(&b, "%s: ok\n", c.Name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	s.logChange(r.URL.Path, failed, b.String())
	if failed {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = fmt.Fprint(w, b.String())
}

// logChange logs a probe's answer when it changes: a load balancer polling
// every few seconds must not fill the log with the same failure.
func (s *Server) logChange(path string, failed bool, answer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, wasFailing := s.last[path]
	switch {
	case failed && prev != answer:
		s.last[path] = answer
		s.log.Warn("probe failing", "path", path, "result", strings.TrimSpace(answer))
	case !failed && wasFailing:
		delete(s.last, path)
		s.log.Info("probe ok again", "path", path)
	}
}

// Run runs checks in parallel and returns their errors in order. A check that
// does not answer before ctx ends fails with ctx's error.
func Run(ctx context.Context, checks []Check) []error {
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = ping(ctx, c.Pinger)
		}()
	}
	wg.Wait()
	return errs
}

// ping calls p, but gives up when ctx ends even if p does not, and turns a
// panic into an error: a probe must never take the process down.
func ping(ctx context.Context, p Pinger) (err error) {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- fmt.Errorf("ops: check panicked: %v", v)
			}
		}()
		done <- p.Ping(ctx)
	}()
	select {
	case err = <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
