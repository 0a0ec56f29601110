package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/internal/apptest"
	"github.com/cardrail/cardrail/internal/testdb"
	"github.com/cardrail/cardrail/webhook"
)

// quiet discards the workers' logs of failed attempts, which these tests
// provoke on purpose.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a test clock that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// receiver mode: how the test endpoint answers.
const (
	up      = iota // verify, record, answer 204
	failing        // answer 500
	hangUp         // close the connection without answering
	held           // signal arrived, then answer 204 once release is closed
)

// receiver is a webhook endpoint that verifies every signature with its
// secret, recomputing the HMAC itself rather than trusting the package
// under test, and records what it accepted.
type receiver struct {
	t     *testing.T
	clock *clock
	srv   *httptest.Server

	mu       sync.Mutex
	secret   string
	mode     int
	accepted []received
	hits     map[string]int  // every request per webhook-id, accepted or not
	refuse   map[string]bool // webhook-ids answered 500 whatever the mode

	arrived, release chan struct{} // for held
}

type received struct {
	ID, Type, ObjectRef string
	Body                []byte
}

func newReceiver(t *testing.T, c *clock) *receiver {
	r := &receiver{t: t, clock: c, hits: map[string]int{}}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) URL() string { return r.srv.URL + "/hooks" }

func (r *receiver) setSecret(s string) { r.mu.Lock(); r.secret = s; r.mu.Unlock() }
func (r *receiver) setMode(m int)      { r.mu.Lock(); r.mode = m; r.mu.Unlock() }
func (r *receiver) refuseEvent(id string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse == nil {
		r.refuse = map[string]bool{}
	}
	r.refuse[id] = on
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	mode, secret := r.mode, r.secret
	r.hits[req.Header.Get("webhook-id")]++
	if r.refuse[req.Header.Get("webhook-id")] {
		mode = failing
	}
	r.mu.Unlock()
	switch mode {
	case failing:
		w.WriteHeader(http.StatusInternalServerError)
		return
	case hangUp:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case held:
		r.arrived <- struct{}{}
		<-r.release
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := verifySignature(secret, req.Header, body, r.clock.Now()); err != nil {
		r.t.Errorf("receiver: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/json" {
		r.t.Errorf("receiver: Content-Type %q", ct)
	}
	var env struct {
		ID, Object, Type string
		CreatedAt        time.Time `json:"created_at"`
		Livemode         *bool
		Data             struct {
			Object map[string]any
		}
	}
	if err := json.Unmarshal(body, &env); err != nil {
		r.t.Errorf("receiver: body is not an event: %v: %s", err, body)
	}
	if env.ID != req.Header.Get("webhook-id") || env.Object != "event" || !slices.Contains(cardrail.EventTypes, env.Type) ||
		env.CreatedAt.IsZero() || env.Livemode == nil || env.Data.Object == nil {
		r.t.Errorf("receiver: bad envelope: %s", body)
	}
	ref, _ := env.Data.Object["reference"].(string)
	r.mu.Lock()
	r.accepted = append(r.accepted, received{ID: env.ID, Type: env.Type, ObjectRef: ref, Body: body})
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// verifySignature is the Standard Webhooks check written out independently
// of webhook.Sign and webhook.Verify.
func verifySignature(secret string, h http.Header, body []byte, now time.Time) error {
	if !strings.HasPrefix(secret, "whsec_") {
		return fmt.Errorf("secret %q lacks whsec_", secret)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" {
		return fmt.Errorf("bad webhook-id %q or webhook-timestamp %q", id, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s is %s from now", ts, d)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, s := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("signature %q does not match", h.Get("webhook-signature"))
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted)
}

func (r *receiver) ids() []string {
	var ids []string
	for _, g := range r.got() {
		ids = append(ids, g.ID)
	}
	return ids
}

func (r *receiver) hitsFor(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits[id]
}

// register creates an endpoint for r through the operator API and gives its
// secret to r.
func register(t *testing.T, env *apptest.Env, r *receiver, events ...string) string {
	t.Helper()
	return registerURL(t, env, r, r.URL(), events...)
}

func registerURL(t *testing.T, env *apptest.Env, r *receiver, url string, events ...string) string {
	t.Helper()
	// Once the test is done, each queue must still have its head.
	t.Cleanup(env.CheckLedger)
	res := env.Client("op", "US", "ops").Must(201, "POST", "/ops/webhook-endpoints/", map[string]any{"url": url, "events": events})
	r.setSecret(res.Str("secret"))
	return res.Str("reference")
}

func (r *receiver) totalHits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, h := range r.hits {
		n += h
	}
	return n
}

// stored is an outbox row.
type stored struct {
	Seq                 int64
	ID, Type, ObjectRef string
	Payload             string
}

// outbox reads a mode's events as committed, in outbox order.
func outbox(t *testing.T, env *apptest.Env, livemode bool) []stored {
	t.Helper()
	rows, err := env.App.Store.Conn().Query(context.Background(),
		`SELECT seq, id, type, object_ref, payload FROM events WHERE livemode = $1 ORDER BY seq`, livemode)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []stored
	for rows.Next() {
		var s stored
		if err := rows.Scan(&s.Seq, &s.ID, &s.Type, &s.ObjectRef, &s.Payload); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func newWorker(env *apptest.Env, c *clock, schedule ...time.Duration) *webhook.Worker {
	if schedule == nil {
		schedule = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	return webhook.New(env.App.Store, webhook.Options{Now: c.Now, Schedule: schedule, Timeout: 2 * time.Second, Log: quiet, Keys: env.App.Keys})
}

func runOnce(t *testing.T, w *webhook.Worker) {
	t.Helper()
	if err := w.RunOnce(context.Background()); err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
}

// activity drives the API through the common events of a card's life.
func activity(t *testing.T, env *apptest.Env, sub string) (card, auth string) {
	t.Helper()
	c := env.Client(sub, "US")
	card = c.FundedCard(5000)
	auth = c.Must(201, "POST", "/managed-cards/"+card+"/authorize/", apptest.Purchase(1200)).Str("reference")
	c.Must(200, "POST", "/authorizations/"+auth+"/settle/", nil)
	c.Must(200, "POST", "/managed-cards/"+card+"/freeze/", nil)
	c.Must(200, "POST", "/managed-cards/"+card+"/unfreeze/", nil)
	c.Must(200, "POST", "/managed-cards/"+card+"/withdraw/", map[string]any{"amount": 100})
	return card, auth
}

// sinceSeq keeps the events after seq.
func sinceSeq(events []stored, seq int64) []stored {
	var out []stored
	for _, e := range events {
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out
}

func lastSeq(events []stored) int64 {
	if len(events) == 0 {
		return 0
	}
	return events[len(events)-1].Seq
}

func idsOf(events []stored) []string {
	var ids []string
	for _, e := range events {
		ids = append(ids, e.ID)
	}
	return ids
}

// checkOrderPerObject fails unless, for every object, the receiver
// accepted its events in outbox order (first acceptance of each id counts).
func checkOrderPerObject(t *testing.T, events []stored, got []received) {
	t.Helper()
	seq := map[string]int64{}
	object := map[string]string{}
	for _, e := range events {
		seq[e.ID], object[e.ID] = e.Seq, e.ObjectRef
	}
	last := map[string]int64{}
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g.ID] {
			continue
		}
		seen[g.ID] = true
		o := object[g.ID]
		if seq[g.ID] < last[o] {
			t.Errorf("event %s (%s) about %s arrived after a later event about the same object", g.ID, g.Type, o)
		}
		last[o] = seq[g.ID]
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func TestDeliversEventsSigned(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		c := newClock()
		all, frozenOnly := newReceiver(t, c), newReceiver(t, c)
		before := env.Client("early", "US").NewCard("usd_visa_virtual")
		register(t, env, all, "*")
		register(t, env, frozenOnly, cardrail.EventCardFrozen)
		head := lastSeq(outbox(t, env, false))
		card, auth := activity(t, env, "alice")
		w := newWorker(env, c)
		runOnce(t, w)
		events := sinceSeq(outbox(t, env, false), head)

		t.Run("every event after registration arrives once, signed, with the stored envelope", func(t *testing.T) {
			got := all.got()
			if !slices.Equal(sortedIDs(got), sortedStrings(idsOf(events))) {
				t.Fatalf("received %v, want %v", all.ids(), idsOf(events))
			}
			payload := map[string]string{}
			for _, e := range events {
				payload[e.ID] = e.Payload
			}
			for _, g := range got {
				if string(g.Body) != payload[g.ID] {
					t.Errorf("body of %s is not the stored envelope:\n%s\n%s", g.ID, g.Body, payload[g.ID])
				}
			}
		})
		t.Run("the API's actions produce their event types", func(t *testing.T) {
			var types []string
			for _, g := range all.got() {
				types = append(types, g.Type+" "+g.ObjectRef)
			}
			for _, want := range []string{
				cardrail.EventCardCreated + " " + card, cardrail.EventCardFunded + " " + card,
				cardrail.EventWalletCredited, cardrail.EventWalletDebited,
				cardrail.EventAuthorizationCreated + " " + auth, cardrail.EventAuthorizationUpdated + " " + auth,
				cardrail.EventCardFrozen + " " + card, cardrail.EventCardUnfrozen + " " + card, cardrail.EventCardWithdrawn + " " + card,
			} {
				if !slices.ContainsFunc(types, func(s string) bool { return strings.HasPrefix(s, want) }) {
					t.Errorf("no %s among %v", want, types)
				}
			}
		})
		t.Run("events from before registration are not delivered", func(t *testing.T) {
			for _, g := range all.got() {
				if g.ObjectRef == before {
					t.Fatalf("got %s about %s, created before the endpoint", g.Type, before)
				}
			}
		})
		t.Run("an endpoint gets only the types it subscribed to", func(t *testing.T) {
			got := frozenOnly.got()
			if len(got) != 1 || got[0].Type != cardrail.EventCardFrozen || got[0].ObjectRef != card {
				t.Fatalf("got %v", got)
			}
		})
		t.Run("deliveries are listed as delivered with their attempt", func(t *testing.T) {
			page := env.Client("op", "US", "ops").Must(200, "GET", "/ops/webhook-deliveries/?status=delivered&limit=100", nil)
			var l struct {
				Data []webhook.Delivery
			}
			if err := page.Decode(&l); err != nil {
				t.Fatal(err)
			}
			if len(l.Data) != len(events)+1 {
				t.Fatalf("%d delivered, want %d", len(l.Data), len(events)+1)
			}
			for _, d := range l.Data {
				if d.Status != webhook.DeliveryDelivered || len(d.Attempts) != 1 || d.Attempts[0].StatusCode == nil ||
					*d.Attempts[0].StatusCode != 204 || d.DeliveredAt == nil || d.NextAttemptAt != nil {
					t.Fatalf("delivery %+v", d)
				}
			}
		})
		t.Run("a second run sends nothing again", func(t *testing.T) {
			n := len(all.got())
			runOnce(t, w)
			if len(all.got()) != n {
				t.Fatalf("%d deliveries after a second run, want %d", len(all.got()), n)
			}
		})
	})
}

func sortedIDs(got []received) []string {
	var ids []string
	for _, g := range got {
		ids = append(ids, g.ID)
	}
	return sortedStrings(ids)
}

func sortedStrings(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestRetriesUntilTheReceiverRecovers(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		c := newClock()
		r := newReceiver(t, c)
		register(t, env, r, "*")
		head := lastSeq(outbox(t, env, false))
		r.setMode(failing)
		activity(t, env, "alice")
		activity(t, env, "bob")
		w := newWorker(env, c, 5*time.Second, 30*time.Second, 2*time.Minute, 10*time.Minute)

		runOnce(t, w)
		t.Run("nothing is accepted while the receiver fails", func(t *testing.T) {
			if len(r.got()) != 0 {
				t.Fatalf("accepted %d", len(r.got()))
			}
		})
		t.Run("later events about an object wait for the first one", func(t *testing.T) {
			events := sinceSeq(outbox(t, env, false), head)
			first := map[string]bool{}
			for _, e := range events {
				hits := r.hitsFor(e.ID)
				if !first[e.ObjectRef] {
					first[e.ObjectRef] = true
					if hits != 1 {
						t.Errorf("first event about %s was tried %d times, want 1", e.ObjectRef, hits)
					}
				} else if hits != 0 {
					t.Errorf("%s (%s) was tried %d times while an earlier event about %s was pending", e.ID, e.Type, hits, e.ObjectRef)
				}
			}
		})
		t.Run("a retry waits for its backoff", func(t *testing.T) {
			events := sinceSeq(outbox(t, env, false), head)
			c.Advance(4 * time.Second)
			runOnce(t, w)
			if n := r.hitsFor(events[0].ID); n != 1 {
				t.Fatalf("tried %d times before the 5s backoff elapsed", n)
			}
		})
		c.Advance(3 * time.Second)
		runOnce(t, w)
		r.setMode(hangUp)
		c.Advance(37 * time.Second)
		runOnce(t, w)
		r.setMode(up)
		c.Advance(3 * time.Minute)
		runOnce(t, w)

		events := sinceSeq(outbox(t, env, false), head)
		t.Run("after recovery every event arrives, none lost", func(t *testing.T) {
			if !sameSet(r.ids(), idsOf(events)) {
				t.Fatalf("received %d distinct of %d events", len(slices.Compact(sortedIDs(r.got()))), len(events))
			}
			if n := r.hitsFor(events[0].ID); n != 4 {
				t.Errorf("first event tried %d times, want 4 (500, 500, hang-up, 204)", n)
			}
		})
		t.Run("order per object is preserved", func(t *testing.T) {
			checkOrderPerObject(t, events, r.got())
		})
		t.Run("every attempt is recorded", func(t *testing.T) {
			ops := env.Client("op", "US", "ops")
			var l struct{ Data []webhook.Delivery }
			if err := ops.Must(200, "GET", "/ops/webhook-deliveries/?limit=100", nil).Decode(&l); err != nil {
				t.Fatal(err)
			}
			for _, d := range l.Data {
				if d.Event != events[0].ID {
					continue
				}
				var codes []string
				for _, a := range d.Attempts {
					switch {
					case a.StatusCode != nil:
						codes = append(codes, strconv.Itoa(*a.StatusCode))
					case a.Error != nil && *a.Error != "":
						codes = append(codes, "error")
					}
				}
				if strings.Join(codes, ",") != "500,500,error,204" || d.Status != webhook.DeliveryDelivered {
					t.Fatalf("attempts %v, status %s", codes, d.Status)
				}
				return
			}
			t.Fatal("the first event's delivery is not listed")
		})
	})
}

func TestDeliversEventsCommittedBeforeACrash(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		c := newClock()
		r := newReceiver(t, c)
		var head int64
		var want []string
		t.Run("a process commits events and stops without running its worker", func(t *testing.T) {
			// The application closes with this subtest; the database stays.
			first := apptest.New(t, url)
			register(t, first, r, "*")
			head = lastSeq(outbox(t, first, false))
			activity(t, first, "alice")
			want = idsOf(sinceSeq(outbox(t, first, false), head))
			if len(r.got()) != 0 || len(want) == 0 {
				t.Fatalf("received %d, %d events", len(r.got()), len(want))
			}
		})

		second := apptest.New(t, url)
		t.Run("a new process delivers them", func(t *testing.T) {
			runOnce(t, newWorker(second, c))
			if !sameSet(r.ids(), want) || len(r.got()) != len(want) {
				t.Fatalf("received %d, want %d", len(r.got()), len(want))
			}
		})
		t.Run("a claim whose worker died is taken over when its lease expires", func(t *testing.T) {
			activity(t, second, "bob")
			// A worker dispatches and claims, then dies before sending.
			claimDispatchedWithoutSending(t, second, c)
			n := len(r.got())
			live := newWorker(second, c)
			runOnce(t, live)
			if len(r.got()) != n {
				t.Fatalf("a leased delivery was sent before its lease expired")
			}
			c.Advance(61 * time.Second)
			runOnce(t, live)
			all := idsOf(sinceSeq(outbox(t, second, false), head))
			if !sameSet(r.ids(), all) {
				t.Fatalf("received %d distinct, want %d", len(slices.Compact(sortedIDs(r.got()))), len(all))
			}
		})
	})
}

// claimDispatchedWithoutSending plays a worker that crashes after claiming:
// it dispatches through the store and leases due deliveries, then stops.
func claimDispatchedWithoutSending(t *testing.T, env *apptest.Env, c *clock) {
	t.Helper()
	ctx := context.Background()
	st := env.App.Store
	err := st.WebhookTx(ctx, func(tx webhook.Tx) error {
		events, err := tx.TakeEvents(ctx, 1000)
		if err != nil {
			return err
		}
		eps, err := tx.WebhookSubscribers(ctx)
		if err != nil {
			return err
		}
		now := c.Now()
		for _, e := range events {
			for _, ep := range eps {
				if ep.Livemode == e.Livemode && e.Seq > ep.AfterSeq && ep.Subscribes(e.Type) {
					if err := tx.InsertWebhookDelivery(ctx, &webhook.Delivery{Reference: cardrail.NewReference(cardrail.PrefixDelivery),
						Endpoint: ep.Reference, Event: e.ID, EventType: e.Type, ObjectRef: e.ObjectRef, EventSeq: e.Seq,
						Status: webhook.DeliveryPending, NextAttemptAt: &now, Livemode: e.Livemode, CreatedAt: now, UpdatedAt: now}); err != nil {
						return err
					}
				}
			}
		}
		claims, err := tx.ClaimWebhookDeliveries(ctx, now, now.Add(time.Minute), "dead-worker", 1000, nil)
		if err == nil && len(claims) == 0 {
			err = errors.New("nothing claimed")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTwoInstancesSendEachEventOnce(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		c := newClock()
		r := newReceiver(t, c)
		a, b := apptest.New(t, url), apptest.New(t, url)
		register(t, a, r, "*")
		head := lastSeq(outbox(t, a, false))
		workers := []*webhook.Worker{newWorker(a, c), newWorker(b, c), newWorker(a, c), newWorker(b, c)}

		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, w := range workers {
			wg.Go(func() {
				for ctx.Err() == nil {
					if err := w.RunOnce(ctx); err != nil && ctx.Err() == nil {
						t.Errorf("RunOnce: %v", err)
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			})
		}
		var producers sync.WaitGroup
		for i, env := range []*apptest.Env{a, b, a} {
			producers.Go(func() { activity(t, env, fmt.Sprintf("holder%d", i)) })
		}
		producers.Wait()
		want := idsOf(sinceSeq(outbox(t, a, false), head))
		deadline := time.Now().Add(15 * time.Second)
		for len(r.got()) < len(want) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // room for a duplicate to show up
		stop()
		wg.Wait()

		t.Run("every event arrives exactly once", func(t *testing.T) {
			count := map[string]int{}
			for _, id := range r.ids() {
				count[id]++
			}
			for _, id := range want {
				if count[id] != 1 {
					t.Errorf("event %s arrived %d times", id, count[id])
				}
			}
			if len(r.got()) != len(want) {
				t.Errorf("%d deliveries for %d events", len(r.got()), len(want))
			}
		})
		t.Run("order per object is preserved", func(t *testing.T) {
			checkOrderPerObject(t, sinceSeq(outbox(t, a, false), head), r.got())
		})
	})
}

func TestFailedAfterTheScheduleAndReplayed(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		ops := env.Client("op", "US", "ops")
		c := newClock()
		r := newReceiver(t, c)
		endpoint := register(t, env, r, cardrail.EventCardCreated, cardrail.EventCardFrozen)
		r.setMode(failing)
		alice := env.Client("alice", "US")
		card := alice.NewCard("usd_visa_virtual")
		alice.Must(200, "POST", "/managed-cards/"+card+"/freeze/", nil)
		w := newWorker(env, c, time.Second, 2*time.Second)
		runOnce(t, w)
		t.Run("a delivery queued behind a failing one says it waits", func(t *testing.T) {
			// Rather than look due and stuck: no attempts, next_attempt_at past.
			var d struct{ Data []webhook.Delivery }
			if err := ops.Must(200, "GET", "/ops/webhook-deliveries/?endpoint="+endpoint, nil).Decode(&d); err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, x := range d.Data {
				got[x.EventType+" "+string(x.Status)] = x.WaitingForEarlier
			}
			if want := map[string]bool{cardrail.EventCardCreated + " pending": false, cardrail.EventCardFrozen + " pending": true}; !maps.Equal(got, want) {
				t.Fatalf("waiting_for_earlier by delivery: %v, want %v", got, want)
			}
		})
		c.Advance(3 * time.Second)
		for range 2 {
			runOnce(t, w)
			c.Advance(3 * time.Second)
		}
		var failed struct{ Data []webhook.Delivery }
		if err := ops.Must(200, "GET", "/ops/webhook-deliveries/?status=failed&endpoint="+endpoint, nil).Decode(&failed); err != nil {
			t.Fatal(err)
		}
		t.Run("the delivery fails after the last scheduled retry", func(t *testing.T) {
			if len(failed.Data) != 1 {
				t.Fatalf("%d failed deliveries, want 1", len(failed.Data))
			}
			d := failed.Data[0]
			if d.EventType != cardrail.EventCardCreated || len(d.Attempts) != 3 || d.AttemptCount != 3 || d.NextAttemptAt != nil {
				t.Fatalf("failed delivery %+v", d)
			}
		})
		t.Run("the next event about the object goes ahead once the earlier one failed", func(t *testing.T) {
			var pending struct{ Data []webhook.Delivery }
			ops.Must(200, "GET", "/ops/webhook-deliveries/?status=pending", nil).Decode(&pending)
			if len(pending.Data) != 1 || pending.Data[0].EventType != cardrail.EventCardFrozen || len(pending.Data[0].Attempts) != 1 {
				t.Fatalf("pending %+v", pending.Data)
			}
		})
		r.setMode(up)
		ref := failed.Data[0].Reference
		t.Run("replay queues it again and it is delivered", func(t *testing.T) {
			// The replay fails at first: the later event of the same object,
			// which had waited for the original, does not wait for the replay.
			r.refuseEvent(failed.Data[0].Event, true)
			res := ops.Must(200, "POST", "/ops/webhook-deliveries/"+ref+"/replay/", nil)
			if res.Str("status") != "pending" || res.Int("attempt_count") != 0 {
				t.Fatalf("replayed: %s", res.Body)
			}
			// Replayed again while still pending, it stays a replay.
			ops.Must(200, "POST", "/ops/webhook-deliveries/"+ref+"/replay/", nil)
			c.Advance(3 * time.Second) // the frozen event's next retry is due
			runOnce(t, w)
			if got := r.got(); len(got) != 1 || got[0].Type != cardrail.EventCardFrozen {
				t.Fatalf("while the replay fails, received %v; want the frozen event", got)
			}
			r.refuseEvent(failed.Data[0].Event, false)
			c.Advance(3 * time.Second)
			runOnce(t, w)
			var d struct{ Data []webhook.Delivery }
			ops.Must(200, "GET", "/ops/webhook-deliveries/?endpoint="+endpoint, nil).Decode(&d)
			for _, x := range d.Data {
				if x.Reference == ref && (x.Status != webhook.DeliveryDelivered || len(x.Attempts) != 5) || x.WaitingForEarlier {
					t.Fatalf("after replay: %+v", x)
				}
			}
			var types []string
			for _, g := range r.got() {
				types = append(types, g.Type)
			}
			if strings.Join(types, ",") != cardrail.EventCardFrozen+","+cardrail.EventCardCreated {
				t.Fatalf("received %v", types)
			}
		})
		t.Run("replaying an unknown delivery is 404", func(t *testing.T) {
			ops.Must(404, "POST", "/ops/webhook-deliveries/"+cardrail.NewReference(cardrail.PrefixDelivery)+"/replay/", nil)
		})
		t.Run("deleting the endpoint fails its pending deliveries", func(t *testing.T) {
			r.setMode(failing)
			alice.NewCard("usd_visa_virtual")
			runOnce(t, w)
			var pending struct{ Data []webhook.Delivery }
			ops.Must(200, "GET", "/ops/webhook-deliveries/?status=pending", nil).Decode(&pending)
			if len(pending.Data) != 1 {
				t.Fatalf("pending before delete: %+v", pending.Data)
			}
			ops.Must(200, "DELETE", "/ops/webhook-endpoints/"+endpoint+"/", nil)
			pending.Data = nil
			ops.Must(200, "GET", "/ops/webhook-deliveries/?status=pending", nil).Decode(&pending)
			if len(pending.Data) != 0 {
				t.Fatalf("still pending: %+v", pending.Data)
			}
			if r := ops.Do("POST", "/ops/webhook-deliveries/"+ref+"/replay/", nil); r.Status != 409 {
				t.Fatalf("replay after delete: %d %s", r.Status, r.Body)
			}
		})
	})
}

// TestAttemptsAndBacklog: what metrics read from a worker, its attempts by
// outcome and the pending deliveries, follows each attempt.
func TestAttemptsAndBacklog(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		c := newClock()
		r := newReceiver(t, c)
		register(t, env, r, cardrail.EventCardCreated)
		w := newWorker(env, c, time.Second)
		alice := env.Client("alice", "US")
		want := func(delivered, retry, failed, backlog int64) {
			t.Helper()
			got := w.Attempts()
			if got[webhook.AttemptDelivered] != delivered || got[webhook.AttemptRetryScheduled] != retry ||
				got[webhook.AttemptFailed] != failed || got[webhook.AttemptUnrecorded] != 0 || len(got) != len(webhook.AttemptOutcomes) {
				t.Errorf("attempts %v, want delivered %d, retry_scheduled %d, failed %d", got, delivered, retry, failed)
			}
			for livemode, want := range map[bool]int64{false: backlog, true: 0} {
				if n, err := w.Backlog(context.Background(), livemode); err != nil || n != want {
					t.Errorf("backlog (livemode %v) = %d, %v; want %d", livemode, n, err, want)
				}
			}
		}
		t.Run("a failed attempt schedules a retry and the delivery stays pending", func(t *testing.T) {
			r.setMode(failing)
			alice.NewCard("usd_visa_virtual")
			want(0, 0, 0, 0) // not dispatched yet
			runOnce(t, w)
			want(0, 1, 0, 1)
		})
		t.Run("the schedule's last attempt fails the delivery and leaves the backlog", func(t *testing.T) {
			c.Advance(2 * time.Second)
			runOnce(t, w)
			want(0, 1, 1, 0)
		})
		t.Run("a delivered attempt", func(t *testing.T) {
			r.setMode(up)
			alice.NewCard("usd_visa_virtual")
			runOnce(t, w)
			want(1, 1, 1, 0)
		})
	})
}

// TestEndpointDeletedMidAttempt: an endpoint deleted while an attempt to
// it is in flight. The delete fails the delivery; the worker then stores
// the attempt on it and counts it as endpoint_deleted, not as a lost lease
// (whose delivery would be sent again).
func TestEndpointDeletedMidAttempt(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		ops := env.Client("op", "US", "ops")
		c := newClock()
		r := newReceiver(t, c)
		endpoint := register(t, env, r, cardrail.EventCardCreated)
		r.arrived, r.release = make(chan struct{}), make(chan struct{})
		r.setMode(held)
		var logs apptest.SyncBuffer
		w := webhook.New(env.App.Store, webhook.Options{Now: c.Now, Schedule: []time.Duration{time.Second},
			Timeout: 5 * time.Second, Log: slog.New(slog.NewTextHandler(&logs, nil)), Keys: env.App.Keys})
		env.Client("alice", "US").NewCard("usd_visa_virtual")
		done := make(chan error, 1)
		go func() { done <- w.RunOnce(context.Background()) }()
		select {
		case <-r.arrived:
		case err := <-done:
			t.Fatalf("RunOnce returned before the attempt arrived: %v", err)
		}
		ops.Must(200, "DELETE", "/ops/webhook-endpoints/"+endpoint+"/", nil)
		close(r.release)
		if err := <-done; err != nil {
			t.Fatalf("RunOnce: %v", err)
		}
		got := w.Attempts()
		if got[webhook.AttemptEndpointDeleted] != 1 || got[webhook.AttemptUnrecorded] != 0 || got[webhook.AttemptDelivered] != 0 {
			t.Errorf("attempts %v, want one endpoint_deleted", got)
		}
		if out := logs.String(); strings.Contains(out, "lease lost") || !strings.Contains(out, "endpoint deleted") {
			t.Errorf("log:\n%s", out)
		}
		var d struct{ Data []webhook.Delivery }
		ops.Must(200, "GET", "/ops/webhook-deliveries/?endpoint="+endpoint, nil).Decode(&d)
		if len(d.Data) != 1 || d.Data[0].Status != webhook.DeliveryFailed || len(d.Data[0].Attempts) != 1 ||
			d.Data[0].Attempts[0].StatusCode == nil || *d.Data[0].Attempts[0].StatusCode != http.StatusNoContent {
			t.Fatalf("deliveries %+v", d.Data)
		}
		c.Advance(time.Minute)
		runOnce(t, w)
		if n := r.totalHits(); n != 1 {
			t.Errorf("the endpoint got %d requests, want the one", n)
		}
	})
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		c := newClock()
		target := newReceiver(t, c)
		redirect := httptest.NewServer(http.RedirectHandler(target.URL(), http.StatusTemporaryRedirect))
		t.Cleanup(redirect.Close)
		registerURL(t, env, target, redirect.URL+"/hooks", cardrail.EventCardCreated)
		env.Client("alice", "US").NewCard("usd_visa_virtual")
		runOnce(t, newWorker(env, c))
		var l struct{ Data []webhook.Delivery }
		env.Client("op", "US", "ops").Must(200, "GET", "/ops/webhook-deliveries/", nil).Decode(&l)
		t.Run("a 3xx is a failed attempt and the target is never called", func(t *testing.T) {
			if len(l.Data) != 1 || l.Data[0].Status != webhook.DeliveryPending || len(l.Data[0].Attempts) != 1 ||
				l.Data[0].Attempts[0].StatusCode == nil || *l.Data[0].Attempts[0].StatusCode != http.StatusTemporaryRedirect {
				t.Fatalf("deliveries %+v", l.Data)
			}
			if n := target.totalHits(); n != 0 {
				t.Fatalf("the redirect target was called %d times", n)
			}
		})
	})
}

// fakeResolver answers every lookup with one address, as a DNS server
// would before re-pointing a name.
type fakeResolver netip.Addr

func (f fakeResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.Addr(f)}, nil
}

func TestProductionConnectionsToPrivateAddressesAreRefused(t *testing.T) {
	testdb.Each(t, func(t *testing.T, url string) {
		env := apptest.New(t, url)
		c := newClock()
		r := newReceiver(t, c)
		tls := httptest.NewTLSServer(r)
		t.Cleanup(tls.Close)
		ctx := context.Background()
		operator := cardrail.Caller{Subject: "op", Roles: []string{cardrail.RoleOps}, Livemode: true}
		// At registration the name resolves to a public address; by delivery
		// time it points at loopback (DNS rebinding).
		_, port, _ := strings.Cut(strings.TrimPrefix(tls.URL, "https://"), ":")
		w := webhook.New(env.App.Store, webhook.Options{Now: c.Now, Resolver: fakeResolver(netip.MustParseAddr("93.184.216.34")), Log: quiet, Keys: env.App.Keys})
		ep, err := w.CreateEndpoint(ctx, operator, webhook.EndpointParams{URL: "https://localhost:" + port + "/hooks", Events: []string{"*"}}, "req_test")
		if err != nil {
			t.Fatalf("register: %v", err)
		}
		r.setSecret(ep.Secret)
		ev, _ := cardrail.NewEvent(cardrail.EventCardUpdated, true, "card_x", map[string]string{"reference": "card_x"}, time.Now())
		if err := env.App.Store.Tx(ctx, func(tx cardrail.Tx) error { return tx.InsertEvent(ctx, &ev) }); err != nil {
			t.Fatal(err)
		}
		runOnce(t, w)
		t.Run("the connect-time check refuses the re-pointed name", func(t *testing.T) {
			if r.totalHits() != 0 {
				t.Fatalf("the receiver was reached")
			}
			p, err := env.App.Store.WebhookDeliveries(ctx, webhook.DeliveryFilter{Livemode: true, ListParams: cardrail.ListParams{Limit: 10}})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Data) != 1 || len(p.Data[0].Attempts) != 1 || p.Data[0].Attempts[0].Error == nil ||
				!strings.Contains(*p.Data[0].Attempts[0].Error, "not a public address") {
				t.Fatalf("deliveries %+v", p.Data)
			}
		})
	})
}

// insertEvent writes an outbox row about object in q, as the issuing
// service's transactions do.
func insertEvent(t *testing.T, ctx context.Context, q interface {
	Exec(ctx context.Context, query string, args ...any) (int64, error)
}, object string) string {
	t.Helper()
	e, err := cardrail.NewEvent(cardrail.EventCardUpdated, false, object, map[string]string{"reference": object}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(e)
	if _, err := q.Exec(ctx, `INSERT INTO events (id, type, livemode, object_ref, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		e.ID, e.Type, e.Livemode, e.ObjectRef, string(payload), e.CreatedAt.UnixMicro()); err != nil {
		t.Fatal(err)
	}
	return e.ID
}

// TestOutOfOrderCommitsOnPostgres covers what only PostgreSQL does: a
// transaction takes its event's sequence number at insert and may commit
// after a later one, or roll back and leave a gap.
func TestOutOfOrderCommitsOnPostgres(t *testing.T) {
	url := testdb.URL(t, "postgres")
	env := apptest.New(t, url)
	c := newClock()
	r := newReceiver(t, c)
	register(t, env, r, "*")
	w := newWorker(env, c)
	ctx := context.Background()
	conn := env.App.Store.Conn()

	t.Run("an event committed after a later one is still delivered, first", func(t *testing.T) {
		slow, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		early := insertEvent(t, ctx, slow, "card_a")
		late := insertEvent(t, ctx, conn, "card_a")
		runOnce(t, w)
		if got := r.ids(); len(got) != 0 {
			_ = slow.Rollback(ctx)
			t.Fatalf("delivered %v past an uncommitted earlier event", got)
		}
		if err := slow.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		runOnce(t, w)
		if got := r.ids(); !slices.Equal(got, []string{early, late}) {
			t.Fatalf("received %v, want %v", got, []string{early, late})
		}
	})
	t.Run("a gap left by a rollback is passed", func(t *testing.T) {
		doomed, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		insertEvent(t, ctx, doomed, "card_b")
		if err := doomed.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		after := insertEvent(t, ctx, conn, "card_b")
		// Other transactions on the server may hold the gap open briefly.
		for deadline := time.Now().Add(10 * time.Second); !slices.Contains(r.ids(), after) && time.Now().Before(deadline); {
			runOnce(t, w)
			time.Sleep(20 * time.Millisecond)
		}
		if !slices.Contains(r.ids(), after) {
			t.Fatalf("the event after the gap was never delivered")
		}
	})
}
