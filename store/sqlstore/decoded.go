package sqlstore

import (
	"encoding/json"
	"slices"
	"sync"

	"github.com/cardrail/cardrail"
)

// decodedCache remembers what a JSON column's text decoded to. The
// authorization engine reads every card's spending controls and its
// program's limits in each batch, and in practice a few texts repeat
// across all cards; decoding them with reflection was a fifth of the
// engine's own CPU inside the batch transaction. The text is the key, so
// a changed column is a new key and can never be answered from a stale
// entry.
type decodedCache[T any] struct {
	mu sync.RWMutex
	m  map[string]T
}

// maxDecoded bounds each cache; past it, texts are decoded every time.
const maxDecoded = 4096

func (c *decodedCache[T]) decode(text string) (T, error) {
	c.mu.RLock()
	v, ok := c.m[text]
	c.mu.RUnlock()
	if ok {
		return v, nil
	}
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]T)
	}
	if len(c.m) < maxDecoded {
		c.m[text] = v
	}
	c.mu.Unlock()
	return v, nil
}

var (
	decodedControls decodedCache[cardrail.SpendingControls]
	decodedLimits   decodedCache[cardrail.Limits]
)

// spendingControls decodes a card's controls. The result is the caller's
// own: its lists and amounts are copies, never shared with the cache.
func spendingControls(text string) (cardrail.SpendingControls, error) {
	c, err := decodedControls.decode(text)
	if err != nil {
		return c, err
	}
	own := func(p *int64) *int64 {
		if p == nil {
			return nil
		}
		v := *p
		return &v
	}
	c.PerAuthorization, c.Daily, c.Monthly = own(c.PerAuthorization), own(c.Daily), own(c.Monthly)
	c.AllowedMCCs, c.BlockedMCCs = slices.Clone(c.AllowedMCCs), slices.Clone(c.BlockedMCCs)
	c.AllowedCountries, c.BlockedCountries = slices.Clone(c.AllowedCountries), slices.Clone(c.BlockedCountries)
	return c, nil
}
