// Package ratelimit holds Cardrail's per-caller token buckets: in-process
// by default, shared through Redis when configured.
package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Decision is a rate limiter's answer for one request.
type Decision struct {
	Allowed    bool
	Limit      int           // the bucket's size; 0 means limiting is off
	Remaining  int           // tokens left after this request
	Reset      time.Duration // until the bucket is full again
	RetryAfter time.Duration // until the next request would be allowed
}

// Limiter is a token bucket per caller key.
type Limiter interface {
	Allow(ctx context.Context, key string) (Decision, error)
}

// LocalLimiter keeps one x/time/rate bucket per caller in this process.
type LocalLimiter struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	byKey map[string]*entry
	sweep time.Time
	idle  time.Duration
}

type entry struct {
	l    *rate.Limiter
	seen time.Time
}

// NewLocal returns a limiter refilling perSecond tokens a second into
// a bucket of burst; perSecond 0 turns limiting off. Buckets idle longer
// than idle (at least a minute) are forgotten.
func NewLocal(perSecond float64, burst int, idle time.Duration) *LocalLimiter {
	if burst < 1 {
		burst = 1
	}
	return &LocalLimiter{rate: rate.Limit(perSecond), burst: burst, byKey: map[string]*entry{}, idle: max(idle, time.Minute)}
}

// Allow implements Limiter.
func (l *LocalLimiter) Allow(_ context.Context, key string) (Decision, error) {
	if l.rate <= 0 {
		return Decision{Allowed: true}, nil
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > l.idle {
		for k, e := range l.byKey {
			if now.Sub(e.seen) > l.idle {
				delete(l.byKey, k)
			}
		}
		l.sweep = now
	}
	e := l.byKey[key]
	if e == nil {
		e = &entry{l: rate.NewLimiter(l.rate, l.burst)}
		l.byKey[key] = e
	}
	e.seen = now
	perToken := time.Duration(float64(time.Second) / float64(l.rate))
	d := Decision{Limit: l.burst}
	if e.l.AllowN(now, 1) {
		d.Allowed = true
	} else {
		d.RetryAfter = perToken
	}
	tokens := e.l.TokensAt(now)
	d.Remaining = int(tokens)
	d.Reset = time.Duration((float64(l.burst) - tokens) * float64(perToken))
	return d, nil
}
