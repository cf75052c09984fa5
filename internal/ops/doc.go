// Package ops serves the operator's HTTP endpoints: /metrics (Prometheus),
// /healthz (the process and its listeners) and /readyz (its backends are
// reachable). It knows nothing about SSH, pushes or storage: it runs the
// checks it is given.
package ops
