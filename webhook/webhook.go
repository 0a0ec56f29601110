// Package webhook delivers Cardrail's events to the HTTP endpoints operators
// register, at least once and in order per object.
//
// Events are written to the outbox (the events table) in the same
// transaction as the change they report. A dispatcher takes committed events
// off the outbox in order and, in the same transaction that advances its
// cursor, writes one delivery per subscribed endpoint of the event's mode. A
// sender claims due deliveries under a lease, posts them signed the Standard
// Webhooks way, and records every attempt; a failed attempt is retried on a
// backoff schedule that by default spans more than 24 hours, after which the
// delivery is failed until an operator replays it. Because the outbox,
// the cursor and the deliveries all live in the database, a crash loses
// nothing: a new process resumes where the old one stopped, and a claim
// whose process died expires with its lease.
package webhook

import (
	"context"
	"time"

	"github.com/cardrail/cardrail"
)

// Object names as rendered in the API.
const (
	ObjectEndpoint = "webhook_endpoint"
	ObjectDelivery = "webhook_delivery"
)

// AllEvents subscribes an endpoint to every event type.
const AllEvents = "*"

// Endpoint is a registered receiver of one mode's events.
type Endpoint struct {
	Reference string    `json:"reference"`
	Object    string    `json:"object"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Livemode  bool      `json:"livemode"`
	CreatedAt time.Time `json:"created_at"`
	// Secret ("whsec_" + base64) signs every delivery. It is rendered only
	// in the response that creates the endpoint.
	Secret string `json:"secret,omitempty"`
	// AfterSeq is the outbox position at registration: the endpoint
	// receives the events after it, which are every event committed after
	// the endpoint and possibly some committed before it that no endpoint
	// had been sent yet (see the store's InsertWebhookEndpoint).
	AfterSeq int64 `json:"-"`
}

// Subscribes reports whether the endpoint wants events of type typ.
func (e *Endpoint) Subscribes(typ string) bool {
	for _, t := range e.Events {
		if t == AllEvents || t == typ {
			return true
		}
	}
	return false
}

// DeliveryStatus is where a delivery stands.
type DeliveryStatus string

// Delivery statuses: pending (queued or between retries), delivered (a 2xx
// answer), failed (the schedule ran out, or the endpoint was deleted).
const (
	DeliveryPending   DeliveryStatus = "pending"
	DeliveryDelivered DeliveryStatus = "delivered"
	DeliveryFailed    DeliveryStatus = "failed"
)

// DeliveryStatuses lists every status, for validating filters.
var DeliveryStatuses = []DeliveryStatus{DeliveryPending, DeliveryDelivered, DeliveryFailed}

// Delivery is one event on its way to one endpoint.
type Delivery struct {
	Reference string         `json:"reference"`
	Object    string         `json:"object"`
	Endpoint  string         `json:"endpoint"`
	Event     string         `json:"event"`
	EventType string         `json:"event_type"`
	ObjectRef string         `json:"object_reference"`
	Status    DeliveryStatus `json:"status"`
	// AttemptCount counts the attempts since the delivery was created or
	// last replayed; it picks the next backoff delay.
	AttemptCount  int        `json:"attempt_count"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	// WaitingForEarlier: the delivery is pending behind an earlier one
	// about the same object to the same endpoint, and is not sent, whatever
	// NextAttemptAt says, until that one is delivered or failed.
	WaitingForEarlier bool       `json:"waiting_for_earlier"`
	DeliveredAt       *time.Time `json:"delivered_at"`
	// Attempts is every attempt ever made, oldest first.
	Attempts  []Attempt `json:"attempts"`
	Livemode  bool      `json:"livemode"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	EventSeq int64 `json:"-"`
}

// Attempt is one POST of a delivery: when, how long, and the answer (a
// status code) or why there was none (an error).
type Attempt struct {
	AttemptedAt time.Time `json:"attempted_at"`
	DurationMS  int64     `json:"duration_ms"`
	StatusCode  *int      `json:"status_code"`
	Error       *string   `json:"error"`
}

// DeliveryFilter selects deliveries of one mode, newest first.
type DeliveryFilter struct {
	Livemode bool
	Endpoint string
	Status   DeliveryStatus
	cardrail.ListParams
}

// OutboxEvent is a committed event as the dispatcher sees it.
type OutboxEvent struct {
	Seq       int64
	ID        string
	Type      string
	Livemode  bool
	ObjectRef string
}

// Claim is a delivery leased to one sender, with what it takes to send it.
type Claim struct {
	Delivery string
	Livemode bool
	Endpoint string
	URL      string
	// Secret is the endpoint's secret as stored (sealed; see secret.go).
	Secret       string
	EventID      string
	Payload      []byte
	AttemptCount int
}

// StoredSecret is an endpoint's secret as the database holds it.
type StoredSecret struct {
	Endpoint string
	Secret   string
}

// Outcome is a delivery's state after an attempt.
type Outcome struct {
	Status        DeliveryStatus
	AttemptCount  int
	NextAttemptAt *time.Time
	DeliveredAt   *time.Time
	UpdatedAt     time.Time
}

// Store is the storage webhook delivery needs (store/sqlstore implements
// it on both databases). Lookups by reference return an error wrapping
// cardrail.ErrNoRows when nothing matches the mode.
type Store interface {
	// WebhookTx runs fn in one write transaction, retried like
	// cardrail.Store.Tx, so fn must have no effects outside it.
	WebhookTx(ctx context.Context, fn func(Tx) error) error
	// WebhookEndpoints lists a mode's endpoints, newest first, without
	// their secrets.
	WebhookEndpoints(ctx context.Context, livemode bool) ([]Endpoint, error)
	// WebhookDeliveries lists deliveries with their attempts, newest first.
	WebhookDeliveries(ctx context.Context, f DeliveryFilter) (cardrail.Page[Delivery], error)
	// WebhookDelivery returns one delivery with its attempts.
	WebhookDelivery(ctx context.Context, livemode bool, ref string) (*Delivery, error)
	// PendingWebhookDeliveries counts a mode's pending deliveries: due,
	// waiting for a retry, or queued behind an earlier delivery about the
	// same object.
	PendingWebhookDeliveries(ctx context.Context, livemode bool) (int64, error)
}

// Tx is one write transaction of webhook storage.
type Tx interface {
	// TakeEvents returns up to limit committed events after the dispatch
	// cursor, in outbox order, and moves the cursor past them when the
	// transaction commits. It never moves past an event that an unfinished
	// transaction may still commit, and returns nothing when another
	// dispatcher holds the cursor.
	TakeEvents(ctx context.Context, limit int) ([]OutboxEvent, error)
	// WebhookSubscribers lists every endpoint of both modes, without secrets.
	WebhookSubscribers(ctx context.Context) ([]Endpoint, error)
	// InsertWebhookDelivery queues d; a delivery of the same event to the
	// same endpoint already queued is left alone.
	InsertWebhookDelivery(ctx context.Context, d *Delivery) error
	// ClaimWebhookDeliveries leases up to limit pending deliveries that are
	// due at now and not leased, under token until leaseUntil, skipping
	// rows other transactions hold and deliveries to the endpoints in skip.
	// A delivery is not due while an earlier delivery (by outbox order) to
	// the same endpoint about the same object is pending.
	ClaimWebhookDeliveries(ctx context.Context, now, leaseUntil time.Time, token string, limit int, skip []string) ([]Claim, error)
	// WebhookSecretsOutside lists the endpoints whose stored secret does
	// not start with prefix (that of the current key's seals), with it.
	WebhookSecretsOutside(ctx context.Context, prefix string) ([]StoredSecret, error)
	// ReplaceWebhookSecret stores next as endpoint's secret if the stored
	// one is still prev, and reports whether it did.
	ReplaceWebhookSecret(ctx context.Context, endpoint, prev, next string) (bool, error)
	// RecordWebhookAttempt stores an attempt and, if the delivery is still
	// leased under token, applies the outcome and releases the lease; it
	// reports whether it did.
	RecordWebhookAttempt(ctx context.Context, delivery, token string, a Attempt, o Outcome) (bool, error)
	// ReleaseWebhookLease gives up token's lease on delivery, unchanged
	// otherwise, so that any worker may claim it at once.
	ReleaseWebhookLease(ctx context.Context, delivery, token string) error

	// InsertWebhookEndpoint stores e with its secret and sets e.AfterSeq to
	// the outbox head, so that e receives the events committed after it.
	InsertWebhookEndpoint(ctx context.Context, e *Endpoint) error
	// WebhookEndpoint returns one endpoint without its secret.
	WebhookEndpoint(ctx context.Context, livemode bool, ref string) (*Endpoint, error)
	// DeleteWebhookEndpoint removes an endpoint and fails its pending
	// deliveries; it returns what it removed.
	DeleteWebhookEndpoint(ctx context.Context, livemode bool, ref string, now time.Time) (*Endpoint, error)
	// WebhookDeliveryForUpdate locks a delivery (without its attempts).
	WebhookDeliveryForUpdate(ctx context.Context, livemode bool, ref string) (*Delivery, error)
	// RequeueWebhookDelivery makes a delivery pending and due at now with a
	// fresh retry schedule, dropping any lease.
	RequeueWebhookDelivery(ctx context.Context, ref string, now time.Time) error

	InsertAudit(ctx context.Context, a *cardrail.AuditRecord) error
}
