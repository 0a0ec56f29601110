package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix prefixes every bucket kept in Redis.
const KeyPrefix = "cardrail:rl:"

// bucketScript takes one token from the bucket KEYS[1], refilling ARGV[1]
// tokens a second up to ARGV[2], and answers {allowed (0 or 1), tokens left
// (a string, for its fraction)}. The bucket is a hash of its tokens and the
// time of its last refill in microseconds of the Redis server's clock, so
// the instances' clocks do not matter; it expires once it would be full
// again, when forgetting it changes nothing.
var bucketScript = redis.NewScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(h[1])
local ts = tonumber(h[2])
if tokens == nil or ts == nil then
  tokens = burst
elseif now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000000)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil((burst - tokens) / rate * 1000) + 1000))
return {allowed, string.format('%.6f', tokens)}
`)

// Redis keeps one token bucket per caller in Redis, shared by every
// instance that uses the same Redis; each request updates its bucket
// atomically in one script run (EVALSHA, falling back to EVAL when the
// server has not cached the script).
type Redis struct {
	client *redis.Client
	rate   float64
	burst  int
	// Prefix is put before every key; KeyPrefix unless changed before use.
	Prefix string
}

// NewRedis returns a limiter refilling perSecond tokens a second into a
// bucket of burst per key, kept in Redis through client; perSecond 0 turns
// limiting off (and Redis is never called).
func NewRedis(client *redis.Client, perSecond float64, burst int) *Redis {
	if burst < 1 {
		burst = 1
	}
	return &Redis{client: client, rate: perSecond, burst: burst, Prefix: KeyPrefix}
}

// Allow implements Limiter. An error means Redis did not answer (or
// answered nonsense); the Decision is then empty.
func (l *Redis) Allow(ctx context.Context, key string) (Decision, error) {
	if l.rate <= 0 {
		return Decision{Allowed: true}, nil
	}
	res, err := bucketScript.Run(ctx, l.client, []string{l.Prefix + key},
		strconv.FormatFloat(l.rate, 'g', -1, 64), l.burst).Slice()
	if err != nil {
		return Decision{}, err
	}
	if len(res) != 2 {
		return Decision{}, fmt.Errorf("rate limit script: unexpected reply %v", res)
	}
	allowed, ok1 := res[0].(int64)
	left, ok2 := res[1].(string)
	if !ok1 || !ok2 {
		return Decision{}, fmt.Errorf("rate limit script: unexpected reply %v", res)
	}
	tokens, err := strconv.ParseFloat(left, 64)
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit script: tokens %q: %w", left, err)
	}
	return l.decide(allowed == 1, tokens), nil
}

// decide builds the Decision from the tokens left after the request.
func (l *Redis) decide(allowed bool, tokens float64) Decision {
	tokens = math.Max(0, math.Min(tokens, float64(l.burst)))
	d := Decision{Allowed: allowed, Limit: l.burst, Remaining: int(tokens), Reset: l.wait(float64(l.burst) - tokens)}
	if !allowed {
		d.RetryAfter = l.wait(1 - tokens)
	}
	return d
}

// wait is how long refilling n tokens takes.
func (l *Redis) wait(n float64) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(n / l.rate * float64(time.Second)))
}

// Ping checks that Redis answers.
func (l *Redis) Ping(ctx context.Context) error {
	return l.client.Ping(ctx).Err()
}

// Close closes the Redis client.
func (l *Redis) Close() error {
	return l.client.Close()
}
