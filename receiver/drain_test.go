package receiver

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sokoban-deploy/sokoban/stow"
)

// drainReceiver is a receiver with just what drain and metrics use.
func drainReceiver(t *testing.T, reg prometheus.Registerer) *Receiver {
	t.Helper()
	r := &Receiver{log: slog.New(slog.DiscardHandler), active: map[string]*push{}}
	m, err := newMetrics(reg, r.Active)
	if err != nil {
		t.Fatal(err)
	}
	r.metrics = m
	return r
}

func drainPush(r *Receiver, app string) *push {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &push{r: r, req: Request{App: app}, ctx: ctx, cancel: cancel, start: time.Now(), status: StatusRunning}
}

// SPEC H5: once draining, a push is refused with the restarting line as a git
// ERR pkt-line before anything starts.
func TestDrainRefusesNewPushes(t *testing.T) {
	t.Parallel()
	r := drainReceiver(t, nil)
	r.Drain()
	if !r.Draining() {
		t.Fatal("Draining() is false after Drain")
	}
	var out bytes.Buffer
	if code := r.ReceivePack(context.Background(), Request{App: "myapp", Stdout: &out}); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if want := "ERR " + MsgRestarting + "\n"; !strings.HasSuffix(out.String(), want) || !strings.HasPrefix(out.String(), "00") {
		t.Fatalf("refusal %q", out.String())
	}
}

// Wait returns once every push in flight has left, not before; with its
// context ended first it says how many are still running.
func TestWaitForPushesInFlight(t *testing.T) {
	t.Parallel()
	r := drainReceiver(t, nil)
	if err := r.Wait(context.Background()); err != nil {
		t.Fatalf("idle receiver: %v", err)
	}
	track, ok := r.enter()
	if !ok {
		t.Fatal("enter refused while not draining")
	}
	changed := r.Changed()
	p := drainPush(r, "myapp")
	deactivate := track.activate(p)
	<-changed // a start is a change
	if r.Active() != 1 {
		t.Fatalf("Active() = %d", r.Active())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 pushes still running") {
		t.Fatalf("Wait with a push running: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- r.Wait(context.Background()) }()
	p.finish(StatusSucceeded, "")
	deactivate()
	if r.Active() != 0 {
		t.Fatalf("Active() = %d after the push ended", r.Active())
	}
	select {
	case err := <-waited:
		t.Fatalf("Wait returned before the push left: %v", err)
	default:
	}
	track.leave()
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
}

// CancelAll cancels the running pushes with its cause, and a push that gets
// its lease afterwards is cancelled at once.
func TestCancelAll(t *testing.T) {
	t.Parallel()
	r := drainReceiver(t, nil)
	track, _ := r.enter()
	running := drainPush(r, "running")
	defer track.activate(running)()
	if n := r.CancelAll(ErrRestarting); n != 1 {
		t.Fatalf("CancelAll cancelled %d", n)
	}
	if !errors.Is(context.Cause(running.ctx), ErrRestarting) {
		t.Fatalf("cause %v", context.Cause(running.ctx))
	}
	late, _ := r.enter()
	latecomer := drainPush(r, "latecomer")
	defer late.activate(latecomer)()
	if !errors.Is(context.Cause(latecomer.ctx), ErrRestarting) {
		t.Fatalf("a push that started after CancelAll runs: %v", context.Cause(latecomer.ctx))
	}
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	if m.Histogram != nil {
		return float64(m.Histogram.GetSampleCount())
	}
	return m.Gauge.GetValue()
}

// Every push is counted once: by its result when it ran, as refused when it
// was turned away; a build adds one duration and its stages.
func TestPushMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	r := drainReceiver(t, reg)

	refused, _ := r.enter()
	refused.leave()

	track, _ := r.enter()
	p := drainPush(r, "built")
	deactivate := track.activate(p)
	if r.Active() != 1 {
		t.Fatalf("Active() = %d", r.Active())
	}
	p.mu.Lock()
	p.commit = "abc"
	p.stages = []StageTime{{Name: "compiling", Seconds: 2}, {Name: "releasing", Seconds: 1}}
	p.mu.Unlock()
	p.finish(StatusSucceeded, "")
	deactivate()
	track.leave()

	if v := counterValue(t, r.metrics.pushes.WithLabelValues(StatusSucceeded)); v != 1 {
		t.Errorf("succeeded = %v", v)
	}
	if v := counterValue(t, r.metrics.pushes.WithLabelValues(resultRefused)); v != 1 {
		t.Errorf("refused = %v", v)
	}
	if v := counterValue(t, r.metrics.build); v != 1 {
		t.Errorf("build durations = %v", v)
	}
	if v := counterValue(t, r.metrics.stages.WithLabelValues("compiling").(prometheus.Histogram)); v != 1 {
		t.Errorf("compiling durations = %v", v)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	want := "sokoban_build_duration_seconds sokoban_builds_active sokoban_lease_waits_total sokoban_pushes_total sokoban_stage_duration_seconds"
	if strings.Join(names, " ") != want {
		t.Fatalf("registered %v", names)
	}
	if _, err := newMetrics(reg, r.Active); err == nil {
		t.Fatal("registering twice on one registry succeeded")
	}
}

// pingStore is a store that can be pinged, like stow.S3.
type pingStore struct {
	stow.Store
	err error
}

func (p pingStore) Ping(context.Context) error { return p.err }

// Readiness pings the backends that can be pinged and names the one that
// fails; local backends are always ready.
func TestBackendsPing(t *testing.T) {
	t.Parallel()
	local, err := stow.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{deps: Deps{Store: local}}
	if err := r.Ping(context.Background()); err != nil {
		t.Fatalf("local store: %v", err)
	}
	down := errors.New("connection refused")
	r.deps.Store = pingStore{Store: local, err: down}
	err = r.Ping(context.Background())
	if !errors.Is(err, down) || !strings.HasPrefix(err.Error(), "store: ") {
		t.Fatalf("unreachable store: %v", err)
	}
	var names []string
	for _, b := range r.Backends() {
		names = append(names, b.Name)
	}
	if strings.Join(names, ",") != "store,cluster,release" {
		t.Fatalf("backends %v", names)
	}
}
