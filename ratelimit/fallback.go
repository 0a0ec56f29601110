package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for Fallback.
const (
	DefaultCallTimeout   = 50 * time.Millisecond
	DefaultRetryInterval = time.Second
)

// remote is the shared limiter a Fallback prefers (*Redis).
type remote interface {
	Limiter
	Ping(ctx context.Context) error
}

// Fallback answers from Redis while it answers within a short timeout, and
// otherwise from an in-process limiter of the same rate, so that the
// service keeps serving, still limited per instance, while Redis is down.
// Degraded, it tries Redis again once every RetryInterval rather than on
// every request. It logs one warning when it degrades and one info line
// when it recovers.
type Fallback struct {
	remote remote
	local  *LocalLimiter
	log    *slog.Logger

	// CallTimeout bounds each Redis call; RetryInterval is how long to
	// answer locally before trying Redis again. Set them before use.
	CallTimeout   time.Duration
	RetryInterval time.Duration

	now      func() time.Time
	mu       sync.Mutex
	degraded bool
	reason   string
	retryAt  time.Time
}

// NewFallback wraps r with an in-process limiter of the same rate and burst;
// log receives the degraded and recovered lines. Limiters of different
// rates may share one client; whoever dialed it closes it.
func NewFallback(r *Redis, log *slog.Logger) *Fallback {
	return newFallback(r, r.rate, r.burst, log)
}

// DialRedis parses a redis:// or rediss:// URL and returns a client for
// limiters: each call fails fast, since an answer from the in-process
// limiter beats a slow one.
func DialRedis(url string, log *slog.Logger) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	// Fail fast: an answer from the in-process limiter beats a slow one.
	opt.ContextTimeoutEnabled = true
	if opt.DialTimeout <= 0 || opt.DialTimeout > time.Second {
		opt.DialTimeout = time.Second
	}
	if opt.ReadTimeout == 0 || opt.ReadTimeout > time.Second {
		opt.ReadTimeout = time.Second
	}
	if opt.WriteTimeout == 0 || opt.WriteTimeout > time.Second {
		opt.WriteTimeout = time.Second
	}
	if opt.MaxRetries == 0 {
		opt.MaxRetries = 1
	}
	if opt.DialerRetries == 0 {
		opt.DialerRetries = 1 // the Fallback itself retries, once a RetryInterval
	}
	// go-redis writes its own lines (failed dials) as plain text to stderr,
	// which breaks a JSON log; they go through slog instead, at debug,
	// since the Fallback logs the degraded and recovered states itself.
	if log != nil {
		redis.SetLogger(redisLog{log})
	}
	return redis.NewClient(opt), nil
}

// redisLog adapts slog to go-redis's logger.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	if l.log.Enabled(ctx, slog.LevelDebug) {
		l.log.DebugContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
	}
}

func newFallback(r remote, perSecond float64, burst int, log *slog.Logger) *Fallback {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fallback{remote: r, local: NewLocal(perSecond, burst, time.Minute), log: log,
		CallTimeout: DefaultCallTimeout, RetryInterval: DefaultRetryInterval, now: time.Now}
}

// Allow implements Limiter; it never fails.
func (f *Fallback) Allow(ctx context.Context, key string) (Decision, error) {
	if !f.tryRemote() {
		return f.local.Allow(ctx, key)
	}
	// The client hanging up must not count as Redis failing.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.CallTimeout)
	d, err := f.remote.Allow(cctx, key)
	cancel()
	f.record(err)
	if err != nil {
		return f.local.Allow(ctx, key)
	}
	return d, nil
}

// Probe pings Redis now and records the outcome, whatever the retry
// schedule; app start-up calls it so that readiness is right from the start.
func (f *Fallback) Probe(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, max(f.CallTimeout, 500*time.Millisecond))
	defer cancel()
	err := f.remote.Ping(cctx)
	f.record(err)
	return err
}

// Status is "redis" while Redis answers and "degraded: <reason>" while
// requests are limited in-process.
func (f *Fallback) Status() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.degraded {
		return "degraded: " + f.reason
	}
	return "redis"
}

// Check is Status for readiness probes: while degraded, once a
// RetryInterval, it pings Redis first, so that recovery shows even when no
// request has come to try Redis.
func (f *Fallback) Check(ctx context.Context) string {
	if f.degradedAndDue() {
		_ = f.Probe(ctx)
	}
	return f.Status()
}

func (f *Fallback) degradedAndDue() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.degraded && !f.now().Before(f.retryAt)
}

// tryRemote reports whether this request should go to Redis: always when
// healthy; when degraded, one request per RetryInterval.
func (f *Fallback) tryRemote() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.degraded {
		return true
	}
	now := f.now()
	if now.Before(f.retryAt) {
		return false
	}
	f.retryAt = now.Add(f.RetryInterval)
	return true
}

// record notes the outcome of a Redis call and logs the transitions.
func (f *Fallback) record(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil && f.degraded:
		f.degraded, f.reason = false, ""
		f.log.Info("rate limits shared through Redis again")
	case err != nil:
		reason := err.Error()
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			reason = "timeout"
		}
		if !f.degraded {
			f.log.Warn("Redis unavailable; rate limits are per instance until it answers", "error", err.Error())
		}
		f.degraded, f.reason = true, reason
		f.retryAt = f.now().Add(f.RetryInterval)
	}
}
