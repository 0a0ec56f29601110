package sqlstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cardrail/cardrail"
	"github.com/cardrail/cardrail/webhook"
)

var _ webhook.Store = (*Store)(nil)
var _ webhook.Tx = (*tx)(nil)

// WebhookTx implements webhook.Store: fn runs in a transaction of Tx, with
// its retries.
func (s *Store) WebhookTx(ctx context.Context, fn func(webhook.Tx) error) error {
	return s.Tx(ctx, func(t cardrail.Tx) error { return fn(t.(*tx)) })
}

// skipLocked is appended to queue reads: rows another transaction holds are
// passed over instead of waited for. SQLite's write transaction already
// holds the whole database.
func (q *queries) skipLocked() string {
	if q.d.ForUpdate == "" {
		return ""
	}
	return q.d.ForUpdate + " SKIP LOCKED"
}

// gapGrace is the least time a gap in the outbox is waited for.
const gapGrace = time.Second

// afterOutboxRead, when set (by tests), runs between TakeEvents' read of
// the events and its decisions about gaps.
var afterOutboxRead func()

// TakeEvents implements webhook.Tx.
//
// On PostgreSQL, sequence numbers are handed out when events are inserted,
// not when their transactions commit, so a committed event may follow a gap
// left by a transaction still running; moving the cursor past that gap would
// lose its event. The cursor therefore stops at a gap and notes a horizon:
// the transaction id that every transaction running now is below. Once the
// oldest running transaction is past the horizon, everything that held a
// sequence number in the gap has ended, and whatever is still missing was
// rolled back. (A transaction takes its sequence number a moment before its
// transaction id, so the horizon is also given gapGrace to age.) SQLite
// commits one transaction at a time and reads here under the write lock, so
// a gap there is always final.
func (q *queries) TakeEvents(ctx context.Context, limit int) ([]webhook.OutboxEvent, error) {
	var last int64
	var horizonSeq, horizonXid, horizonAt *int64
	err := q.q.QueryRow(ctx, `SELECT last_seq, horizon_seq, horizon_xid, horizon_at FROM webhook_dispatch WHERE id = 1`+q.skipLocked()).
		Scan(&last, &horizonSeq, &horizonXid, &horizonAt)
	if notFound(err) {
		return nil, nil // another dispatcher holds the cursor
	}
	if err != nil {
		return nil, fmt.Errorf("dispatch cursor: %w", err)
	}
	// The snapshot's xmin is read by the statement that reads the events,
	// under the same snapshot: every transaction below it had ended when
	// the events were read, so whatever event it wrote is among them. Read
	// afterwards, it could pass a transaction that committed its event
	// between the two reads, and the gap that event filled would be taken
	// for a rollback and skipped.
	gapsFinal := q.d.Name != "postgres"
	xminColumn := "0"
	if !gapsFinal {
		xminColumn = "(SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint)"
	}
	var snapXmin int64
	rows, err := q.q.Query(ctx, `SELECT seq, id, type, livemode, object_ref, `+xminColumn+` FROM events WHERE seq > $1 ORDER BY seq LIMIT $2`, last, limit)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	events, err := collect(rows, func(r Row) (*webhook.OutboxEvent, error) {
		var e webhook.OutboxEvent
		return &e, r.Scan(&e.Seq, &e.ID, &e.Type, &e.Livemode, &e.ObjectRef, &snapXmin)
	})
	if afterOutboxRead != nil {
		afterOutboxRead()
	}
	if err != nil || len(events) == 0 {
		return nil, err
	}
	horizonMoved := false
	var out []webhook.OutboxEvent
	for _, e := range events {
		if e.Seq != last+1 && !gapsFinal {
			if horizonSeq == nil || e.Seq > *horizonSeq {
				// A new gap: remember who might still fill it, and wait.
				var x int64
				if err := q.q.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&x); err != nil {
					return nil, fmt.Errorf("snapshot horizon: %w", err)
				}
				seq, at := events[len(events)-1].Seq, micros(q.now())
				horizonSeq, horizonXid, horizonAt, horizonMoved = &seq, &x, &at, true
				break
			}
			if snapXmin < *horizonXid || horizonAt == nil || q.now().Sub(fromMicros(*horizonAt)) < gapGrace {
				break // a transaction that may fill the gap may still be running
			}
		}
		out = append(out, e)
		last = e.Seq
	}
	if len(out) > 0 || horizonMoved {
		if _, err := q.q.Exec(ctx, `UPDATE webhook_dispatch SET last_seq = $1, horizon_seq = $2, horizon_xid = $3, horizon_at = $4
			WHERE id = 1`, last, horizonSeq, horizonXid, horizonAt); err != nil {
			return nil, fmt.Errorf("advance dispatch cursor: %w", err)
		}
	}
	return out, nil
}

const endpointSelect = `SELECT reference, livemode, url, events, after_seq, created_at FROM webhook_endpoints`

func scanEndpoint(r Row) (*webhook.Endpoint, error) {
	var e webhook.Endpoint
	var events string
	var created int64
	if err := r.Scan(&e.Reference, &e.Livemode, &e.URL, &events, &e.AfterSeq, &created); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(events), &e.Events); err != nil {
		return nil, fmt.Errorf("webhook endpoint %s: %w", e.Reference, err)
	}
	e.Object = webhook.ObjectEndpoint
	e.CreatedAt = fromMicros(created)
	return &e, nil
}

// WebhookEndpoints implements webhook.Store.
func (q *queries) WebhookEndpoints(ctx context.Context, livemode bool) ([]webhook.Endpoint, error) {
	rows, err := q.q.Query(ctx, endpointSelect+` WHERE livemode = $1 ORDER BY reference DESC`, livemode)
	if err != nil {
		return nil, fmt.Errorf("webhook endpoints: %w", err)
	}
	es, err := collect(rows, scanEndpoint)
	return nonNil(es), err
}

// WebhookSubscribers implements webhook.Tx.
func (q *queries) WebhookSubscribers(ctx context.Context) ([]webhook.Endpoint, error) {
	rows, err := q.q.Query(ctx, endpointSelect+` ORDER BY reference`)
	if err != nil {
		return nil, fmt.Errorf("webhook endpoints: %w", err)
	}
	return collect(rows, scanEndpoint)
}

// WebhookEndpoint implements webhook.Tx.
func (q *queries) WebhookEndpoint(ctx context.Context, livemode bool, ref string) (*webhook.Endpoint, error) {
	return scanEndpoint(q.q.QueryRow(ctx, endpointSelect+` WHERE livemode = $1 AND reference = $2`, livemode, ref))
}

// lockDispatch takes the dispatch cursor's row and returns its position.
// A dispatcher holds it for the whole of its transaction, from reading the
// events to queueing their deliveries, so a change to the endpoints made
// under it falls wholly before or wholly after a dispatcher's pass.
func (q *queries) lockDispatch(ctx context.Context) (int64, error) {
	var last int64
	if err := q.q.QueryRow(ctx, `SELECT last_seq FROM webhook_dispatch WHERE id = 1`+q.d.ForUpdate).Scan(&last); err != nil {
		return 0, fmt.Errorf("dispatch cursor: %w", err)
	}
	return last, nil
}

// InsertWebhookEndpoint implements webhook.Tx. Holding the dispatch cursor
// while reading the outbox keeps a dispatcher from taking an event between
// the two, which the endpoint would then miss.
//
// On PostgreSQL an event may be visible neither to this read nor to the
// dispatcher yet, its transaction still running, while events after it have
// committed: its sequence number is a gap. Such an event commits after the
// endpoint, so AfterSeq stops below the first gap past the cursor. Events
// after that gap that had committed already are delivered too: never one
// committed after the endpoint missed, but some committed before it that
// no endpoint had been sent yet. Normally that is the last moment's; while
// the dispatcher waits to rule a gap a rolled-back transaction left (until
// every transaction older than it has ended), it is every event after the
// gap. (Below the cursor no gap can fill any more; see TakeEvents.)
func (q *queries) InsertWebhookEndpoint(ctx context.Context, e *webhook.Endpoint) error {
	last, err := q.lockDispatch(ctx)
	if err != nil {
		return err
	}
	if q.d.Name != "postgres" {
		err = q.q.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM events`).Scan(&e.AfterSeq)
	} else {
		err = q.q.QueryRow(ctx, `SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM events WHERE seq = $1::bigint + 1) THEN $1::bigint
			ELSE (SELECT e.seq FROM events e WHERE e.seq > $1::bigint
				AND NOT EXISTS (SELECT 1 FROM events n WHERE n.seq = e.seq + 1) ORDER BY e.seq LIMIT 1) END`, last).Scan(&e.AfterSeq)
	}
	if err != nil {
		return fmt.Errorf("outbox head: %w", err)
	}
	events, err := json.Marshal(e.Events)
	if err != nil {
		return err
	}
	_, err = q.q.Exec(ctx, `INSERT INTO webhook_endpoints (reference, livemode, url, events, secret, after_seq, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.Reference, e.Livemode, e.URL, string(events), e.Secret, e.AfterSeq, micros(e.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert webhook endpoint: %w", err)
	}
	return nil
}

// DeleteWebhookEndpoint implements webhook.Tx.
//
// It holds the dispatch cursor: a dispatcher that read the endpoints before
// the delete committed could otherwise queue deliveries to the endpoint
// after it, which nothing would ever send or fail.
func (q *queries) DeleteWebhookEndpoint(ctx context.Context, livemode bool, ref string, now time.Time) (*webhook.Endpoint, error) {
	if _, err := q.lockDispatch(ctx); err != nil {
		return nil, err
	}
	e, err := scanEndpoint(q.q.QueryRow(ctx, endpointSelect+` WHERE livemode = $1 AND reference = $2`+q.d.ForUpdate, livemode, ref))
	if err != nil {
		return nil, err
	}
	if _, err := q.q.Exec(ctx, `DELETE FROM webhook_endpoints WHERE reference = $1`, ref); err != nil {
		return nil, fmt.Errorf("delete webhook endpoint: %w", err)
	}
	if _, err := q.q.Exec(ctx, `UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, lease_until = NULL,
		lease_token = NULL, head = FALSE, updated_at = $2 WHERE endpoint = $1 AND status = 'pending'`, ref, micros(now)); err != nil {
		return nil, fmt.Errorf("fail deliveries of %s: %w", ref, err)
	}
	return e, nil
}

// queueHead selects the head of the queue of endpoint $1 and object $2:
// its first pending delivery that is not a replay.
const queueHead = `SELECT reference FROM webhook_deliveries WHERE endpoint = $1 AND object_ref = $2
	AND status = 'pending' AND replayed = FALSE ORDER BY event_seq LIMIT 1`

// InsertWebhookDelivery implements webhook.Tx. The dispatcher queues
// deliveries in outbox order, so d is the last of its (endpoint, object)
// queue, and its head if the queue was empty. On PostgreSQL the head found
// is locked: a worker finishing it at the same moment either commits first
// (the lock waits, the finished head is passed over and d becomes the head)
// or waits for this transaction and then hands the head on to d.
func (q *queries) InsertWebhookDelivery(ctx context.Context, d *webhook.Delivery) error {
	_, err := q.q.Exec(ctx, `WITH earlier AS (`+queueHead+q.d.ForUpdate+`)
		INSERT INTO webhook_deliveries (reference, livemode, endpoint, event_id, event_seq, event_type,
		object_ref, status, attempt_count, next_attempt_at, created_at, updated_at, head)
		SELECT $3, $4, $1, $5, $6, $7, $2, $8, 0, $9, $10, $11, NOT EXISTS (SELECT 1 FROM earlier) WHERE TRUE
		ON CONFLICT (endpoint, event_id) DO NOTHING`,
		d.Endpoint, d.ObjectRef, d.Reference, d.Livemode, d.Event, d.EventSeq, d.EventType, string(d.Status),
		microsOrNil(d.NextAttemptAt), micros(d.CreatedAt), micros(d.UpdatedAt))
	if err != nil {
		return fmt.Errorf("insert webhook delivery: %w", err)
	}
	return nil
}

// ClaimWebhookDeliveries implements webhook.Tx. Only heads of their
// queues are claimed, and replays with no earlier delivery of their object
// pending: both sets are read through their own partial indexes, so a
// claim's cost does not grow with the deliveries waiting behind a head.
func (q *queries) ClaimWebhookDeliveries(ctx context.Context, now, leaseUntil time.Time, token string, limit int, skip []string) ([]webhook.Claim, error) {
	due := ` AND d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until <= $1)`
	args := []any{micros(now), limit}
	if len(skip) > 0 {
		in, endpoints := refList(skip, 3)
		due += ` AND d.endpoint NOT IN (` + in + `)`
		args = append(args, endpoints...)
	}
	type candidate struct {
		ref       string
		next, seq int64
	}
	var found []candidate
	for _, query := range []string{
		`SELECT d.reference, d.next_attempt_at, d.event_seq FROM webhook_deliveries d
		WHERE d.status = 'pending' AND d.head` + due,
		`SELECT d.reference, d.next_attempt_at, d.event_seq FROM webhook_deliveries d
		WHERE d.status = 'pending' AND d.replayed` + due + `
		AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint = d.endpoint AND p.object_ref = d.object_ref
			AND p.status = 'pending' AND p.replayed = FALSE AND p.event_seq < d.event_seq)`,
	} {
		rows, err := q.q.Query(ctx, query+` ORDER BY d.next_attempt_at, d.event_seq LIMIT $2`+q.skipLocked(), args...)
		if err != nil {
			return nil, fmt.Errorf("due webhook deliveries: %w", err)
		}
		more, err := collect(rows, func(r Row) (*candidate, error) {
			var c candidate
			return &c, r.Scan(&c.ref, &c.next, &c.seq)
		})
		if err != nil {
			return nil, fmt.Errorf("due webhook deliveries: %w", err)
		}
		found = append(found, more...)
	}
	slices.SortFunc(found, func(a, b candidate) int { return cmp.Or(cmp.Compare(a.next, b.next), cmp.Compare(a.seq, b.seq)) })
	refs := make([]string, 0, min(len(found), limit))
	for _, c := range found[:min(len(found), limit)] {
		refs = append(refs, c.ref)
	}
	if len(refs) == 0 {
		return nil, nil
	}
	in, args := refList(refs, 3)
	if _, err := q.q.Exec(ctx, `UPDATE webhook_deliveries SET lease_until = $1, lease_token = $2 WHERE reference IN (`+in+`)`,
		append([]any{micros(leaseUntil), token}, args...)...); err != nil {
		return nil, fmt.Errorf("lease webhook deliveries: %w", err)
	}
	in1, args1 := refList(refs, 1)
	rows, err := q.q.Query(ctx, `SELECT d.reference, d.livemode, d.endpoint, d.event_id, d.attempt_count, e.url, e.secret, ev.payload
		FROM webhook_deliveries d
		JOIN webhook_endpoints e ON e.reference = d.endpoint
		JOIN events ev ON ev.id = d.event_id
		WHERE d.reference IN (`+in1+`) ORDER BY d.event_seq`, args1...)
	if err != nil {
		return nil, fmt.Errorf("claimed webhook deliveries: %w", err)
	}
	return collect(rows, func(r Row) (*webhook.Claim, error) {
		var c webhook.Claim
		var payload string
		if err := r.Scan(&c.Delivery, &c.Livemode, &c.Endpoint, &c.EventID, &c.AttemptCount, &c.URL, &c.Secret, &payload); err != nil {
			return nil, err
		}
		c.Payload = []byte(payload)
		return &c, nil
	})
}

// WebhookSecretsOutside implements webhook.Tx.
func (q *queries) WebhookSecretsOutside(ctx context.Context, prefix string) ([]webhook.StoredSecret, error) {
	rows, err := q.q.Query(ctx, `SELECT reference, secret FROM webhook_endpoints
		WHERE substr(secret, 1, $1) <> $2 ORDER BY reference`, len(prefix), prefix)
	if err != nil {
		return nil, fmt.Errorf("webhook secrets to seal: %w", err)
	}
	return collect(rows, func(r Row) (*webhook.StoredSecret, error) {
		var s webhook.StoredSecret
		return &s, r.Scan(&s.Endpoint, &s.Secret)
	})
}

// ReplaceWebhookSecret implements webhook.Tx.
func (q *queries) ReplaceWebhookSecret(ctx context.Context, endpoint, prev, next string) (bool, error) {
	n, err := q.q.Exec(ctx, `UPDATE webhook_endpoints SET secret = $3 WHERE reference = $1 AND secret = $2`, endpoint, prev, next)
	if err != nil {
		return false, fmt.Errorf("replace webhook secret: %w", err)
	}
	return n == 1, nil
}

// ReleaseWebhookLease implements webhook.Tx.
func (q *queries) ReleaseWebhookLease(ctx context.Context, delivery, token string) error {
	if _, err := q.q.Exec(ctx, `UPDATE webhook_deliveries SET lease_until = NULL, lease_token = NULL
		WHERE reference = $1 AND lease_token = $2`, delivery, token); err != nil {
		return fmt.Errorf("release webhook delivery: %w", err)
	}
	return nil
}

// RecordWebhookAttempt implements webhook.Tx. A head that finishes hands
// its place on to the next pending delivery of its queue, read in a
// statement of its own so that it sees a delivery the dispatcher queued
// behind it while this transaction waited for the dispatcher's lock.
func (q *queries) RecordWebhookAttempt(ctx context.Context, delivery, token string, a webhook.Attempt, o webhook.Outcome) (bool, error) {
	if _, err := q.q.Exec(ctx, `INSERT INTO webhook_attempts (delivery, attempted_at, duration_ms, status_code, error)
		VALUES ($1, $2, $3, $4, $5)`, delivery, micros(a.AttemptedAt), a.DurationMS, a.StatusCode, a.Error); err != nil {
		return false, fmt.Errorf("insert webhook attempt: %w", err)
	}
	var endpoint, object string
	var head bool
	err := q.q.QueryRow(ctx, `UPDATE webhook_deliveries SET status = $3, attempt_count = $4, next_attempt_at = $5,
		delivered_at = COALESCE($6, delivered_at), lease_until = NULL, lease_token = NULL, updated_at = $7,
		head = (head AND $3 = 'pending')
		WHERE reference = $1 AND lease_token = $2 RETURNING endpoint, object_ref, $3 <> 'pending' AND replayed = FALSE`,
		delivery, token, string(o.Status), o.AttemptCount,
		microsOrNil(o.NextAttemptAt), microsOrNil(o.DeliveredAt), micros(o.UpdatedAt)).Scan(&endpoint, &object, &head)
	if notFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("update webhook delivery: %w", err)
	}
	if head {
		if _, err := q.q.Exec(ctx, `UPDATE webhook_deliveries SET head = TRUE WHERE reference = (`+queueHead+`)`,
			endpoint, object); err != nil {
			return false, fmt.Errorf("next webhook delivery: %w", err)
		}
	}
	return true, nil
}

const deliverySelect = `SELECT reference, livemode, endpoint, event_id, event_seq, event_type, object_ref, status,
	attempt_count, next_attempt_at, delivered_at, created_at, updated_at, head, replayed FROM webhook_deliveries`

func scanDelivery(r Row) (*webhook.Delivery, error) {
	var d webhook.Delivery
	var next, delivered *int64
	var created, updated int64
	var head, replayed bool
	if err := r.Scan(&d.Reference, &d.Livemode, &d.Endpoint, &d.Event, &d.EventSeq, &d.EventType, &d.ObjectRef,
		&d.Status, &d.AttemptCount, &next, &delivered, &created, &updated, &head, &replayed); err != nil {
		return nil, err
	}
	// Only a queue's head and replays are sent; any other pending
	// delivery waits for the one before it.
	d.WaitingForEarlier = d.Status == webhook.DeliveryPending && !head && !replayed
	d.Object = webhook.ObjectDelivery
	d.NextAttemptAt, d.DeliveredAt = timeOrNil(next), timeOrNil(delivered)
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	d.Attempts = []webhook.Attempt{}
	return &d, nil
}

// WebhookDeliveryForUpdate implements webhook.Tx.
func (q *queries) WebhookDeliveryForUpdate(ctx context.Context, livemode bool, ref string) (*webhook.Delivery, error) {
	return scanDelivery(q.q.QueryRow(ctx, deliverySelect+` WHERE livemode = $1 AND reference = $2`+q.d.ForUpdate, livemode, ref))
}

// RequeueWebhookDelivery implements webhook.Tx.
func (q *queries) RequeueWebhookDelivery(ctx context.Context, ref string, now time.Time) error {
	// A delivery that was still pending keeps its place in the order (and
	// a replay stays one); one that had finished is marked replayed and
	// holds nothing back.
	n, err := q.q.Exec(ctx, `UPDATE webhook_deliveries SET replayed = (replayed OR status <> 'pending'), status = 'pending', attempt_count = 0,
		next_attempt_at = $2, lease_until = NULL, lease_token = NULL, delivered_at = NULL, updated_at = $2 WHERE reference = $1`, ref, micros(now))
	if err != nil {
		return fmt.Errorf("requeue webhook delivery: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("requeue webhook delivery %s: %w", ref, cardrail.ErrNoRows)
	}
	return nil
}

// WebhookDelivery implements webhook.Store.
func (q *queries) WebhookDelivery(ctx context.Context, livemode bool, ref string) (*webhook.Delivery, error) {
	d, err := scanDelivery(q.q.QueryRow(ctx, deliverySelect+` WHERE livemode = $1 AND reference = $2`, livemode, ref))
	if err != nil {
		return nil, err
	}
	ds := []webhook.Delivery{*d}
	if err := q.attachAttempts(ctx, ds); err != nil {
		return nil, err
	}
	return &ds[0], nil
}

// PendingWebhookDeliveries implements webhook.Store. It counts entries of
// the index on (livemode, status), never the table's rows.
func (q *queries) PendingWebhookDeliveries(ctx context.Context, livemode bool) (int64, error) {
	var n int64
	if err := q.q.QueryRow(ctx, `SELECT COUNT(*) FROM webhook_deliveries WHERE livemode = $1 AND status = 'pending'`, livemode).Scan(&n); err != nil {
		return 0, fmt.Errorf("count pending webhook deliveries: %w", err)
	}
	return n, nil
}

// WebhookDeliveries implements webhook.Store.
func (q *queries) WebhookDeliveries(ctx context.Context, f webhook.DeliveryFilter) (cardrail.Page[webhook.Delivery], error) {
	where, args := newList("livemode = $%d", f.Livemode).add("endpoint = $%d", f.Endpoint).add("status = $%d", string(f.Status)).
		sql("reference", f.Cursor, f.Limit)
	rows, err := q.q.Query(ctx, deliverySelect+where, args...)
	if err != nil {
		return cardrail.Page[webhook.Delivery]{}, fmt.Errorf("webhook deliveries: %w", err)
	}
	items, err := collect(rows, scanDelivery)
	if err != nil {
		return cardrail.Page[webhook.Delivery]{}, err
	}
	p := page(items, f.Limit, func(d *webhook.Delivery) string { return d.Reference })
	return p, q.attachAttempts(ctx, p.Data)
}

// attachAttempts loads the attempts of ds in one query.
func (q *queries) attachAttempts(ctx context.Context, ds []webhook.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	at := make(map[string]int, len(ds))
	refs := make([]string, len(ds))
	for i := range ds {
		at[ds[i].Reference] = i
		refs[i] = ds[i].Reference
	}
	in, args := refList(refs, 1)
	rows, err := q.q.Query(ctx, `SELECT delivery, attempted_at, duration_ms, status_code, error FROM webhook_attempts
		WHERE delivery IN (`+in+`) ORDER BY seq`, args...)
	if err != nil {
		return fmt.Errorf("webhook attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ref string
		var a webhook.Attempt
		var attempted int64
		var code *int64
		if err := rows.Scan(&ref, &attempted, &a.DurationMS, &code, &a.Error); err != nil {
			return err
		}
		a.AttemptedAt = fromMicros(attempted)
		if code != nil {
			c := int(*code)
			a.StatusCode = &c
		}
		i := at[ref]
		ds[i].Attempts = append(ds[i].Attempts, a)
	}
	return rows.Err()
}

// refList returns "$n, $n+1, …" for values, numbered from first.
func refList(values []string, first int) (string, []any) {
	ph := make([]string, len(values))
	args := make([]any, len(values))
	for i, v := range values {
		ph[i] = fmt.Sprintf("$%d", first+i)
		args[i] = v
	}
	return strings.Join(ph, ", "), args
}

func microsOrNil(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := micros(*t)
	return &v
}

func timeOrNil(us *int64) *time.Time {
	if us == nil {
		return nil
	}
	t := fromMicros(*us)
	return &t
}
