package receiver

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the receiver's Prometheus series (DESIGN "Metrics"). Each push
// that reaches the receiver is counted once in sokoban_pushes_total, by how it
// ended; "refused" are pushes turned away before a build could start (app busy,
// pushes disabled, draining), of which the busy ones are also
// sokoban_lease_waits_total.
type metrics struct {
	pushes     *prometheus.CounterVec
	build      prometheus.Histogram
	stages     *prometheus.HistogramVec
	leaseWaits prometheus.Counter
}

const resultRefused = "refused"

func newMetrics(reg prometheus.Registerer, active func() int) (*metrics, error) {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sokoban_pushes_total",
			Help: "Pushes by result: succeeded, failed, rejected, cancelled, or refused before a build started.",
		}, []string{"result"}),
		build: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sokoban_build_duration_seconds",
			Help:    "How long pushes that built the deploy branch took, from accepting the push to its result.",
			Buckets: []float64{5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600},
		}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sokoban_stage_duration_seconds",
			Help:    "How long each stage of a push took (queued, restoring, receiving, detecting, compiling, packing, stowing, releasing).",
			Buckets: []float64{0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 900},
		}, []string{"stage"}),
		leaseWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sokoban_lease_waits_total",
			Help: "Pushes refused because another push of the same app held its lease.",
		}),
	}
	// Pre-create the results so a dashboard sees zeros, not missing series.
	for _, r := range []string{StatusSucceeded, StatusFailed, StatusRejected, StatusCancelled, resultRefused} {
		m.pushes.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	buildsActive := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sokoban_builds_active",
		Help: "Builds running on this node.",
	}, func() float64 { return float64(active()) })
	for _, c := range []prometheus.Collector{m.pushes, m.build, m.stages, m.leaseWaits, buildsActive} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("receiver: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) refused() { m.pushes.WithLabelValues(resultRefused).Inc() }

func (m *metrics) leaseWait() { m.leaseWaits.Inc() }

// observe counts a finished push. Stage timings exist only for pushes that ran
// to a result; a push refused on the way has no meaningful ones.
func (m *metrics) observe(p *push) {
	p.mu.Lock()
	status, built := p.status, p.commit != ""
	stages := append([]StageTime(nil), p.stages...)
	p.mu.Unlock()
	if status == "" || status == StatusRunning {
		m.refused()
		return
	}
	m.pushes.WithLabelValues(status).Inc()
	for _, s := range stages {
		m.stages.WithLabelValues(s.Name).Observe(s.Seconds)
	}
	if built {
		m.build.Observe(time.Since(p.start).Seconds())
	}
}
