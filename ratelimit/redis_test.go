package ratelimit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedisURL is where the tests look for Redis.
func testRedisURL() string {
	if u := os.Getenv("CARDRAIL_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// newClient returns a client on the test Redis, closed after the test; the
// test skips when Redis does not answer, unless
// CARDRAIL_TEST_REQUIRE_REDIS=1, which fails it.
func newClient(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(testRedisURL())
	if err != nil {
		t.Fatalf("CARDRAIL_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if os.Getenv("CARDRAIL_TEST_REQUIRE_REDIS") == "1" {
			t.Fatalf("Redis at %s is required (CARDRAIL_TEST_REQUIRE_REDIS=1) but unreachable: %v", opt.Addr, err)
		}
		t.Skipf("skipping: Redis does not answer at %s (%v); set CARDRAIL_TEST_REDIS_URL", opt.Addr, err)
	}
	return c
}

// testPrefix returns a key prefix unique to this run of this test and
// deletes its keys after the test.
func testPrefix(t *testing.T, c *redis.Client) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	prefix := KeyPrefix + "test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return prefix
}

func newTestRedis(t *testing.T, c *redis.Client, prefix string, perSecond float64, burst int) *Redis {
	l := NewRedis(c, perSecond, burst)
	l.Prefix = prefix
	return l
}

func mustAllow(t *testing.T, l Limiter, key string) Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return d
}

func TestRedisBurstThenRefuses(t *testing.T) {
	c := newClient(t)
	l := newTestRedis(t, c, testPrefix(t, c), 1, 5)
	for i := range 5 {
		d := mustAllow(t, l, "test:alice")
		if !d.Allowed || d.Limit != 5 || d.Remaining != 4-i || d.RetryAfter != 0 {
			t.Fatalf("request %d: %+v, want allowed, limit 5, remaining %d", i+1, d, 4-i)
		}
		// i+1 tokens missing at 1/s: full again in about i+1 seconds.
		if want := time.Duration(i+1) * time.Second; d.Reset > want || d.Reset < want-200*time.Millisecond {
			t.Errorf("request %d: reset %v, want about %v", i+1, d.Reset, want)
		}
	}
	d := mustAllow(t, l, "test:alice")
	if d.Allowed || d.Limit != 5 || d.Remaining != 0 {
		t.Fatalf("request 6: %+v, want refused with nothing remaining", d)
	}
	if d.RetryAfter <= 800*time.Millisecond || d.RetryAfter > time.Second {
		t.Errorf("retry after %v, want just under 1s", d.RetryAfter)
	}
	if d.Reset <= 4*time.Second || d.Reset > 5*time.Second {
		t.Errorf("reset %v, want just under 5s", d.Reset)
	}
	// Another caller has its own bucket.
	if d := mustAllow(t, l, "test:bob"); !d.Allowed || d.Remaining != 4 {
		t.Errorf("another caller: %+v, want allowed with 4 remaining", d)
	}
	// The bucket expires once it would be full again.
	ttl, err := c.PTTL(context.Background(), l.Prefix+"test:alice").Result()
	if err != nil || ttl <= 0 || ttl > 6*time.Second+100*time.Millisecond {
		t.Errorf("bucket TTL %v (%v), want about 6s", ttl, err)
	}
}

func TestRedisRefillsOverTime(t *testing.T) {
	c := newClient(t)
	l := newTestRedis(t, c, testPrefix(t, c), 20, 2) // a token every 50ms
	for range 2 {
		if d := mustAllow(t, l, "k"); !d.Allowed {
			t.Fatalf("within burst: %+v", d)
		}
	}
	d := mustAllow(t, l, "k")
	if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 50*time.Millisecond {
		t.Fatalf("over burst: %+v, want refused with retry after at most 50ms", d)
	}
	time.Sleep(d.RetryAfter + 10*time.Millisecond)
	if d := mustAllow(t, l, "k"); !d.Allowed {
		t.Fatalf("after one token's refill: %+v, want allowed", d)
	}
	time.Sleep(200 * time.Millisecond) // far more than the burst's worth
	for i := range 2 {
		if d := mustAllow(t, l, "k"); !d.Allowed || d.Remaining != 1-i {
			t.Fatalf("after a full refill, request %d: %+v", i+1, d)
		}
	}
	if d := mustAllow(t, l, "k"); d.Allowed {
		t.Fatalf("refill exceeded the burst: %+v", d)
	}
}

func TestRedisSharedAcrossInstances(t *testing.T) {
	c1, c2 := newClient(t), newClient(t)
	prefix := testPrefix(t, c1)
	// Two instances, each with its own connection; almost no refill.
	a := newTestRedis(t, c1, prefix, 0.001, 10)
	b := newTestRedis(t, c2, prefix, 0.001, 10)
	allowed := 0
	for i := range 30 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if d := mustAllow(t, l, "test:shared"); d.Allowed {
			allowed++
			if d.Remaining != 10-allowed {
				t.Errorf("request %d: remaining %d, want %d", i+1, d.Remaining, 10-allowed)
			}
		}
	}
	if allowed != 10 {
		t.Fatalf("%d requests allowed across two instances, want exactly the burst of 10", allowed)
	}
}

func TestRedisConcurrentNeverExceedsBurst(t *testing.T) {
	clients := []*redis.Client{newClient(t), newClient(t), newClient(t)}
	prefix := testPrefix(t, clients[0])
	const burst = 25
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 40 {
		l := newTestRedis(t, clients[g%len(clients)], prefix, 0.001, burst)
		wg.Go(func() {
			for range 5 {
				d, err := l.Allow(context.Background(), "test:hot")
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					allowed.Add(1)
				} else {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != burst || refused.Load() != 200-burst {
		t.Fatalf("allowed %d, refused %d of 200 concurrent requests; want exactly %d allowed", allowed.Load(), refused.Load(), burst)
	}
}

func TestRedisReloadsFlushedScript(t *testing.T) {
	c := newClient(t)
	l := newTestRedis(t, c, testPrefix(t, c), 1, 3)
	mustAllow(t, l, "k")
	// A restarted or failed-over Redis has no cached script: EVALSHA fails
	// with NOSCRIPT and the limiter must fall back to EVAL.
	if err := c.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, l, "k"); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("after SCRIPT FLUSH: %+v, want allowed with 1 remaining", d)
	}
}

func TestRedisOffNeverCallsRedis(t *testing.T) {
	l := NewRedis(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), 0, 100)
	defer l.Close()
	for range 3 {
		if d := mustAllow(t, l, "k"); !d.Allowed || d.Limit != 0 {
			t.Fatalf("rate 0: %+v, want allowed with limiting off", d)
		}
	}
}

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(level string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), `"level":"`+level+`"`)
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, nil))
}

func TestFallbackUnreachableRedisLimitsInProcess(t *testing.T) {
	logs := &logBuffer{}
	client, err := DialRedis("redis://127.0.0.1:1/0", logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	f := NewFallback(NewRedis(client, 1, 3), logs.logger())
	if err := f.Probe(context.Background()); err == nil {
		t.Fatal("probe of 127.0.0.1:1 succeeded")
	}
	if s := f.Status(); !strings.HasPrefix(s, "degraded: ") {
		t.Fatalf("status %q, want degraded", s)
	}
	start := time.Now()
	for i := range 3 {
		if d := mustAllow(t, f, "test:alice"); !d.Allowed || d.Limit != 3 || d.Remaining != 2-i {
			t.Fatalf("request %d: %+v, want allowed in-process", i+1, d)
		}
	}
	d := mustAllow(t, f, "test:alice")
	if d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("over the burst: %+v, want refused in-process", d)
	}
	if d := mustAllow(t, f, "test:bob"); !d.Allowed {
		t.Fatalf("another caller: %+v", d)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("degraded requests took %v; they should not wait on Redis", el)
	}
	if n := logs.count("WARN"); n != 1 {
		t.Errorf("%d warnings, want exactly one for the transition:\n%s", n, logs.buf.String())
	}
	if s := f.Status(); !strings.HasPrefix(s, "degraded: ") || !strings.Contains(s, "127.0.0.1:1") {
		t.Errorf("status %q, want degraded with the reason", s)
	}
}

// fakeRemote fails while down is set and counts its calls.
type fakeRemote struct {
	down  atomic.Bool
	calls atomic.Int64
}

func (r *fakeRemote) Allow(ctx context.Context, key string) (Decision, error) {
	r.calls.Add(1)
	if r.down.Load() {
		return Decision{}, errors.New("connection refused")
	}
	return Decision{Allowed: true, Limit: 99, Remaining: 98}, nil
}

func (r *fakeRemote) Ping(ctx context.Context) error {
	if r.down.Load() {
		return errors.New("connection refused")
	}
	return nil
}

func TestFallbackRetriesPeriodicallyAndRecovers(t *testing.T) {
	logs := &logBuffer{}
	rem := &fakeRemote{}
	f := newFallback(rem, 1000, 2000, logs.logger())
	now := time.Unix(1_700_000_000, 0)
	f.now = func() time.Time { return now }

	if d := mustAllow(t, f, "k"); d.Limit != 99 || f.Status() != "redis" {
		t.Fatalf("healthy: %+v, status %q; want Redis's answer", d, f.Status())
	}
	rem.down.Store(true)
	for range 50 {
		if d := mustAllow(t, f, "k"); !d.Allowed || d.Limit != 2000 {
			t.Fatalf("degraded: %+v, want the in-process answer", d)
		}
	}
	if got := rem.calls.Load(); got != 2 {
		t.Errorf("Redis called %d times, want 2 (one healthy, one failing; none while degraded)", got)
	}
	if s := f.Status(); s != "degraded: connection refused" {
		t.Errorf("status %q", s)
	}
	now = now.Add(f.RetryInterval) // time to try again: still down
	for range 10 {
		mustAllow(t, f, "k")
	}
	if got := rem.calls.Load(); got != 3 {
		t.Errorf("Redis called %d times after one retry interval, want 3", got)
	}
	rem.down.Store(false)
	now = now.Add(f.RetryInterval / 2)
	if d := mustAllow(t, f, "k"); d.Limit != 2000 {
		t.Errorf("before the retry interval: %+v, want in-process", d)
	}
	now = now.Add(f.RetryInterval / 2)
	if d := mustAllow(t, f, "k"); d.Limit != 99 || f.Status() != "redis" {
		t.Errorf("after recovery: %+v, status %q; want Redis again", d, f.Status())
	}
	if w, i := logs.count("WARN"), logs.count("INFO"); w != 1 || i != 1 {
		t.Errorf("%d warnings and %d infos, want one of each:\n%s", w, i, logs.buf.String())
	}
}

func TestFallbackUsesSharedRedis(t *testing.T) {
	c1, c2 := newClient(t), newClient(t)
	prefix := testPrefix(t, c1)
	logs := &logBuffer{}
	a := NewFallback(newTestRedis(t, c1, prefix, 0.001, 4), logs.logger())
	b := NewFallback(newTestRedis(t, c2, prefix, 0.001, 4), logs.logger())
	if err := a.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for i := range 12 {
		f := a
		if i%2 == 1 {
			f = b
		}
		if mustAllow(t, f, "test:shared").Allowed {
			allowed++
		}
	}
	if allowed != 4 {
		t.Errorf("%d allowed across two instances, want 4", allowed)
	}
	// A client hanging up is not Redis failing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Allow(ctx, "test:other"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*Fallback{a, b} {
		if s := f.Status(); s != "redis" {
			t.Errorf("status %q, want redis", s)
		}
	}
	if n := logs.count("WARN"); n != 0 {
		t.Errorf("%d warnings with Redis up:\n%s", n, logs.buf.String())
	}
}
