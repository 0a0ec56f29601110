package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cardrail/cardrail"
)

// The outcomes of Issue that are not a card. Callers match them with errors.Is
// and map them to the API's codes: ErrUnsupported to 403 provider_unsupported,
// ErrUnavailable to 503 provider_unavailable, and ErrAllFailed to a card
// recorded as failed with Reason as its status_reason. The first two mean no
// provider was called, so no card exists anywhere; the last means at least one
// was, so the failure belongs on a card.
var (
	ErrUnsupported = errors.New("no provider on the route supports the country and currency")
	ErrUnavailable = errors.New("every provider on the route is disabled or unhealthy")
	ErrAllFailed   = errors.New("all providers failed")
)

// Route is one step of a program's route as configuration gives it. Routes
// are passed in priority order; Enabled is the operator's switch, so a route
// can be turned off without losing its place.
type Route struct {
	Name    string
	Enabled bool
}

// Attempt records one provider call, for logs, metrics and the failed card's
// status reason. Err is nil for the call that issued the card.
type Attempt struct {
	Provider string
	Err      error
	// Duration is wall-clock time measured with the monotonic clock, not
	// RouterConfig.Now, because it feeds latency metrics.
	Duration time.Duration
}

// Result is the outcome of routing: the provider that issued the card, the
// card, and every call made on the way, including failed ones before it.
type Result struct {
	Provider string
	Card     cardrail.IssuedCard
	Attempts []Attempt
}

// RouterConfig tunes the Router. Zero values take the defaults, so a zero
// RouterConfig is a sensible production setting.
type RouterConfig struct {
	// AttemptTimeout bounds each provider call (default 5s); a call that runs
	// longer counts as a failure and the next provider is tried.
	AttemptTimeout time.Duration
	// FailureThreshold is how many consecutive failures make a provider
	// unhealthy (default 3).
	FailureThreshold int
	// Cooldown is how long an unhealthy provider is skipped before a single
	// trial call may test it again (default 30s).
	Cooldown time.Duration
	// Now is the clock behind the cooldown (default time.Now); tests inject
	// one so the circuit breaker can be exercised without sleeping.
	Now func() time.Time
}

// Router issues cards by walking a route: it filters the providers that can
// serve a request, skips disabled and unhealthy ones, and fails over from one
// provider to the next. It keeps a circuit breaker per provider name, so a
// partner that keeps failing stops costing every request a timeout. A Router
// is safe for concurrent use.
type Router struct {
	reg *Registry
	cfg RouterConfig

	mu     sync.Mutex
	health map[string]*breaker
	calls  map[string]map[AttemptOutcome]int64 // by provider, since start
}

// BreakerState is where a provider's circuit breaker stands.
type BreakerState string

// The breaker states.
const (
	// BreakerClosed: the provider is called.
	BreakerClosed BreakerState = "closed"
	// BreakerOpen: the provider failed FailureThreshold times in a row and
	// is skipped until its cooldown ends.
	BreakerOpen BreakerState = "open"
	// BreakerHalfOpen: the cooldown has ended; one trial call, next or in
	// flight, decides whether it closes or opens again.
	BreakerHalfOpen BreakerState = "half_open"
)

// BreakerStates lists every breaker state.
var BreakerStates = []BreakerState{BreakerClosed, BreakerOpen, BreakerHalfOpen}

// AttemptOutcome is how one provider call ended.
type AttemptOutcome string

// The attempt outcomes.
const (
	OutcomeIssued  AttemptOutcome = "issued"
	OutcomeFailed  AttemptOutcome = "failed"
	OutcomeTimeout AttemptOutcome = "timeout"
	// OutcomeCanceled is a call abandoned because the caller gave up; it
	// is not held against the provider.
	OutcomeCanceled AttemptOutcome = "canceled"
)

// AttemptOutcomes lists every attempt outcome.
var AttemptOutcomes = []AttemptOutcome{OutcomeIssued, OutcomeFailed, OutcomeTimeout, OutcomeCanceled}

// ProviderStats is one provider's breaker state and its calls since the
// router started, by outcome (every outcome present, zero or not).
type ProviderStats struct {
	Name     string
	Breaker  BreakerState
	Attempts map[AttemptOutcome]int64
}

// breaker is the health of one provider. It is closed (calls allowed) while
// failures is below the threshold; open (calls skipped) for Cooldown after
// openedAt; then half-open, when exactly one trial call is let through, whose
// success closes the breaker and whose failure opens it again.
type breaker struct {
	failures int
	openedAt time.Time
	trial    bool
}

// NewRouter returns a router over the providers in reg, with cfg's zero fields
// set to their defaults.
func NewRouter(reg *Registry, cfg RouterConfig) *Router {
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 5 * time.Second
	}
	if cfg.FailureThreshold <= 0 {
		cfg.FailureThreshold = 3
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Router{reg: reg, cfg: cfg, health: make(map[string]*breaker), calls: make(map[string]map[AttemptOutcome]int64)}
}

// Issue issues a card through the first provider on routes that can serve req
// and answers in time.
//
// A provider can serve req when it is registered, its Sandbox() matches the
// request's mode (sandbox requests never reach a real partner, and live ones
// never a sandbox), and it supports req's country and currency. If none can,
// Issue fails with ErrUnsupported. Of those, disabled routes and providers
// whose circuit breaker is open are skipped; if that leaves none to call,
// Issue fails with ErrUnavailable. The rest are called in route order, each
// bounded by AttemptTimeout, until one succeeds. Every provider gets the same
// req, and so the same IdempotencyKey, which is what keeps a partner that
// timed out but went on to issue from holding a second card on a retry.
//
// If every call fails, Issue returns the attempts in Result together with an
// error wrapping ErrAllFailed and the last provider's error. If ctx ends,
// Issue stops and returns ctx's error without blaming the provider it was
// calling, because the caller gave up, not the partner.
func (r *Router) Issue(ctx context.Context, routes []Route, req cardrail.IssueRequest) (Result, error) {
	type candidate struct {
		provider cardrail.Provider
		enabled  bool
	}
	var candidates []candidate
	seen := make(map[string]bool, len(routes))
	for _, rt := range routes {
		if seen[rt.Name] {
			continue
		}
		seen[rt.Name] = true
		p, ok := r.reg.Lookup(rt.Name)
		if !ok || p.Sandbox() == req.Livemode || !p.Supports(req.Country, req.Currency) {
			continue
		}
		candidates = append(candidates, candidate{provider: p, enabled: rt.Enabled})
	}
	if len(candidates) == 0 {
		return Result{}, fmt.Errorf("issue card in %s/%s: %w", req.Country, req.Currency, ErrUnsupported)
	}

	var res Result
	var lastErr error
	for _, c := range candidates {
		name := c.provider.Name()
		// Permission is taken one provider at a time, just before the call,
		// so a half-open provider's single trial is not claimed by a request
		// that an earlier provider ends up serving.
		if !c.enabled || !r.allow(name) {
			continue
		}
		start := time.Now()
		card, err := r.call(ctx, c.provider, req)
		res.Attempts = append(res.Attempts, Attempt{Provider: name, Err: err, Duration: time.Since(start)})
		if err == nil {
			r.succeeded(name)
			r.count(name, OutcomeIssued)
			res.Provider = name
			res.Card = card
			return res, nil
		}
		if ctx.Err() != nil {
			r.abandoned(name)
			r.count(name, OutcomeCanceled)
			return res, fmt.Errorf("issue card: %w", context.Cause(ctx))
		}
		r.failed(name)
		if errors.Is(err, cardrail.ErrProviderTimeout) {
			r.count(name, OutcomeTimeout)
		} else {
			r.count(name, OutcomeFailed)
		}
		lastErr = fmt.Errorf("%s: %w", name, err)
	}
	if len(res.Attempts) == 0 {
		return res, fmt.Errorf("issue card: %w", ErrUnavailable)
	}
	return res, fmt.Errorf("%w: %w", ErrAllFailed, lastErr)
}

// call runs one provider call bounded by AttemptTimeout. The call runs in its
// own goroutine so that an adapter that ignores its context still cannot hold
// the request past the timeout; its late answer is dropped, and the
// idempotency key makes that safe. A panicking adapter counts as a failed
// attempt rather than taking the process down.
func (r *Router) call(ctx context.Context, p cardrail.Provider, req cardrail.IssueRequest) (cardrail.IssuedCard, error) {
	actx, cancel := context.WithTimeout(ctx, r.cfg.AttemptTimeout)
	defer cancel()

	type answer struct {
		card cardrail.IssuedCard
		err  error
	}
	answers := make(chan answer, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				answers <- answer{err: fmt.Errorf("provider panicked: %v", v)}
			}
		}()
		card, err := p.Issue(actx, req)
		answers <- answer{card: card, err: err}
	}()

	var a answer
	select {
	case a = <-answers:
	case <-actx.Done():
		// An answer that raced the deadline still counts: dropping a card
		// the partner did issue would only force a retry.
		select {
		case a = <-answers:
		default:
			a.err = actx.Err()
		}
	}
	if a.err != nil && errors.Is(actx.Err(), context.DeadlineExceeded) && !errors.Is(a.err, cardrail.ErrProviderTimeout) {
		a.err = fmt.Errorf("%w: %w", cardrail.ErrProviderTimeout, a.err)
	}
	return a.card, a.err
}

// Healthy reports whether the router would call the named provider now: its
// breaker is closed, or its cooldown has passed and no trial call is already
// in flight. Providers never called are healthy.
func (r *Router) Healthy(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.health[name]
	if !ok || b.failures < r.cfg.FailureThreshold {
		return true
	}
	return !b.trial && r.cfg.Now().Sub(b.openedAt) >= r.cfg.Cooldown
}

// Stats reports every registered provider's breaker state and calls, sorted
// by name. A provider no longer registered keeps its line, so that its
// counts never go backwards.
func (r *Router) Stats() []ProviderStats {
	names := r.reg.Names()
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range r.calls {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := make([]ProviderStats, 0, len(names))
	for _, name := range names {
		st := ProviderStats{Name: name, Breaker: r.state(name), Attempts: make(map[AttemptOutcome]int64, len(AttemptOutcomes))}
		for _, o := range AttemptOutcomes {
			st.Attempts[o] = r.calls[name][o]
		}
		out = append(out, st)
	}
	return out
}

// state is name's breaker state; r.mu is held.
func (r *Router) state(name string) BreakerState {
	b, ok := r.health[name]
	switch {
	case !ok || b.failures < r.cfg.FailureThreshold:
		return BreakerClosed
	case !b.trial && r.cfg.Now().Sub(b.openedAt) < r.cfg.Cooldown:
		return BreakerOpen
	default:
		return BreakerHalfOpen
	}
}

// count adds one call of name's that ended in o.
func (r *Router) count(name string, o AttemptOutcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.calls[name]
	if !ok {
		c = make(map[AttemptOutcome]int64, len(AttemptOutcomes))
		r.calls[name] = c
	}
	c[o]++
}

// allow reports whether name may be called now, claiming the half-open trial
// when the cooldown has passed.
func (r *Router) allow(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.health[name]
	if !ok || b.failures < r.cfg.FailureThreshold {
		return true
	}
	if b.trial || r.cfg.Now().Sub(b.openedAt) < r.cfg.Cooldown {
		return false
	}
	b.trial = true
	return true
}

// succeeded closes name's breaker.
func (r *Router) succeeded(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.health, name)
}

// failed counts a failure against name, opening its breaker when the
// threshold is reached or a half-open trial fails. Failures of calls still in
// flight when the breaker opened restart the cooldown, since they are fresh
// evidence the partner is down.
func (r *Router) failed(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.health[name]
	if !ok {
		b = &breaker{}
		r.health[name] = b
	}
	b.failures++
	b.trial = false
	if b.failures >= r.cfg.FailureThreshold {
		b.openedAt = r.cfg.Now()
	}
}

// abandoned releases a trial claimed for a call the caller gave up on, without
// counting it either way.
func (r *Router) abandoned(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.health[name]; ok {
		b.trial = false
	}
}

// Reason summarises failed attempts as a short status reason for a failed
// card, such as "all providers failed: sandbox_alpha: failed; sandbox_beta:
// timed out". It never includes an adapter's raw error text, which may carry a
// partner's response and with it card data; only the caller-safe message of a
// *cardrail.Error is passed through. It returns "" when no attempt failed.
func Reason(attempts []Attempt) string {
	var parts []string
	for _, a := range attempts {
		if a.Err == nil {
			continue
		}
		parts = append(parts, a.Provider+": "+describe(a.Err))
	}
	if len(parts) == 0 {
		return ""
	}
	return "all providers failed: " + strings.Join(parts, "; ")
}

// describe names the kind of a provider failure in words fit for a card's
// status reason.
func describe(err error) string {
	var e *cardrail.Error
	switch {
	case errors.Is(err, cardrail.ErrProviderTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &e) && e.Message != "":
		return e.Message
	default:
		return "failed"
	}
}
