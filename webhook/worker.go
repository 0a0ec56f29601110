package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/seal"
)

// DefaultSchedule is the wait after each failed attempt: 5s, 30s, 2m, 10m,
// 30m, 1h, 2h, 4h and then 8h three times, about 31.7 hours in all (twelve
// attempts) before a delivery is failed. Each wait gets up to a fifth more
// at random so that retries to a recovering receiver spread out.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 8 * time.Hour, 8 * time.Hour,
}

// jitter is the largest fraction added at random to a backoff delay.
const jitter = 0.2

// Options configure a Worker; the zero value is production's.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Client sends deliveries. The default refuses, at connect time,
	// addresses the endpoint's mode may not reach; a client given here is
	// used as is except that it never follows redirects.
	Client *http.Client
	// Resolver resolves hosts at registration (default net.DefaultResolver).
	Resolver Resolver
	// Schedule is the wait after each failed attempt; once it is used up the
	// delivery fails (default DefaultSchedule).
	Schedule []time.Duration
	// Timeout bounds each attempt (default 10s).
	Timeout time.Duration
	// Lease is how long a claimed delivery stays claimed before another
	// worker may take it over (default twice Timeout plus 30s). A worker
	// whose Run is stopped hands its sends in flight back at once; only a
	// killed one's wait out their lease.
	Lease time.Duration
	// Concurrency is how many deliveries one worker sends at once (default 8).
	Concurrency int
	// PollInterval is Run's pause when there is nothing to do (default 250ms).
	PollInterval time.Duration
	// AllowPrivate lets production endpoints reach private and loopback
	// addresses (CARDRAIL_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
	// Log receives delivery failures (default slog.Default()).
	Log *slog.Logger
	// Keys seal endpoint secrets at rest (the keyring that seals PANs).
	// Without it endpoints cannot be created and sealed secrets cannot be
	// opened.
	Keys *seal.Keyring
}

// Worker dispatches the outbox into deliveries, sends them, and serves the
// operator API's webhook administration. Any number of workers, in one
// process or many, may share a database.
type Worker struct {
	store   Store
	opts    Options
	clients map[bool]*http.Client // by livemode
	// attempts counts this worker's attempts by outcome; the map is made
	// in New and never changed after, so reading it needs no lock.
	attempts map[AttemptOutcome]*atomic.Int64
}

// AttemptOutcome is what one delivery attempt led to.
type AttemptOutcome string

// The attempt outcomes.
const (
	// AttemptDelivered: the endpoint answered 2xx.
	AttemptDelivered AttemptOutcome = "delivered"
	// AttemptRetryScheduled: the attempt failed and the delivery waits for
	// its next one.
	AttemptRetryScheduled AttemptOutcome = "retry_scheduled"
	// AttemptFailed: the attempt failed and was the schedule's last, so
	// the delivery is failed.
	AttemptFailed AttemptOutcome = "failed"
	// AttemptUnrecorded: the attempt was made but its outcome not stored
	// (the lease was lost, or the database refused the write); the
	// delivery is sent again.
	AttemptUnrecorded AttemptOutcome = "unrecorded"
	// AttemptEndpointDeleted: the endpoint was deleted while the attempt
	// was in flight. The delete failed the delivery, which is not sent
	// again; the attempt is stored on it.
	AttemptEndpointDeleted AttemptOutcome = "endpoint_deleted"
)

// AttemptOutcomes lists every attempt outcome.
var AttemptOutcomes = []AttemptOutcome{AttemptDelivered, AttemptRetryScheduled, AttemptFailed, AttemptUnrecorded,
	AttemptEndpointDeleted}

// Attempts reports the worker's delivery attempts since it was made, by
// outcome (every outcome present, zero or not). Attempts cut short by
// shutdown are not counted: they are handed back unrecorded.
func (w *Worker) Attempts() map[AttemptOutcome]int64 {
	out := make(map[AttemptOutcome]int64, len(w.attempts))
	for o, n := range w.attempts {
		out[o] = n.Load()
	}
	return out
}

// Backlog counts a mode's pending deliveries, in the database: those of
// every worker sharing it.
func (w *Worker) Backlog(ctx context.Context, livemode bool) (int64, error) {
	return w.store.PendingWebhookDeliveries(ctx, livemode)
}

// New returns a Worker over store.
func New(store Store, opts Options) *Worker {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.Schedule == nil {
		opts.Schedule = DefaultSchedule
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Lease <= 0 {
		opts.Lease = 2*opts.Timeout + 30*time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	w := &Worker{store: store, opts: opts, attempts: make(map[AttemptOutcome]*atomic.Int64, len(AttemptOutcomes))}
	for _, o := range AttemptOutcomes {
		w.attempts[o] = new(atomic.Int64)
	}
	if opts.Client != nil {
		c := *opts.Client
		c.CheckRedirect = noRedirects
		w.clients = map[bool]*http.Client{false: &c, true: &c}
	} else {
		w.clients = map[bool]*http.Client{false: newClient(w.reachFor(false)), true: newClient(w.reachFor(true))}
	}
	return w
}

func (w *Worker) now() time.Time { return w.opts.Now().UTC().Truncate(time.Microsecond) }

const (
	dispatchBatch = 200
	// maxRounds bounds one RunOnce, so that a steady stream of work cannot
	// keep it from returning.
	maxRounds = 1000
	// releaseTimeout bounds handing a delivery back at shutdown.
	releaseTimeout = 2 * time.Second
)

// RunOnce dispatches every committed event and sends every delivery that is
// due, including those that become due as earlier deliveries for the same
// object succeed. Tests and App.Tick call it; Run calls it in a loop.
func (w *Worker) RunOnce(ctx context.Context) error {
	_, err := w.runOnce(ctx)
	return err
}

func (w *Worker) runOnce(ctx context.Context) (int, error) {
	done, err := w.dispatchAll(ctx)
	if err != nil {
		return done, err
	}
	for range maxRounds {
		n, err := w.sendDue(ctx)
		done += n
		if err != nil {
			return done, fmt.Errorf("webhook delivery: %w", err)
		}
		if n == 0 {
			break
		}
	}
	return done, nil
}

// Run delivers until ctx ends, polling every PollInterval while idle.
// Unlike RunOnce it does not wait for a batch of sends to finish before
// claiming more: each of Concurrency slots is refilled as soon as its send
// is done, and no endpoint holds more than perEndpoint of them, so a
// receiver that hangs until the timeout slows its own deliveries, not
// every endpoint's.
func (w *Worker) Run(ctx context.Context) {
	p := &pool{w: w, done: make(chan struct{}, 1), inFlight: map[string]int{}}
	defer p.wg.Wait()
	wait := w.opts.PollInterval
	failing := false
	for {
		n, err := p.step(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			// While the database is away, back off (doubling up to
			// maxFailureWait) so that an outage is a few log lines a
			// minute, not four a second.
			w.opts.Log.Error("webhooks", "error", err.Error(), "retry_in", wait.String())
			failing = true
		case err == nil && failing:
			w.opts.Log.Info("webhooks recovered")
			failing = false
		}
		if err == nil {
			wait = w.opts.PollInterval
			if n > 0 {
				continue
			}
		}
		var slot <-chan struct{} // while failing, only the back-off wakes
		if err == nil {
			slot = p.done
		}
		select {
		case <-ctx.Done():
			return
		case <-slot: // a send finished, so a slot is free
		case <-time.After(wait):
		}
		if err != nil {
			wait = max(min(2*wait, maxFailureWait), w.opts.PollInterval)
		}
	}
}

// pool is Run's sends in flight.
type pool struct {
	w    *Worker
	wg   sync.WaitGroup
	done chan struct{} // a send finished

	mu       sync.Mutex
	running  int
	inFlight map[string]int // sends running, by endpoint
}

// perEndpoint is how many of a worker's Concurrency sends one endpoint may
// hold: three quarters, leaving the rest to the other endpoints.
func (w *Worker) perEndpoint() int { return max(1, w.opts.Concurrency*3/4) }

// step dispatches what has been committed and claims deliveries for the
// free slots, sending each in its own goroutine; it returns how many events
// and deliveries it took.
func (p *pool) step(ctx context.Context) (int, error) {
	done, err := p.w.dispatchAll(ctx)
	if err != nil {
		return done, err
	}
	p.mu.Lock()
	share := p.w.perEndpoint()
	free, limit := p.w.opts.Concurrency-p.running, share
	var skip []string
	for ep, n := range p.inFlight {
		if n >= share {
			skip = append(skip, ep)
		} else {
			// A claim may go to a single endpoint; it must stay in bounds.
			limit = min(limit, share-n)
		}
	}
	p.mu.Unlock()
	if free == 0 {
		return done, nil
	}
	token, claims, err := p.w.claim(ctx, min(free, limit), skip)
	if err != nil {
		return done, fmt.Errorf("webhook delivery: %w", err)
	}
	p.mu.Lock()
	p.running += len(claims)
	for _, c := range claims {
		p.inFlight[c.Endpoint]++
	}
	p.mu.Unlock()
	for i := range claims {
		c := &claims[i]
		p.wg.Go(func() {
			if err := p.w.send(ctx, c, token); err != nil {
				p.w.opts.Log.Error("webhooks", "error", err.Error())
			}
			p.mu.Lock()
			p.running--
			if p.inFlight[c.Endpoint]--; p.inFlight[c.Endpoint] == 0 {
				delete(p.inFlight, c.Endpoint)
			}
			p.mu.Unlock()
			select {
			case p.done <- struct{}{}:
			default:
			}
		})
	}
	return done + len(claims), nil
}

// dispatchAll dispatches every committed event. A second pass after an
// empty one lets the dispatcher move past a gap it first saw in the
// previous pass, once that gap is known to be a rollback.
func (w *Worker) dispatchAll(ctx context.Context) (int, error) {
	done := 0
	for i := range maxRounds {
		n, err := w.dispatch(ctx)
		done += n
		if err != nil {
			return done, fmt.Errorf("webhook dispatch: %w", err)
		}
		if n == 0 && i > 0 {
			break
		}
	}
	return done, nil
}

// maxFailureWait bounds the back-off between passes that fail.
const maxFailureWait = 30 * time.Second

// dispatch turns the next batch of committed events into deliveries, in the
// transaction that moves the dispatch cursor past them.
func (w *Worker) dispatch(ctx context.Context) (int, error) {
	taken := 0
	err := w.store.WebhookTx(ctx, func(tx Tx) error {
		events, err := tx.TakeEvents(ctx, dispatchBatch)
		taken = len(events)
		if err != nil || len(events) == 0 {
			return err
		}
		endpoints, err := tx.WebhookSubscribers(ctx)
		if err != nil {
			return err
		}
		for _, ev := range events {
			for i := range endpoints {
				ep := &endpoints[i]
				if ep.Livemode != ev.Livemode || ev.Seq <= ep.AfterSeq || !ep.Subscribes(ev.Type) {
					continue
				}
				ref, now := cardrail.NewReferenceAt(w.now, cardrail.PrefixDelivery)
				next := now
				d := &Delivery{Reference: ref, Endpoint: ep.Reference,
					Event: ev.ID, EventType: ev.Type, ObjectRef: ev.ObjectRef, EventSeq: ev.Seq,
					Status: DeliveryPending, NextAttemptAt: &next, Livemode: ev.Livemode, CreatedAt: now, UpdatedAt: now}
				if err := tx.InsertWebhookDelivery(ctx, d); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return taken, err
}

// claim leases up to limit due deliveries, none to an endpoint in skip,
// under a new token. Deliveries about the same object to the same endpoint
// are never claimed together, so sending them in parallel keeps their
// order.
func (w *Worker) claim(ctx context.Context, limit int, skip []string) (string, []Claim, error) {
	token := leaseToken()
	var claims []Claim
	err := w.store.WebhookTx(ctx, func(tx Tx) error {
		now := w.now()
		var err error
		claims, err = tx.ClaimWebhookDeliveries(ctx, now, now.Add(w.opts.Lease), token, limit, skip)
		return err
	})
	return token, claims, err
}

// sendDue claims up to Concurrency due deliveries and sends them at once,
// returning when all are done.
func (w *Worker) sendDue(ctx context.Context) (int, error) {
	token, claims, err := w.claim(ctx, w.opts.Concurrency, nil)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(claims))
	for i := range claims {
		wg.Go(func() { errs[i] = w.send(ctx, &claims[i], token) })
	}
	wg.Wait()
	return len(claims), errors.Join(errs...)
}

func leaseToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// send makes one attempt and records it with the delivery's next state.
func (w *Worker) send(ctx context.Context, c *Claim, token string) error {
	at := w.now()
	started := time.Now()
	status, sendErr := w.post(ctx, c, at)
	if ctx.Err() != nil {
		// Shutting down: the attempt says nothing about the receiver and
		// is not recorded. Hand the delivery back, so that another
		// instance (or this one, restarted) sends it now rather than once
		// the lease has run out; if that fails, the lease still expires.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		if err := w.store.WebhookTx(rctx, func(tx Tx) error { return tx.ReleaseWebhookLease(rctx, c.Delivery, token) }); err != nil {
			w.opts.Log.Warn("webhook delivery not handed back at shutdown; it is sent again once its lease expires",
				"delivery", c.Delivery, "error", err.Error())
		}
		return nil
	}
	a := Attempt{AttemptedAt: at, DurationMS: time.Since(started).Milliseconds()}
	if status != 0 {
		a.StatusCode = &status
	}
	o := Outcome{AttemptCount: c.AttemptCount + 1, UpdatedAt: w.now()}
	switch {
	case sendErr == nil && status >= 200 && status < 300:
		o.Status, o.DeliveredAt = DeliveryDelivered, &o.UpdatedAt
	default:
		msg := ""
		if sendErr != nil {
			msg = sendErr.Error()
		} else {
			msg = "the endpoint answered " + strconv.Itoa(status)
			if status >= 300 && status < 400 {
				msg += "; redirects are not followed"
			}
		}
		a.Error = &msg
		if o.AttemptCount > len(w.opts.Schedule) {
			o.Status = DeliveryFailed
		} else {
			next := o.UpdatedAt.Add(backoff(w.opts.Schedule[o.AttemptCount-1]))
			o.Status, o.NextAttemptAt = DeliveryPending, &next
		}
		w.opts.Log.Warn("webhook attempt failed", "delivery", c.Delivery, "endpoint", c.Endpoint,
			"event", c.EventID, "attempt", o.AttemptCount, "error", msg, "status", string(o.Status))
	}
	var kept, deleted bool
	err := w.store.WebhookTx(ctx, func(tx Tx) error {
		var err error
		if kept, err = tx.RecordWebhookAttempt(ctx, c.Delivery, token, a, o); err != nil || kept {
			return err
		}
		// The lease is gone: an operator replayed the delivery, its lease
		// ran out and another worker took it, or deleting the endpoint
		// failed it.
		_, err = tx.WebhookEndpoint(ctx, c.Livemode, c.Endpoint)
		if deleted = errors.Is(err, cardrail.ErrNoRows); deleted {
			err = nil
		}
		return err
	})
	if err != nil {
		w.attempts[AttemptUnrecorded].Add(1)
		return fmt.Errorf("record attempt of %s: %w", c.Delivery, err)
	}
	if deleted {
		w.attempts[AttemptEndpointDeleted].Add(1)
		w.opts.Log.Info("webhook endpoint deleted while an attempt was in flight; the delivery is not sent again",
			"delivery", c.Delivery, "endpoint", c.Endpoint)
		return nil
	}
	if !kept {
		w.attempts[AttemptUnrecorded].Add(1)
		w.opts.Log.Warn("webhook lease lost before the attempt was recorded (an operator replayed the delivery, or its lease ran out and another worker took it); the attempt is stored, the delivery is sent again",
			"delivery", c.Delivery)
		return nil
	}
	switch o.Status {
	case DeliveryDelivered:
		w.attempts[AttemptDelivered].Add(1)
	case DeliveryFailed:
		w.attempts[AttemptFailed].Add(1)
	default:
		w.attempts[AttemptRetryScheduled].Add(1)
	}
	return nil
}

// backoff adds up to jitter of d at random.
func backoff(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + time.Duration(mrand.Int64N(int64(float64(d)*jitter)+1))
}

// maxResponseRead bounds how much of an answer is read (to reuse the
// connection); the body itself is not kept.
const maxResponseRead = 64 << 10

// post sends the delivery and returns the answer's status code, or the
// reason there was none.
func (w *Worker) post(ctx context.Context, c *Claim, at time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	ts := at.Unix()
	secret, err := w.openSecret(c.Endpoint, c.Secret)
	if err != nil {
		return 0, err
	}
	sig, err := Sign(secret, c.EventID, ts, c.Payload)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Payload))
	if err != nil {
		return 0, fmt.Errorf("bad endpoint URL: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Cardrail-Webhooks/1")
	req.Header.Set(HeaderID, c.EventID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, sig)
	res, err := w.clients[c.Livemode].Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("no answer within %s", w.opts.Timeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the endpoint's; saying it again adds nothing
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxResponseRead))
	_ = res.Body.Close()
	return res.StatusCode, nil
}
