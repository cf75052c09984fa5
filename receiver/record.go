package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
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
	p.r.prune(ctx, rec.App)
}

// ErrNoBuild means no record exists for a build id.
var ErrNoBuild = errors.New("receiver: no such build")

var buildIDRE = regexp.MustCompile(`^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$`)

// ValidBuildID reports whether id has the form NewBuildID makes.
func ValidBuildID(id string) bool { return buildIDRE.MatchString(id) }

// Builds returns app's recorded builds, newest first, at most limit (0: all).
func (r *Receiver) Builds(ctx context.Context, app string, limit int) ([]Record, error) {
	ids, err := r.recordIDs(ctx, app)
	if err != nil {
		return nil, err
	}
	slices.Reverse(ids)
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]Record, 0, len(ids))
	for _, id := range ids {
		rec, err := r.Build(ctx, app, id)
		if errors.Is(err, ErrNoBuild) {
			continue // pruned meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// Build returns one build's record.
func (r *Receiver) Build(ctx context.Context, app, id string) (Record, error) {
	if !ValidBuildID(id) {
		return Record{}, ErrNoBuild
	}
	var rec Record
	if _, err := stow.GetJSON(ctx, r.deps.Store, recordKey(app, id), &rec); err != nil {
		if errors.Is(err, stow.ErrNotFound) {
			return Record{}, ErrNoBuild
		}
		return Record{}, fmt.Errorf("receiver: build record: %w", err)
	}
	return rec, nil
}

// BuildLog opens one finished build's full output.
func (r *Receiver) BuildLog(ctx context.Context, app, id string) (io.ReadCloser, error) {
	if !ValidBuildID(id) {
		return nil, ErrNoBuild
	}
	rc, _, err := r.deps.Store.Get(ctx, logKey(app, id))
	if errors.Is(err, stow.ErrNotFound) {
		return nil, ErrNoBuild
	}
	if err != nil {
		return nil, fmt.Errorf("receiver: build log: %w", err)
	}
	return rc, nil
}

// recordIDs lists app's build ids, oldest first (ids sort by time).
func (r *Receiver) recordIDs(ctx context.Context, app string) ([]string, error) {
	infos, err := r.deps.Store.List(ctx, "apps/"+app+"/builds/")
	if err != nil {
		return nil, fmt.Errorf("receiver: list builds: %w", err)
	}
	var ids []string
	for _, info := range infos {
		name := path.Base(info.Key)
		if id, ok := strings.CutSuffix(name, ".json"); ok && ValidBuildID(id) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// prune keeps the newest KeepBuilds records (and logs) of app.
func (r *Receiver) prune(ctx context.Context, app string) {
	ids, err := r.recordIDs(ctx, app)
	if err != nil || len(ids) <= r.cfg.KeepBuilds {
		return
	}
	for _, id := range ids[:len(ids)-r.cfg.KeepBuilds] {
		_ = r.deps.Store.Delete(ctx, logKey(app, id))
		_ = r.deps.Store.Delete(ctx, recordKey(app, id))
	}
}
