package provider_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/provider"
	"github.com/cardrail/cardrail/provider/sandbox"
)

// livePartner stands in for a production partner, which the sandbox adapter
// cannot be. It records every request it receives.
type livePartner struct {
	name  string
	fail  error
	block chan struct{} // when set, Issue ignores ctx and waits for it to close

	mu   sync.Mutex
	reqs []cardrail.IssueRequest
}

func (p *livePartner) Name() string                    { return p.name }
func (p *livePartner) Sandbox() bool                   { return false }
func (p *livePartner) Supports(country, _ string) bool { return country != "ZZ" }
func (p *livePartner) Issue(_ context.Context, req cardrail.IssueRequest) (cardrail.IssuedCard, error) {
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.mu.Unlock()
	if p.block != nil {
		<-p.block
	}
	if p.fail != nil {
		return cardrail.IssuedCard{}, p.fail
	}
	return cardrail.IssuedCard{ProviderCardID: p.name + "_1", PAN: "5555555555554444", ExpMonth: 1, ExpYear: 2030}, nil
}

func (p *livePartner) requests() []cardrail.IssueRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reqs)
}

func newSandbox(name string, countries ...string) *sandbox.Adapter {
	return sandbox.New(sandbox.Config{Name: name, Countries: countries, Secret: []byte("secret-" + name)})
}

func sandboxRequest(key string) cardrail.IssueRequest {
	return cardrail.IssueRequest{
		IdempotencyKey: key,
		CardReference:  "card_" + key,
		Program:        "visa_usd_virtual",
		Brand:          "visa",
		Type:           "virtual",
		Currency:       "USD",
		Country:        "US",
	}
}

func enabled(names ...string) []provider.Route {
	routes := make([]provider.Route, len(names))
	for i, n := range names {
		routes[i] = provider.Route{Name: n, Enabled: true}
	}
	return routes
}

// clock is an injectable RouterConfig.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestRegistry(t *testing.T) {
	reg := provider.NewRegistry()
	alpha, beta := newSandbox("sandbox_alpha"), newSandbox("sandbox_beta")
	reg.Register(beta)
	reg.Register(alpha)

	t.Run("looks providers up by name", func(t *testing.T) {
		got, ok := reg.Lookup("sandbox_alpha")
		if !ok || got != alpha {
			t.Errorf("Lookup(sandbox_alpha) = %v, %v", got, ok)
		}
		if _, ok := reg.Lookup("missing"); ok {
			t.Error("Lookup(missing) found a provider")
		}
	})

	t.Run("lists names sorted", func(t *testing.T) {
		if got, want := reg.Names(), []string{"sandbox_alpha", "sandbox_beta"}; !slices.Equal(got, want) {
			t.Errorf("Names = %v, want %v", got, want)
		}
	})

	t.Run("replaces a provider registered under the same name", func(t *testing.T) {
		replacement := newSandbox("sandbox_alpha")
		reg.Register(replacement)
		if got, _ := reg.Lookup("sandbox_alpha"); got != replacement {
			t.Error("Register did not replace the provider")
		}
		if n := len(reg.Names()); n != 2 {
			t.Errorf("len(Names) = %d after replacement, want 2", n)
		}
	})

	t.Run("is safe for concurrent use", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				reg.Register(newSandbox(fmt.Sprintf("sandbox_%d", i)))
				reg.Lookup("sandbox_beta")
				reg.Names()
			})
		}
		wg.Wait()
		if n := len(reg.Names()); n != 10 {
			t.Errorf("len(Names) = %d, want 10", n)
		}
	})
}

func TestRouterIssue(t *testing.T) {
	ctx := context.Background()

	t.Run("issues through the first provider", func(t *testing.T) {
		reg := provider.NewRegistry()
		alpha, beta := newSandbox("sandbox_alpha"), newSandbox("sandbox_beta")
		reg.Register(alpha)
		reg.Register(beta)
		res, err := provider.NewRouter(reg, provider.RouterConfig{}).Issue(ctx, enabled("sandbox_alpha", "sandbox_beta"), sandboxRequest("k1"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Provider != "sandbox_alpha" || res.Card.PAN == "" {
			t.Errorf("Result = %+v, want a card from sandbox_alpha", res)
		}
		if alpha.Calls() != 1 || beta.Calls() != 0 {
			t.Errorf("Calls = %d, %d; want 1, 0", alpha.Calls(), beta.Calls())
		}
		if len(res.Attempts) != 1 || res.Attempts[0].Err != nil {
			t.Errorf("Attempts = %+v, want one successful attempt", res.Attempts)
		}
	})

	t.Run("fails over from an erroring provider to the next", func(t *testing.T) {
		reg := provider.NewRegistry()
		alpha, beta := newSandbox("sandbox_alpha"), newSandbox("sandbox_beta")
		alpha.SetFailure(sandbox.FailError, 0)
		reg.Register(alpha)
		reg.Register(beta)
		res, err := provider.NewRouter(reg, provider.RouterConfig{}).Issue(ctx, enabled("sandbox_alpha", "sandbox_beta"), sandboxRequest("k2"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Provider != "sandbox_beta" {
			t.Errorf("Provider = %q, want sandbox_beta", res.Provider)
		}
		if alpha.Calls() != 1 || beta.Calls() != 1 {
			t.Errorf("Calls = %d, %d; want 1, 1", alpha.Calls(), beta.Calls())
		}
		if len(res.Attempts) != 2 || !errors.Is(res.Attempts[0].Err, sandbox.ErrSimulated) || res.Attempts[1].Err != nil {
			t.Errorf("Attempts = %+v, want alpha's failure then beta's success", res.Attempts)
		}
	})

	t.Run("fails over from a provider that times out", func(t *testing.T) {
		reg := provider.NewRegistry()
		alpha, beta := newSandbox("sandbox_alpha"), newSandbox("sandbox_beta")
		alpha.SetFailure(sandbox.FailTimeout, 0)
		reg.Register(alpha)
		reg.Register(beta)
		router := provider.NewRouter(reg, provider.RouterConfig{AttemptTimeout: 50 * time.Millisecond})
		req := sandboxRequest("k3")
		res, err := router.Issue(ctx, enabled("sandbox_alpha", "sandbox_beta"), req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Provider != "sandbox_beta" || beta.Calls() != 1 {
			t.Errorf("Provider = %q, beta calls %d; want sandbox_beta, 1", res.Provider, beta.Calls())
		}
		if !errors.Is(res.Attempts[0].Err, cardrail.ErrProviderTimeout) {
			t.Errorf("first attempt error = %v, want ErrProviderTimeout", res.Attempts[0].Err)
		}
		// The timed-out partner did issue; asking it again with the same key
		// must give that card, not a second one.
		alpha.SetFailure(sandbox.FailNone, 0)
		first, err := alpha.Issue(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := alpha.Issue(ctx, req)
		if first != again {
			t.Error("the timed-out partner issued a second card for the same key")
		}
	})

	t.Run("abandons a provider that ignores its deadline", func(t *testing.T) {
		reg := provider.NewRegistry()
		stuck := &livePartner{name: "stuck", block: make(chan struct{})}
		t.Cleanup(func() { close(stuck.block) })
		backup := &livePartner{name: "backup"}
		reg.Register(stuck)
		reg.Register(backup)
		req := sandboxRequest("k4")
		req.Livemode = true
		res, err := provider.NewRouter(reg, provider.RouterConfig{AttemptTimeout: 50 * time.Millisecond}).Issue(ctx, enabled("stuck", "backup"), req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Provider != "backup" || !errors.Is(res.Attempts[0].Err, cardrail.ErrProviderTimeout) {
			t.Errorf("Result = %+v, want backup after stuck timed out", res)
		}
	})

	t.Run("sends every provider the same request and idempotency key", func(t *testing.T) {
		reg := provider.NewRegistry()
		first := &livePartner{name: "first", fail: errors.New("declined")}
		second := &livePartner{name: "second"}
		reg.Register(first)
		reg.Register(second)
		req := sandboxRequest("k5")
		req.Livemode = true
		if _, err := provider.NewRouter(reg, provider.RouterConfig{}).Issue(ctx, enabled("first", "second"), req); err != nil {
			t.Fatal(err)
		}
		for _, p := range []*livePartner{first, second} {
			if got := p.requests(); len(got) != 1 || got[0] != req {
				t.Errorf("%s received %+v, want exactly %+v", p.name, got, req)
			}
		}
	})

	t.Run("skips disabled providers", func(t *testing.T) {
		reg := provider.NewRegistry()
		alpha, beta := newSandbox("sandbox_alpha"), newSandbox("sandbox_beta")
		reg.Register(alpha)
		reg.Register(beta)
		routes := []provider.Route{{Name: "sandbox_alpha", Enabled: false}, {Name: "sandbox_beta", Enabled: true}}
		res, err := provider.NewRouter(reg, provider.RouterConfig{}).Issue(ctx, routes, sandboxRequest("k6"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Provider != "sandbox_beta" || alpha.Calls() != 0 {
			t.Errorf("Provider = %q, alpha calls %d; want sandbox_beta, 0", res.Provider, alpha.Calls())
		}
	})

	t.Run("skips providers that do not support the country", func(t *testing.T) {
		reg := provider.NewRegistry()
		nigeria, anywhere := newSandbox("sandbox_ng", "NG"), newSandbox("sandbox_any")
		reg.Register(nigeria)
		reg.Register(anywhere)
		res, err := provider.NewRouter(reg, provider.RouterConfig{}).Issue(ctx, enabled("sandbox_ng", "sandbox_any"), sandboxRequest("k7"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Provider != "sandbox_any" || nigeria.Calls() != 0 {
			t.Errorf("Provider = %q, sandbox_ng calls %d; want sandbox_any, 0", res.Provider, nigeria.Calls())
		}
	})

	t.Run("calls a provider listed twice only once", func(t *testing.T) {
		reg := provider.NewRegistry()
		alpha := newSandbox("sandbox_alpha")
		alpha.SetFailure(sandbox.FailError, 0)
		reg.Register(alpha)
		res, err := provider.NewRouter(reg, provider.RouterConfig{}).Issue(ctx, enabled("sandbox_alpha", "sandbox_alpha"), sandboxRequest("k8"))
		if !errors.Is(err, provider.ErrAllFailed) {
			t.Fatalf("error = %v, want ErrAllFailed", err)
		}
		if alpha.Calls() != 1 || len(res.Attempts) != 1 {
			t.Errorf("Calls = %d, attempts %d; want 1, 1", alpha.Calls(), len(res.Attempts))
		}
	})
}

func TestRouterRefusals(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		routes    []provider.Route
		country   string
		livemode  bool
		wantErr   error
		wantCalls bool
	}{
		{"refuses an unsupported country as unsupported", enabled("sandbox_ng"), "US", false, provider.ErrUnsupported, false},
		{"refuses a route of unregistered providers as unsupported", enabled("nobody"), "US", false, provider.ErrUnsupported, false},
		{"refuses an empty route as unsupported", nil, "US", false, provider.ErrUnsupported, false},
		{"refuses a live request on a sandbox route as unsupported", enabled("sandbox_ng", "sandbox_any"), "NG", true, provider.ErrUnsupported, false},
		{"refuses a sandbox request on a live route as unsupported", enabled("live"), "US", false, provider.ErrUnsupported, false},
		{"prefers unsupported to unavailable when nothing supports the request", []provider.Route{{Name: "sandbox_ng"}}, "US", false, provider.ErrUnsupported, false},
		{"refuses an all-disabled route as unavailable", []provider.Route{{Name: "sandbox_ng"}, {Name: "sandbox_any"}}, "NG", false, provider.ErrUnavailable, false},
		{"refuses when every supporting provider is disabled", []provider.Route{{Name: "sandbox_ng", Enabled: true}, {Name: "sandbox_any"}}, "US", false, provider.ErrUnavailable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := provider.NewRegistry()
			ng, anywhere := newSandbox("sandbox_ng", "NG"), newSandbox("sandbox_any")
			live := &livePartner{name: "live"}
			reg.Register(ng)
			reg.Register(anywhere)
			reg.Register(live)
			req := sandboxRequest("refusal")
			req.Country = tc.country
			req.Livemode = tc.livemode
			res, err := provider.NewRouter(reg, provider.RouterConfig{}).Issue(ctx, tc.routes, req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if calls := ng.Calls() + anywhere.Calls() + len(live.requests()); calls != 0 || len(res.Attempts) != 0 {
				t.Errorf("%d provider calls and %d attempts; want none", calls, len(res.Attempts))
			}
		})
	}
}

func TestRouterModes(t *testing.T) {
	reg := provider.NewRegistry()
	sbx := newSandbox("sandbox_any")
	live := &livePartner{name: "live"}
	reg.Register(sbx)
	reg.Register(live)
	router := provider.NewRouter(reg, provider.RouterConfig{})
	routes := enabled("live", "sandbox_any")

	for _, tc := range []struct {
		name     string
		livemode bool
		want     string
	}{
		{"routes sandbox requests to sandbox providers only", false, "sandbox_any"},
		{"routes live requests to live providers only", true, "live"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := sandboxRequest("mode-" + tc.want)
			req.Livemode = tc.livemode
			res, err := router.Issue(context.Background(), routes, req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Provider != tc.want || len(res.Attempts) != 1 {
				t.Errorf("Provider = %q after %d attempts, want %q after 1", res.Provider, len(res.Attempts), tc.want)
			}
		})
	}
}

func TestRouterAllFail(t *testing.T) {
	reg := provider.NewRegistry()
	alpha, beta := newSandbox("sandbox_alpha"), newSandbox("sandbox_beta")
	alpha.SetFailure(sandbox.FailError, 0)
	beta.SetFailure(sandbox.FailTimeout, 0)
	reg.Register(alpha)
	reg.Register(beta)
	router := provider.NewRouter(reg, provider.RouterConfig{AttemptTimeout: 50 * time.Millisecond})

	res, err := router.Issue(context.Background(), enabled("sandbox_alpha", "sandbox_beta"), sandboxRequest("doomed"))
	t.Run("reports all failed wrapping the last error", func(t *testing.T) {
		if !errors.Is(err, provider.ErrAllFailed) {
			t.Fatalf("error = %v, want ErrAllFailed", err)
		}
		if !errors.Is(err, cardrail.ErrProviderTimeout) {
			t.Errorf("error = %v, want it to wrap beta's timeout", err)
		}
	})
	t.Run("records every attempt", func(t *testing.T) {
		if res.Provider != "" || res.Card.PAN != "" {
			t.Errorf("Result carries a card: %+v", res)
		}
		if len(res.Attempts) != 2 || res.Attempts[0].Provider != "sandbox_alpha" || res.Attempts[1].Provider != "sandbox_beta" {
			t.Fatalf("Attempts = %+v, want alpha then beta", res.Attempts)
		}
	})
	t.Run("explains the failure in the status reason", func(t *testing.T) {
		want := "all providers failed: sandbox_alpha: failed; sandbox_beta: timed out"
		if got := provider.Reason(res.Attempts); got != want {
			t.Errorf("Reason = %q, want %q", got, want)
		}
	})
}

func TestRouterStopsWhenCallerGivesUp(t *testing.T) {
	reg := provider.NewRegistry()
	alpha, beta := newSandbox("sandbox_alpha"), newSandbox("sandbox_beta")
	alpha.SetFailure(sandbox.FailTimeout, 0)
	reg.Register(alpha)
	reg.Register(beta)
	router := provider.NewRouter(reg, provider.RouterConfig{AttemptTimeout: time.Minute, FailureThreshold: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := router.Issue(ctx, enabled("sandbox_alpha", "sandbox_beta"), sandboxRequest("gone"))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, provider.ErrAllFailed) {
		t.Errorf("error = %v, want the caller's deadline and not ErrAllFailed", err)
	}
	if beta.Calls() != 0 {
		t.Errorf("beta was called %d times after the caller gave up", beta.Calls())
	}
	if !router.Healthy("sandbox_alpha") {
		t.Error("the caller's cancellation was counted against sandbox_alpha")
	}
}

func TestCircuitBreaker(t *testing.T) {
	ctx := context.Background()
	reg := provider.NewRegistry()
	alpha, beta := newSandbox("sandbox_alpha"), newSandbox("sandbox_beta")
	reg.Register(alpha)
	reg.Register(beta)
	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	router := provider.NewRouter(reg, provider.RouterConfig{
		AttemptTimeout:   100 * time.Millisecond,
		FailureThreshold: 2,
		Cooldown:         time.Minute,
		Now:              clk.Now,
	})
	routes := enabled("sandbox_alpha", "sandbox_beta")
	var n int
	issue := func(t *testing.T) provider.Result {
		t.Helper()
		n++
		res, err := router.Issue(ctx, routes, sandboxRequest(fmt.Sprint("cb", n)))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	alpha.SetFailure(sandbox.FailError, 0)
	t.Run("stays closed below the threshold", func(t *testing.T) {
		issue(t)
		if !router.Healthy("sandbox_alpha") {
			t.Error("one failure made sandbox_alpha unhealthy")
		}
	})

	t.Run("opens at the threshold", func(t *testing.T) {
		issue(t)
		if router.Healthy("sandbox_alpha") {
			t.Error("sandbox_alpha healthy after two consecutive failures")
		}
		if !router.Healthy("sandbox_beta") {
			t.Error("sandbox_beta unhealthy")
		}
	})

	t.Run("skips the open provider", func(t *testing.T) {
		before := alpha.Calls()
		res := issue(t)
		if alpha.Calls() != before || res.Provider != "sandbox_beta" || len(res.Attempts) != 1 {
			t.Errorf("alpha calls %d→%d, result %+v; want alpha skipped", before, alpha.Calls(), res)
		}
	})

	t.Run("stays open until the cooldown ends", func(t *testing.T) {
		clk.Advance(59 * time.Second)
		before := alpha.Calls()
		issue(t)
		if alpha.Calls() != before || router.Healthy("sandbox_alpha") {
			t.Error("sandbox_alpha called before its cooldown ended")
		}
	})

	t.Run("allows one trial after the cooldown and reopens when it fails", func(t *testing.T) {
		clk.Advance(time.Second)
		if !router.Healthy("sandbox_alpha") {
			t.Fatal("sandbox_alpha still unhealthy after the cooldown")
		}
		before := alpha.Calls()
		issue(t)
		if alpha.Calls() != before+1 {
			t.Fatalf("alpha calls %d→%d, want one trial", before, alpha.Calls())
		}
		if router.Healthy("sandbox_alpha") {
			t.Error("a failed trial left sandbox_alpha healthy")
		}
		issue(t)
		if alpha.Calls() != before+1 {
			t.Error("sandbox_alpha called again right after its failed trial")
		}
	})

	t.Run("lets a single trial through while one is in flight", func(t *testing.T) {
		clk.Advance(time.Minute)
		alpha.SetFailure(sandbox.FailTimeout, 0)
		before := alpha.Calls()
		done := make(chan provider.Result)
		go func() {
			res, _ := router.Issue(ctx, routes, sandboxRequest("trial-in-flight"))
			done <- res
		}()
		for alpha.Calls() == before {
			time.Sleep(time.Millisecond)
		}
		if router.Healthy("sandbox_alpha") {
			t.Error("sandbox_alpha reported healthy while its trial is in flight")
		}
		res := issue(t)
		if alpha.Calls() != before+1 || res.Provider != "sandbox_beta" {
			t.Errorf("a second request reached sandbox_alpha during its trial")
		}
		if trial := <-done; trial.Provider != "sandbox_beta" {
			t.Errorf("trial request issued through %q, want failover to sandbox_beta", trial.Provider)
		}
	})

	t.Run("closes after a successful trial", func(t *testing.T) {
		clk.Advance(time.Minute)
		alpha.SetFailure(sandbox.FailNone, 0)
		if res := issue(t); res.Provider != "sandbox_alpha" {
			t.Fatalf("Provider = %q, want the recovered sandbox_alpha", res.Provider)
		}
		if !router.Healthy("sandbox_alpha") {
			t.Error("sandbox_alpha unhealthy after a successful trial")
		}
		// The success reset the count: one more failure does not reopen it.
		alpha.SetFailure(sandbox.FailError, 0)
		issue(t)
		if !router.Healthy("sandbox_alpha") {
			t.Error("one failure after recovery reopened the breaker")
		}
	})
}

// TestRouterStats: what metrics read from the router follows each call's
// outcome and the breaker through closed, open, half-open and back.
func TestRouterStats(t *testing.T) {
	ctx := context.Background()
	reg := provider.NewRegistry()
	alpha, beta, idle := newSandbox("sandbox_alpha"), newSandbox("sandbox_beta"), newSandbox("sandbox_idle", "KE")
	reg.Register(alpha)
	reg.Register(beta)
	reg.Register(idle)
	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	router := provider.NewRouter(reg, provider.RouterConfig{
		AttemptTimeout: 50 * time.Millisecond, FailureThreshold: 2, Cooldown: time.Minute, Now: clk.Now,
	})
	routes := enabled("sandbox_alpha", "sandbox_beta")
	n := 0
	issue := func(ctx context.Context) {
		n++
		_, _ = router.Issue(ctx, routes, sandboxRequest(fmt.Sprint("st", n)))
	}
	stats := func(name string) provider.ProviderStats {
		t.Helper()
		for _, st := range router.Stats() {
			if st.Name == name {
				return st
			}
		}
		t.Fatalf("no stats for %s in %+v", name, router.Stats())
		return provider.ProviderStats{}
	}
	want := func(name string, state provider.BreakerState, issued, failed, timeout, canceled int64) {
		t.Helper()
		st := stats(name)
		w := map[provider.AttemptOutcome]int64{provider.OutcomeIssued: issued, provider.OutcomeFailed: failed,
			provider.OutcomeTimeout: timeout, provider.OutcomeCanceled: canceled}
		if st.Breaker != state || !maps.Equal(st.Attempts, w) {
			t.Errorf("%s: breaker %s, attempts %v; want %s, %v", name, st.Breaker, st.Attempts, state, w)
		}
	}

	t.Run("every registered provider is listed, called or not", func(t *testing.T) {
		var names []string
		for _, st := range router.Stats() {
			names = append(names, st.Name)
		}
		if !slices.Equal(names, []string{"sandbox_alpha", "sandbox_beta", "sandbox_idle"}) {
			t.Fatalf("names %v", names)
		}
		want("sandbox_idle", provider.BreakerClosed, 0, 0, 0, 0)
	})
	t.Run("an issue and a failure are counted; below the threshold the breaker stays closed", func(t *testing.T) {
		issue(ctx)
		alpha.SetFailure(sandbox.FailError, 0)
		issue(ctx)
		want("sandbox_alpha", provider.BreakerClosed, 1, 1, 0, 0)
		want("sandbox_beta", provider.BreakerClosed, 1, 0, 0, 0)
	})
	t.Run("a timeout is counted as one and opens the breaker at the threshold", func(t *testing.T) {
		alpha.SetFailure(sandbox.FailTimeout, 0)
		issue(ctx)
		want("sandbox_alpha", provider.BreakerOpen, 1, 1, 1, 0)
		want("sandbox_beta", provider.BreakerClosed, 2, 0, 0, 0)
	})
	t.Run("the breaker is half-open once the cooldown ends, and a good trial closes it", func(t *testing.T) {
		clk.Advance(time.Minute)
		want("sandbox_alpha", provider.BreakerHalfOpen, 1, 1, 1, 0)
		alpha.SetFailure(sandbox.FailNone, 0)
		issue(ctx)
		want("sandbox_alpha", provider.BreakerClosed, 2, 1, 1, 0)
	})
	t.Run("a call the caller gave up on is counted as canceled, not against the provider", func(t *testing.T) {
		alpha.SetFailure(sandbox.FailNone, time.Second)
		defer alpha.SetFailure(sandbox.FailNone, 0)
		gone, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		issue(gone)
		want("sandbox_alpha", provider.BreakerClosed, 2, 1, 1, 1)
	})
}

func TestRouterUnavailableWhenUnhealthy(t *testing.T) {
	reg := provider.NewRegistry()
	alpha := newSandbox("sandbox_alpha")
	alpha.SetFailure(sandbox.FailError, 0)
	reg.Register(alpha)
	router := provider.NewRouter(reg, provider.RouterConfig{FailureThreshold: 1, Cooldown: time.Hour})
	routes := enabled("sandbox_alpha")

	if _, err := router.Issue(context.Background(), routes, sandboxRequest("u1")); !errors.Is(err, provider.ErrAllFailed) {
		t.Fatalf("first Issue error = %v, want ErrAllFailed", err)
	}
	res, err := router.Issue(context.Background(), routes, sandboxRequest("u2"))
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("second Issue error = %v, want ErrUnavailable", err)
	}
	if alpha.Calls() != 1 || len(res.Attempts) != 0 {
		t.Errorf("calls %d, attempts %d; want the unhealthy provider not called", alpha.Calls(), len(res.Attempts))
	}
}

func TestRouterConcurrentIssue(t *testing.T) {
	reg := provider.NewRegistry()
	alpha, beta := newSandbox("sandbox_alpha"), newSandbox("sandbox_beta")
	reg.Register(alpha)
	reg.Register(beta)
	router := provider.NewRouter(reg, provider.RouterConfig{AttemptTimeout: 50 * time.Millisecond})
	routes := enabled("sandbox_alpha", "sandbox_beta")

	var issued atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		if i == 10 {
			alpha.SetFailure(sandbox.FailError, 0)
		}
		wg.Go(func() {
			res, err := router.Issue(context.Background(), routes, sandboxRequest(fmt.Sprint("c", i)))
			if err == nil && sandbox.LuhnValid(res.Card.PAN) {
				issued.Add(1)
			}
			router.Healthy("sandbox_alpha")
		})
	}
	wg.Wait()
	if issued.Load() != 40 {
		t.Errorf("%d of 40 concurrent requests got a card, want all", issued.Load())
	}
}

func TestReason(t *testing.T) {
	for _, tc := range []struct {
		name     string
		attempts []provider.Attempt
		want     string
	}{
		{"is empty without failures", nil, ""},
		{"is empty for a success", []provider.Attempt{{Provider: "a"}}, ""},
		{"names a timeout", []provider.Attempt{{Provider: "sandbox_beta", Err: fmt.Errorf("x: %w", cardrail.ErrProviderTimeout)}},
			"all providers failed: sandbox_beta: timed out"},
		{"names a bare deadline as a timeout", []provider.Attempt{{Provider: "p", Err: context.DeadlineExceeded}},
			"all providers failed: p: timed out"},
		{"passes a caller-safe message through", []provider.Attempt{{Provider: "p", Err: cardrail.Errorf(cardrail.CodeProviderUnavailable, "partner maintenance")}},
			"all providers failed: p: partner maintenance"},
		{"hides raw error text", []provider.Attempt{{Provider: "p", Err: errors.New("partner said: pan 4111111111111111 rejected")}},
			"all providers failed: p: failed"},
		{"lists every failure in order", []provider.Attempt{
			{Provider: "a", Err: errors.New("boom")},
			{Provider: "b", Err: cardrail.ErrProviderTimeout},
		}, "all providers failed: a: failed; b: timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := provider.Reason(tc.attempts)
			if got != tc.want {
				t.Errorf("Reason = %q, want %q", got, tc.want)
			}
			if strings.Contains(got, "4111") {
				t.Error("Reason leaked a PAN")
			}
		})
	}
}
