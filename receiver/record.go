package receiver

import (
	"context"
	"os"
	"time"

	"github.com/sokoban-deploy/sokoban/stow"
)

// StageTime is how long one stage of a build took.
type StageTime struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Record is a push's durable record (apps/APP/builds/ID.json), with its full
// output beside it (ID.log).
type Record struct {
	ID          string      `json:"id"`
	App         string      `json:"app"`
	User        string      `json:"user"`
	Fingerprint string      `json:"fingerprint"`
	Node        string      `json:"node"`
	Commit      string      `json:"commit,omitempty"`
	Buildpacks  []string    `json:"buildpacks,omitempty"`
	Status      string      `json:"status"`
	Reason      string      `json:"reason,omitempty"`
	Stage       string      `json:"stage"`
	Stages      []StageTime `json:"stages,omitempty"`
	Release     int         `json:"release,omitempty"`
	Started     time.Time   `json:"started"`
	Finished    time.Time   `json:"finished,omitzero"`
}

func recordKey(app, id string) string { return "apps/" + app + "/builds/" + id + ".json" }
func logKey(app, id string) string    { return "apps/" + app + "/builds/" + id + ".log" }

// record stows the push's record and log. Failures are logged: the push itself
// already happened.
func (p *push) record(ctx context.Context, logPath string) {
	p.mu.Lock()
	if p.stage != "" {
		p.stages = append(p.stages, StageTime{Name: p.stage, Seconds: time.Since(p.stageStart).Seconds()})
	}
	p.stage = p.status
	rec := Record{
		ID: p.id, App: p.req.App, User: p.req.User.Name, Fingerprint: p.req.User.Fingerprint,
		Node: p.r.cfg.Node, Commit: p.commit, Buildpacks: p.buildpacks, Status: p.status, Reason: p.reason,
		Stage: p.stage, Stages: append([]StageTime(nil), p.stages...), Release: p.version,
		Started: p.start.UTC(), Finished: time.Now().UTC(),
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if f, err := os.Open(logPath); err == nil {
		if _, err := p.r.deps.Store.Put(ctx, logKey(rec.App, rec.ID), f); err != nil {
			p.log.Warn("stow build log", "err", err)
		}
		_ = f.Close()
	}
	if _, err := stow.PutJSON(ctx, p.r.deps.Store, recordKey(rec.App, rec.ID), rec); err != nil {
		p.log.Warn("stow build record", "err", err)
	}
}
