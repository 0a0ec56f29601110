package api_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cardrail/cardrail/api"
	"github.com/cardrail/cardrail/config"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
)

// testRedisURL is the Redis the shared-limit tests use.
func testRedisURL() string {
	if u := os.Getenv("CARDRAIL_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// needRedis skips the test when Redis does not answer, unless
// CARDRAIL_TEST_REQUIRE_REDIS=1, which fails it.
func needRedis(t *testing.T) {
	t.Helper()
	opt, err := redis.ParseURL(testRedisURL())
	if err != nil {
		t.Fatalf("CARDRAIL_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if os.Getenv("CARDRAIL_TEST_REQUIRE_REDIS") == "1" {
			t.Fatalf("Redis at %s is required (CARDRAIL_TEST_REQUIRE_REDIS=1) but unreachable: %v", opt.Addr, err)
		}
		t.Skipf("skipping: Redis does not answer at %s (%v); set CARDRAIL_TEST_REDIS_URL", opt.Addr, err)
	}
}

// uniqueSub is a caller subject no other run shares, since buckets in
// Redis outlive the test.
func uniqueSub(name string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return name + "-" + hex.EncodeToString(b)
}

func withRateLimit(perSecond float64, redisURL string) func(*config.Config) {
	return func(c *config.Config) {
		c.RateLimit = perSecond
		c.RedisURL = redisURL
		c.SandboxJWTSecret = "rate-limit-test-secret-shared-by-both-instances"
	}
}

func headerInt(t *testing.T, r *apptest.Response, name string) int {
	t.Helper()
	n, err := strconv.Atoi(r.Header.Get(name))
	if err != nil {
		t.Fatalf("%s: %q is not a number", name, r.Header.Get(name))
	}
	return n
}

// checkRateLimited checks a 429 problem.
func checkRateLimited(t *testing.T, r *apptest.Response) {
	t.Helper()
	if r.Status != http.StatusTooManyRequests || r.Code() != "rate_limited" {
		t.Fatalf("status %d code %q, want 429 rate_limited: %s", r.Status, r.Code(), r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	if ra := headerInt(t, r, "Retry-After"); ra < 1 || ra > 2 {
		t.Errorf("Retry-After %d, want 1 or 2 seconds", ra)
	}
	if rem := headerInt(t, r, "RateLimit-Remaining"); rem != 0 {
		t.Errorf("RateLimit-Remaining %d on a 429, want 0", rem)
	}
}

func readyz(t *testing.T, env *apptest.Env) map[string]any {
	t.Helper()
	r := env.WithToken("").Do("GET", "//readyz/", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("/readyz: %d %s, want 200", r.Status, r.Body)
	}
	return r.JSON()
}

func TestRateLimitSharedAcrossInstancesThroughRedis(t *testing.T) {
	needRedis(t)
	// Two instances on one PostgreSQL and one Redis, as they would be
	// deployed: 5/s, burst 10.
	url := testdb.URL(t, "postgres")
	a := apptest.New(t, url, withRateLimit(5, testRedisURL()))
	b := apptest.New(t, url, withRateLimit(5, testRedisURL()))
	for _, env := range []*apptest.Env{a, b} {
		if got := readyz(t, env)["rate_limit"]; got != "redis" {
			t.Fatalf("/readyz rate_limit %v, want redis", got)
		}
	}
	tok := a.Token(uniqueSub("alice"), "US") // both instances share the secret
	clients := []*apptest.Client{a.WithToken(tok), b.WithToken(tok)}

	start := time.Now()
	for i := range 10 {
		r := clients[i%2].Do("GET", "/programs/", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("request %d (instance %d): %d %s, want 200", i+1, i%2+1, r.Status, r.Body)
		}
		if lim := headerInt(t, r, "RateLimit-Limit"); lim != 10 {
			t.Errorf("request %d: RateLimit-Limit %d, want 10", i+1, lim)
		}
		if rem := headerInt(t, r, "RateLimit-Remaining"); rem != 9-i {
			t.Errorf("request %d: RateLimit-Remaining %d, want %d", i+1, rem, 9-i)
		}
		if reset := headerInt(t, r, "RateLimit-Reset"); reset < 1 || reset > 2 {
			t.Errorf("request %d: RateLimit-Reset %d, want 1 or 2", i+1, reset)
		}
	}
	if el := time.Since(start); el > 190*time.Millisecond {
		t.Logf("10 requests took %v; refill may have added a token", el)
	}
	// The eleventh, on either instance, is over the shared limit.
	for i := range 2 {
		checkRateLimited(t, clients[i].Do("GET", "/programs/", nil))
	}
	// Another caller has its own bucket, on both instances.
	other := a.Token(uniqueSub("bob"), "US")
	for i, env := range []*apptest.Env{a, b} {
		r := env.WithToken(other).Must(http.StatusOK, "GET", "/programs/", nil)
		if rem := headerInt(t, r, "RateLimit-Remaining"); rem != 9-i {
			t.Errorf("other caller on instance %d: RateLimit-Remaining %d, want %d", i+1, rem, 9-i)
		}
	}
	// Once a token has refilled (one every 200ms), the caller is served again.
	time.Sleep(250 * time.Millisecond)
	clients[1].Must(http.StatusOK, "GET", "/programs/", nil)
	for _, env := range []*apptest.Env{a, b} {
		if strings.Contains(env.Logs.String(), "Redis unavailable") {
			t.Errorf("an instance fell back to in-process limits with Redis up:\n%s", env.Logs.String())
		}
	}
}

// The reveal limit guards card numbers: with Redis configured, a caller
// has one budget across instances, even with the general limit off.
func TestRevealLimitSharedAcrossInstancesThroughRedis(t *testing.T) {
	needRedis(t)
	url := testdb.URL(t, "postgres")
	a := apptest.New(t, url, withRateLimit(0, testRedisURL()))
	b := apptest.New(t, url, withRateLimit(0, testRedisURL()))
	tok := a.Token(uniqueSub("erin"), "US")
	clients := []*apptest.Client{a.WithToken(tok), b.WithToken(tok)}
	card := clients[0].NewCard("usd_visa_virtual")
	for i := range api.DefaultRevealLimit {
		r := clients[i%2].Do("GET", "/managed-cards/"+card+"/details/", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("reveal %d (instance %d): %d %s, want 200", i+1, i%2+1, r.Status, r.Body)
		}
		if rem := headerInt(t, r, "RateLimit-Remaining"); rem != api.DefaultRevealLimit-1-i {
			t.Errorf("reveal %d: RateLimit-Remaining %d, want %d", i+1, rem, api.DefaultRevealLimit-1-i)
		}
	}
	for i := range 2 {
		// One reveal comes back every 12 s.
		r := clients[i].Do("GET", "/managed-cards/"+card+"/details/", nil)
		if r.Status != http.StatusTooManyRequests || r.Code() != "rate_limited" || headerInt(t, r, "Retry-After") > 12 {
			t.Fatalf("reveal %d (instance %d): %d %s (Retry-After %s), want 429 within 12 s",
				api.DefaultRevealLimit+1+i, i+1, r.Status, r.Body, r.Header.Get("Retry-After"))
		}
	}
	// The general limit is off, and the reveal bucket is not the general one.
	clients[1].Must(http.StatusOK, "GET", "/managed-cards/"+card+"/", nil)
}

func TestRateLimitRedisUnreachableFallsBackInProcess(t *testing.T) {
	env := apptest.New(t, testdb.URL(t, "sqlite"), withRateLimit(1, "redis://127.0.0.1:1/0"))
	alice := env.Client("alice", "US")
	start := time.Now()
	for i := range 2 {
		r := alice.Must(http.StatusOK, "GET", "/programs/", nil)
		if lim, rem := headerInt(t, r, "RateLimit-Limit"), headerInt(t, r, "RateLimit-Remaining"); lim != 2 || rem != 1-i {
			t.Errorf("request %d: limit %d remaining %d, want 2 and %d", i+1, lim, rem, 1-i)
		}
	}
	checkRateLimited(t, alice.Do("GET", "/programs/", nil))
	env.Client("bob", "US").Must(http.StatusOK, "GET", "/programs/", nil)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("degraded requests took %v", el)
	}
	ready := readyz(t, env)
	if s, _ := ready["rate_limit"].(string); !strings.HasPrefix(s, "degraded: ") {
		t.Errorf("/readyz rate_limit %q, want degraded: …", s)
	}
	if ready["status"] != "ready" || ready["database"] != "ok" {
		t.Errorf("/readyz %v, want ready: Redis down only degrades rate limits", ready)
	}
	if n := strings.Count(env.Logs.String(), "Redis unavailable"); n != 1 {
		t.Errorf("%d warnings about Redis, want exactly one:\n%s", n, env.Logs.String())
	}
}

func TestRateLimitInProcess(t *testing.T) {
	t.Run("limited", func(t *testing.T) {
		env := apptest.New(t, testdb.URL(t, "sqlite"), withRateLimit(1, ""))
		alice := env.Client("alice", "US")
		for i := range 2 {
			r := alice.Must(http.StatusOK, "GET", "/programs/", nil)
			if lim, rem := headerInt(t, r, "RateLimit-Limit"), headerInt(t, r, "RateLimit-Remaining"); lim != 2 || rem != 1-i {
				t.Errorf("request %d: limit %d remaining %d, want 2 and %d", i+1, lim, rem, 1-i)
			}
		}
		checkRateLimited(t, alice.Do("GET", "/programs/", nil))
		// Another subject is another caller.
		env.Client("bob", "US").Must(http.StatusOK, "GET", "/programs/", nil)
		// Requests the operator gate refuses draw on the caller's bucket
		// too, so the ops API cannot be probed without limit.
		carol := env.Client("carol", "US")
		for i := range 2 {
			r := carol.Must(http.StatusForbidden, "GET", "/ops/audit-log/", nil)
			if rem := headerInt(t, r, "RateLimit-Remaining"); rem != 1-i {
				t.Errorf("refused ops request %d: remaining %d, want %d", i+1, rem, 1-i)
			}
		}
		checkRateLimited(t, carol.Do("GET", "/ops/audit-log/", nil))
		if _, ok := readyz(t, env)["rate_limit"]; ok {
			t.Error("/readyz reports rate_limit without Redis configured")
		}
	})
	t.Run("off", func(t *testing.T) {
		// 0 turns limiting off, Redis configured or not: no headers and no
		// 429. The reveal's own limit still lives in the configured Redis,
		// so /readyz reports that Redis, here unreachable, and the start
		// logs it once; the requests themselves never try it.
		env := apptest.New(t, testdb.URL(t, "sqlite"), withRateLimit(0, "redis://127.0.0.1:1/0"))
		startLogs := strings.Count(env.Logs.String(), "Redis")
		alice := env.Client("alice", "US")
		for i := range 30 {
			r := alice.Must(http.StatusOK, "GET", "/programs/", nil)
			for _, h := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"} {
				if v := r.Header.Get(h); v != "" {
					t.Fatalf("request %d: %s: %q with limiting off", i+1, h, v)
				}
			}
		}
		if n := strings.Count(env.Logs.String(), "Redis"); startLogs != 1 || n != 1 {
			t.Errorf("Redis named %d times at start and %d in all, want once for the unreachable Redis:\n%s", startLogs, n, env.Logs.String())
		}
		if s, _ := readyz(t, env)["rate_limit"].(string); !strings.HasPrefix(s, "degraded: ") {
			t.Errorf("/readyz rate_limit %q, want the reveal limit's Redis reported degraded", s)
		}
	})
}
