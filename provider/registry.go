// Package provider picks the issuing partner that issues a card.
//
// Adapters for each partner (provider/sandbox, and one package per real
// partner) implement cardrail.Provider and are registered by name in a
// Registry. A program's route names providers in priority order; the Router
// walks that route, skipping partners that cannot serve the request, are
// switched off by an operator, or have been failing, and fails over to the
// next partner when one errors or times out. Nothing here knows which partner
// it talks to.
package provider

import (
	"slices"
	"sync"

	"github.com/cardrail/cardrail"
)

// Registry maps provider names to adapters. It is safe for concurrent use, so
// an adapter can be swapped while requests are being routed.
type Registry struct {
	mu        sync.RWMutex
	providers map[string]cardrail.Provider
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{providers: make(map[string]cardrail.Provider)}
}

// Register adds p under p.Name(), replacing any provider already registered
// under that name, so that wiring can reconfigure an adapter without a
// separate removal step.
func (r *Registry) Register(p cardrail.Provider) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.providers[p.Name()] = p
}

// Lookup returns the provider registered under name.
func (r *Registry) Lookup(name string) (cardrail.Provider, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.providers[name]
	return p, ok
}

// Names returns the registered provider names in sorted order, so listings
// (the ops API, logs) are stable.
func (r *Registry) Names() []string {
	r.mu.RLock()
	names := make([]string, 0, len(r.providers))
	for name := range r.providers {
		names = append(names, name)
	}
	r.mu.RUnlock()
	slices.Sort(names)
	return names
}
