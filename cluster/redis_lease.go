package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// leaseValue is what sokoban:lease:APP holds: the token makes compare-and-act
// safe, the holder is what a refused pusher is told.
type leaseValue struct {
	Token  string `json:"token"`
	Holder Holder `json:"holder"`
}

// Acquire takes app's lease for h (Node and Since filled in when empty) and
// keeps renewing it every TTL/3 until Release. It returns a *BusyError naming
// the holder, or an error wrapping ErrUnavailable when Redis does not answer.
func (r *Redis) Acquire(ctx context.Context, app string, h Holder) (Lease, error) {
	if h.Node == "" {
		h.Node = r.cfg.Node
	}
	if h.Since.IsZero() {
		h.Since = time.Now()
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:]) // crypto/rand.Read never fails
	value, err := json.Marshal(leaseValue{Token: hex.EncodeToString(tok[:]), Holder: h})
	if err != nil {
		return nil, fmt.Errorf("cluster: acquire %s: %w", app, err)
	}

	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	sent := time.Now()
	res, err := r.scripts.acquire.Run(ctx, r.rdb, []string{keyLease + app, keyGen + app},
		string(value), r.cfg.LeaseTTL.Milliseconds()).Result()
	if err != nil {
		return nil, unavailable("acquire "+app, err)
	}
	switch v := res.(type) {
	case int64:
		l := &redisLease{
			r: r, app: app, holder: h, value: string(value), gen: v,
			lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			// Hand back what was just taken rather than leave it to expire.
			rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
			defer rcancel()
			_ = r.scripts.release.Run(rctx, r.rdb, []string{keyLease + app}, l.value).Err()
			return nil, fmt.Errorf("cluster: acquire %s: %w", app, ErrClosed)
		}
		r.leases[l] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			l.renew(sent)
		}()
		return l, nil
	case string:
		var cur leaseValue
		if json.Unmarshal([]byte(v), &cur) != nil || cur.Holder.User == "" {
			cur.Holder.User = "an unknown holder"
		}
		return nil, &BusyError{App: app, Holder: cur.Holder}
	default:
		return nil, fmt.Errorf("cluster: acquire %s: unexpected reply %T", app, res)
	}
}

type redisLease struct {
	r      *Redis
	app    string
	holder Holder
	value  string // the exact value set; compared by refresh, check and release
	gen    int64

	lost     chan struct{}
	lostOnce sync.Once
	lostErr  error // set before lost is closed

	stop     chan struct{} // closed to end renewal
	stopOnce sync.Once
	done     chan struct{} // closed when renewal ended

	releaseOnce sync.Once
	releaseErr  error
}

func (l *redisLease) Holder() Holder        { return l.holder }
func (l *redisLease) Generation() int64     { return l.gen }
func (l *redisLease) Lost() <-chan struct{} { return l.lost }

// renew refreshes the lease every TTL/3. A refresh that finds another token
// loses the lease at once; failures to reach Redis are retried quickly until
// two thirds of the TTL have passed since the last confirmed refresh, after
// which the key may already have expired and the lease is lost.
func (l *redisLease) renew(lastOK time.Time) {
	defer close(l.done)
	ttl := l.r.cfg.LeaseTTL
	retry := max(ttl/10, 10*time.Millisecond)
	timer := time.NewTimer(ttl / 3)
	defer timer.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-timer.C:
		}
		deadline := lastOK.Add(ttl * 2 / 3)
		sent := time.Now()
		callDeadline := sent.Add(ttl / 3)
		if deadline.Before(callDeadline) {
			callDeadline = deadline
		}
		ctx, cancel := context.WithDeadline(l.r.bg, callDeadline)
		n, err := l.r.scripts.refresh.Run(ctx, l.r.rdb, []string{keyLease + l.app},
			l.value, ttl.Milliseconds()).Int64()
		cancel()
		switch {
		case err == nil && n == 1:
			lastOK = sent
			timer.Reset(ttl / 3)
		case err == nil:
			l.r.log.Warn("cluster: lease taken over", "app", l.app, "generation", l.gen)
			l.markLost(fmt.Errorf("cluster: lease %s: taken over: %w", l.app, ErrLeaseLost))
			return
		case time.Now().After(deadline) || errors.Is(err, context.Canceled):
			l.r.log.Warn("cluster: lease renewal failed", "app", l.app, "generation", l.gen, "err", err)
			l.markLost(fmt.Errorf("cluster: lease %s: renewal failed: %w: %w", l.app, ErrLeaseLost, err))
			return
		default:
			l.r.log.Debug("cluster: lease renewal failed, retrying", "app", l.app, "err", err)
			timer.Reset(retry)
		}
	}
}

func (l *redisLease) markLost(err error) {
	l.lostOnce.Do(func() {
		l.lostErr = err
		close(l.lost)
	})
}

// stopRenewal ends the renewal goroutine; with a non-nil why (Close), the
// lease is also reported lost since nobody renews it any more.
func (l *redisLease) stopRenewal(why error) {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	if why != nil {
		l.markLost(fmt.Errorf("cluster: lease %s: %w: %w", l.app, ErrLeaseLost, why))
	}
}

func (l *redisLease) Check(ctx context.Context) error {
	select {
	case <-l.lost:
		return l.lostErr
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	n, err := l.r.scripts.check.Run(ctx, l.r.rdb, []string{keyLease + l.app, keyGen + l.app},
		l.value, l.gen).Int64()
	switch {
	case err != nil:
		return unavailable("check lease "+l.app, err)
	case n == 0:
		return fmt.Errorf("cluster: lease %s: no longer held: %w", l.app, ErrLeaseLost)
	case n < 0:
		return fmt.Errorf("cluster: lease %s: generation %d superseded: %w", l.app, l.gen, ErrLeaseLost)
	}
	return nil
}

// Release stops renewal and deletes the lease only if it still holds this
// lease's token, so a stale holder never frees a newer holder's lease.
func (l *redisLease) Release(ctx context.Context) error {
	l.releaseOnce.Do(func() {
		l.stopRenewal(nil)
		l.r.mu.Lock()
		delete(l.r.leases, l)
		l.r.mu.Unlock()
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		if err := l.r.scripts.release.Run(ctx, l.r.rdb, []string{keyLease + l.app}, l.value).Err(); err != nil {
			l.releaseErr = unavailable("release lease "+l.app, err)
		}
	})
	return l.releaseErr
}
