package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/ledgercheck"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/webhook"
)

var errRollback = errors.New("roll back")

// insertEndpoint stores an endpoint subscribed to everything, straight
// through the store, and returns its reference. Nothing listens at its URL:
// these tests claim deliveries but never send them.
func insertEndpoint(ctx context.Context, tx webhook.Tx, now time.Time) (string, error) {
	ep := &webhook.Endpoint{Reference: cardrail.NewReference(cardrail.PrefixWebhook), Secret: "whsec_test",
		URL: "http://127.0.0.1:9/hooks", Events: []string{"*"}, CreatedAt: now}
	return ep.Reference, tx.InsertWebhookEndpoint(ctx, ep)
}

// TestAHeadFinishingAsTheNextIsQueued races the two writers of a queue's
// head: a worker recording that an object's only pending delivery was
// delivered, and the dispatcher queueing the object's next one. Whichever
// commits first, the new delivery must end up its queue's head and be
// claimed; were it queued behind the finished one and not handed the head,
// it would never be sent. CARDRAIL_HEAD_RACE_ROUNDS sets the rounds (default 60).
func TestAHeadFinishingAsTheNextIsQueued(t *testing.T) {
	rounds := 60
	if v, err := strconv.Atoi(os.Getenv("CARDRAIL_HEAD_RACE_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		ctx := context.Background()
		st := env.App.Store
		card := env.Client("alice", "US").NewCard("usd_visa_virtual")
		env.Client("alice", "US").Must(200, "POST", "/managed-cards/"+card+"/freeze/", nil)
		var events []string
		rows, err := st.Conn().Query(ctx, `SELECT id FROM events WHERE object_ref = $1 ORDER BY seq`, card)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			events = append(events, id)
		}
		rows.Close()
		if len(events) != 2 {
			t.Fatalf("%d events about the card, want created and frozen", len(events))
		}
		claim := func(want string) webhook.Claim {
			t.Helper()
			var claims []webhook.Claim
			err := st.WebhookTx(ctx, func(tx webhook.Tx) error {
				var err error
				now := time.Now()
				claims, err = tx.ClaimWebhookDeliveries(ctx, now, now.Add(time.Minute), "race", 10, nil)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(claims) != 1 || claims[0].EventID != want {
				t.Fatalf("claimed %+v, want one delivery of %s", claims, want)
			}
			return claims[0]
		}
		deliver := func(c webhook.Claim) error {
			return st.WebhookTx(ctx, func(tx webhook.Tx) error {
				now := time.Now()
				kept, err := tx.RecordWebhookAttempt(ctx, c.Delivery, "race", webhook.Attempt{AttemptedAt: now},
					webhook.Outcome{Status: webhook.DeliveryDelivered, AttemptCount: 1, DeliveredAt: &now, UpdatedAt: now})
				if err == nil && !kept {
					err = errors.New("the lease was lost")
				}
				return err
			})
		}
		for round := range rounds {
			now := time.Now()
			queue := func(tx webhook.Tx, endpoint, event string, seq int64) error {
				return tx.InsertWebhookDelivery(ctx, &webhook.Delivery{Reference: cardrail.NewReference(cardrail.PrefixDelivery),
					Endpoint: endpoint, Event: event, EventType: cardrail.EventCardCreated, ObjectRef: card, EventSeq: seq,
					Status: webhook.DeliveryPending, NextAttemptAt: &now, CreatedAt: now, UpdatedAt: now})
			}
			var endpoint string
			err := st.WebhookTx(ctx, func(tx webhook.Tx) error {
				var err error
				if endpoint, err = insertEndpoint(ctx, tx, now); err != nil {
					return err
				}
				return queue(tx, endpoint, events[0], 1)
			})
			if err != nil {
				t.Fatal(err)
			}
			first := claim(events[0])
			var wg sync.WaitGroup
			start := make(chan struct{})
			var errs [2]error
			wg.Go(func() { <-start; errs[0] = deliver(first) })
			wg.Go(func() {
				<-start
				errs[1] = st.WebhookTx(ctx, func(tx webhook.Tx) error { return queue(tx, endpoint, events[1], 2) })
			})
			close(start)
			wg.Wait()
			if err := errors.Join(errs[:]...); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if err := ledgercheck.Check(ctx, st.Conn()); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if err := deliver(claim(events[1])); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	})
}

// BenchmarkClaimBehindABacklog claims deliveries while one object's
// deliveries queue behind a first delivery that is backing off (its
// endpoint was down): the backlog is blocked, and a claim should cost the
// same whatever its size. CARDRAIL_BENCH_BACKLOG sets the largest backlog
// (default 10,000).
func BenchmarkClaimBehindABacklog(b *testing.B) {
	largest := 10_000
	if v, err := strconv.Atoi(os.Getenv("CARDRAIL_BENCH_BACKLOG")); err == nil && v > 0 {
		largest = v
	}
	for _, backend := range testdb.Backends {
		for _, n := range []int{100, largest} {
			b.Run(fmt.Sprintf("%s/backlog=%d", backend, n), func(b *testing.B) {
				env := apptest.New(b, testdb.URL(b, backend))
				ctx := context.Background()
				st := env.App.Store
				alice := env.Client("alice", "US")
				ready := alice.NewCard("usd_visa_virtual")
				var eventID string
				if err := st.Conn().QueryRow(ctx, `SELECT id FROM events WHERE object_ref = $1`, ready).Scan(&eventID); err != nil {
					b.Fatal(err)
				}
				var endpoint string
				now := time.Now()
				later := now.Add(time.Hour)
				delivery := func(object, event string, seq int64, due *time.Time) *webhook.Delivery {
					return &webhook.Delivery{Reference: cardrail.NewReference(cardrail.PrefixDelivery), Endpoint: endpoint,
						Event: event, EventType: cardrail.EventCardCreated, ObjectRef: object, EventSeq: seq,
						Status: webhook.DeliveryPending, NextAttemptAt: due, CreatedAt: now, UpdatedAt: now}
				}
				err := st.WebhookTx(ctx, func(tx webhook.Tx) error {
					var err error
					if endpoint, err = insertEndpoint(ctx, tx, now); err != nil {
						return err
					}
					// The blocked object's first delivery is due in an hour;
					// the n after it are due now but must wait for it.
					for i := range n + 1 {
						due := &now
						if i == 0 {
							due = &later
						}
						if err := tx.InsertWebhookDelivery(ctx, delivery("card_blocked", "evt_blocked_"+strconv.Itoa(i), int64(1_000_000+i), due)); err != nil {
							return err
						}
					}
					return tx.InsertWebhookDelivery(ctx, delivery(ready, eventID, int64(2_000_000), &now))
				})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					err := st.WebhookTx(ctx, func(tx webhook.Tx) error {
						claims, err := tx.ClaimWebhookDeliveries(ctx, now, now.Add(time.Minute), "bench", 10, nil)
						if err != nil {
							return err
						}
						if len(claims) != 1 || claims[0].EventID != eventID {
							return fmt.Errorf("claimed %+v, want only the ready object's delivery", claims)
						}
						return errRollback // leave the queue as it was for the next round
					})
					if !errors.Is(err, errRollback) {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestAHungEndpointDoesNotHoldOthersBack runs the delivery loop with one
// endpoint whose receiver never answers (within a timeout longer than the
// test) beside a healthy one. The healthy endpoint must receive every event
// while the hung one still holds its requests, and the hung one may hold no
// more than its share of the worker's sends.
func TestAHungEndpointDoesNotHoldOthersBack(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		c := newClock()
		release := make(chan struct{})
		var mu sync.Mutex
		var open, most, answered int
		hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			open++
			most = max(most, open)
			mu.Unlock()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			mu.Lock()
			open--
			answered++
			mu.Unlock()
		}))
		t.Cleanup(hung.Close)
		defer close(release) // before the server closes, which waits for its handlers
		env.Client("op", "US", "ops").Must(201, "POST", "/ops/webhook-endpoints/",
			map[string]any{"url": hung.URL + "/hooks", "events": []string{"*"}})
		healthy := newReceiver(t, c)
		register(t, env, healthy, "*")
		head := lastSeq(outbox(t, env, false))
		for i := range 3 {
			activity(t, env, fmt.Sprintf("holder%d", i))
		}
		want := idsOf(sinceSeq(outbox(t, env, false), head))

		const concurrency = 8
		w := webhook.New(env.App.Store, webhook.Options{Now: c.Now, Timeout: time.Minute, Concurrency: concurrency,
			PollInterval: 10 * time.Millisecond, Log: quiet, Keys: env.App.Keys})
		ctx, stop := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() { defer close(stopped); w.Run(ctx) }()
		defer func() { stop(); <-stopped }()

		deadline := time.Now().Add(30 * time.Second)
		for !sameSet(healthy.ids(), want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		held, gone, peak := open, answered, most
		mu.Unlock()
		if got := len(healthy.ids()); !sameSet(healthy.ids(), want) {
			t.Fatalf("the healthy endpoint received %d of %d events while the other hung (it holds %d requests)", got, len(want), held)
		}
		if held == 0 || gone != 0 {
			t.Fatalf("the hung endpoint holds %d requests and answered %d; the test needs it hung throughout", held, gone)
		}
		if peak > concurrency*3/4 {
			t.Fatalf("the hung endpoint held %d of the worker's %d sends at once", peak, concurrency)
		}
		t.Logf("the hung endpoint held %d requests, at most %d at once", held, peak)
		checkOrderPerObject(t, sinceSeq(outbox(t, env, false), head), healthy.got())
	})
}

// TestStoppingHandsItsSendsBack stops a worker while its sends are in
// flight, held open by the receiver. The worker hands them back as it
// stops: a second worker, its clock where the first one's was, sends every
// event at once, where before they waited out the first one's lease.
func TestStoppingHandsItsSendsBack(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		c := newClock()
		r := newReceiver(t, c)
		var holding atomic.Bool
		holding.Store(true)
		var held atomic.Int32
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if holding.Load() {
				// Read the body first: only then does the server watch the
				// connection, and end the request's context when the
				// worker gives up on it.
				_, _ = io.Copy(io.Discard, req.Body)
				held.Add(1)
				<-req.Context().Done()
				return
			}
			r.ServeHTTP(w, req)
		}))
		t.Cleanup(front.Close)
		registerURL(t, env, r, front.URL+"/hooks", "*")
		head := lastSeq(outbox(t, env, false))
		for i := range 3 {
			activity(t, env, fmt.Sprintf("holder%d", i))
		}
		want := idsOf(sinceSeq(outbox(t, env, false), head))

		first := webhook.New(env.App.Store, webhook.Options{Now: c.Now, Timeout: time.Minute,
			PollInterval: 10 * time.Millisecond, Log: quiet, Keys: env.App.Keys})
		ctx, stop := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() { defer close(stopped); first.Run(ctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for held.Load() < 3 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		stop()
		<-stopped
		if n := held.Load(); n < 3 {
			t.Fatalf("the receiver held %d requests; the test needs sends in flight when the worker stops", n)
		}
		holding.Store(false)

		runOnce(t, newWorker(env, c))
		if got := r.ids(); !sameSet(got, want) {
			t.Fatalf("after the first worker stopped with %d sends in flight, the second sent %d of %d events", held.Load(), len(got), len(want))
		}
		checkOrderPerObject(t, sinceSeq(outbox(t, env, false), head), r.got())
	})
}
