package auth

import (
	"slices"
	"sync"
	"time"

	"github.com/cardrail/cardrail"
)

// verifiedTTL bounds how long a verified token is taken on trust without
// checking its signature again. It is also how long a key removed from a
// JWKS document keeps verifying tokens it already verified, so it is short.
const verifiedTTL = 30 * time.Second

// verifiedMax bounds the cache. When full it starts over: only tokens that
// verified are ever stored, so filling it takes that many valid tokens.
const verifiedMax = 16384

// verifiedCache remembers the callers of recently verified tokens. An
// entry never outlives the token's own expiry (plus leeway), so the cache
// never accepts a token that verification would refuse on time grounds.
type verifiedCache struct {
	mu      sync.RWMutex
	entries map[string]verifiedEntry
}

type verifiedEntry struct {
	caller cardrail.Caller
	until  time.Time
}

func newVerifiedCache() *verifiedCache {
	return &verifiedCache{entries: make(map[string]verifiedEntry)}
}

// get returns the caller of token if it verified less than verifiedTTL ago
// and has not expired since. The roles are copied, so callers may not alter
// what later requests see.
func (c *verifiedCache) get(token string, now time.Time) (cardrail.Caller, bool) {
	c.mu.RLock()
	e, ok := c.entries[token]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return cardrail.Caller{}, false
	}
	e.caller.Roles = slices.Clone(e.caller.Roles)
	return e.caller, true
}

// put remembers a verified token until the earlier of its expiry and
// verifiedTTL from now.
func (c *verifiedCache) put(token string, caller cardrail.Caller, expires, now time.Time) {
	until := now.Add(verifiedTTL)
	if expires.Before(until) {
		until = expires
	}
	if !now.Before(until) {
		return
	}
	caller.Roles = slices.Clone(caller.Roles)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= verifiedMax {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= verifiedMax {
			clear(c.entries)
		}
	}
	c.entries[token] = verifiedEntry{caller: caller, until: until}
}
