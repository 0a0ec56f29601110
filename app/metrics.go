package app

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/issuing"
	"github.com/cardrail/cardrail/provider"
	"github.com/cardrail/cardrail/store/sqlstore"
	"github.com/cardrail/cardrail/webhook"
)

// registerMetrics adds to reg (the server's, behind /metrics) the series of
// the authorization engine, the issuing partners, webhook delivery and the
// database pool. Each collector reads its part's own totals at scrape time,
// so no request path does more work for them. Every label takes its values
// from a fixed set (decline reasons, outcomes, breaker states, modes) or
// from configuration (provider names); none carries a reference, an owner
// or a URL.
func registerMetrics(reg prometheus.Registerer, store *sqlstore.Store, svc *issuing.Service, router *provider.Router, webhooks *webhook.Worker, log *slog.Logger) error {
	for _, c := range []prometheus.Collector{engineCollector{svc}, providerCollector{router}, &webhookCollector{worker: webhooks, log: log}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return store.RegisterPoolMetrics(reg)
}

var (
	engineBatches   = prometheus.NewDesc("cardrail_authorization_batches_total", "Authorization batches run, each one transaction.", nil, nil)
	engineDecided   = prometheus.NewDesc("cardrail_authorizations_decided_total", "Authorizations the engine answered, approved, declined or failed.", nil, nil)
	engineFallbacks = prometheus.NewDesc("cardrail_authorization_batch_fallbacks_total", "Batches whose transaction failed and were decided again one authorization at a time.", nil, nil)
	engineBusy      = prometheus.NewDesc("cardrail_authorization_engine_busy_seconds_total", "Time spent inside batch transactions, summed over executors.", nil, nil)
	engineApproved  = prometheus.NewDesc("cardrail_authorizations_approved_total", "Authorizations approved (their hold committed).", nil, nil)
	engineDeclined  = prometheus.NewDesc("cardrail_authorizations_declined_total", "Authorizations declined, by decline reason.", []string{"reason"}, nil)
)

// engineCollector reads issuing.Service.BatchStats.
type engineCollector struct{ svc *issuing.Service }

func (engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{engineBatches, engineDecided, engineFallbacks, engineBusy, engineApproved, engineDeclined} {
		ch <- d
	}
}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.svc.BatchStats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	counter(engineBatches, float64(st.Batches))
	counter(engineDecided, float64(st.Decided))
	counter(engineFallbacks, float64(st.Fallbacks))
	counter(engineBusy, st.Busy.Seconds())
	counter(engineApproved, float64(st.Approved))
	for _, r := range cardrail.DeclineReasons {
		counter(engineDeclined, float64(st.Declined[r]), string(r))
	}
}

// outcomes lists a series' outcome labels for its help text.
func outcomes[S ~string](os []S) string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = string(o)
	}
	return strings.Join(out, ", ")
}

var (
	providerBreaker  = prometheus.NewDesc("cardrail_provider_breaker_state", "1 for the state each provider's circuit breaker is in (closed, open, half_open), 0 for the others.", []string{"provider", "state"}, nil)
	providerAttempts = prometheus.NewDesc("cardrail_provider_issue_attempts_total", "Card issue calls to each provider, by outcome ("+outcomes(provider.AttemptOutcomes)+").", []string{"provider", "outcome"}, nil)
)

// providerCollector reads provider.Router.Stats.
type providerCollector struct{ router *provider.Router }

func (providerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- providerBreaker
	ch <- providerAttempts
}

func (c providerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.router.Stats() {
		for _, s := range provider.BreakerStates {
			v := 0.0
			if p.Breaker == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(providerBreaker, prometheus.GaugeValue, v, p.Name, string(s))
		}
		for _, o := range provider.AttemptOutcomes {
			ch <- prometheus.MustNewConstMetric(providerAttempts, prometheus.CounterValue, float64(p.Attempts[o]), p.Name, string(o))
		}
	}
}

var (
	webhookAttempts = prometheus.NewDesc("cardrail_webhook_attempts_total", "Webhook delivery attempts by this instance, by outcome ("+outcomes(webhook.AttemptOutcomes)+").", []string{"outcome"}, nil)
	webhookPending  = prometheus.NewDesc("cardrail_webhook_pending_deliveries", "Webhook deliveries pending in the database (every instance's), by mode; counted at scrape time.", []string{"mode"}, nil)
	webhookErrors   = prometheus.NewDesc("cardrail_webhook_pending_count_errors_total", "Scrapes whose count of pending deliveries failed or timed out; the gauge was left out of those scrapes.", nil, nil)
)

// backlogTimeout bounds a scrape's count of pending deliveries, so a slow
// database delays the scrape by at most this much.
const backlogTimeout = 2 * time.Second

// webhookCollector reads the worker's attempts and counts the pending
// deliveries.
type webhookCollector struct {
	worker *webhook.Worker
	log    *slog.Logger
	errors atomic.Int64
}

func (*webhookCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- webhookAttempts
	ch <- webhookPending
	ch <- webhookErrors
}

func (c *webhookCollector) Collect(ch chan<- prometheus.Metric) {
	attempts := c.worker.Attempts()
	for _, o := range webhook.AttemptOutcomes {
		ch <- prometheus.MustNewConstMetric(webhookAttempts, prometheus.CounterValue, float64(attempts[o]), string(o))
	}
	ctx, cancel := context.WithTimeout(context.Background(), backlogTimeout)
	defer cancel()
	for _, livemode := range []bool{false, true} {
		mode := cardrail.ModeName(livemode)
		n, err := c.worker.Backlog(ctx, livemode)
		if err != nil {
			// A wrong number would be worse than none: the sample is left
			// out, and the error counter says why it is missing.
			c.errors.Add(1)
			c.log.Debug("metrics: count of pending webhook deliveries failed", "mode", mode, "error", err.Error())
			continue
		}
		ch <- prometheus.MustNewConstMetric(webhookPending, prometheus.GaugeValue, float64(n), mode)
	}
	ch <- prometheus.MustNewConstMetric(webhookErrors, prometheus.CounterValue, float64(c.errors.Load()))
}
